"""Two nodes in two OS processes on loopback: one-way messages/s and round trip.

Printed beside, from the same run:

- a raw floor: two processes exchanging msgspec-msgpack frames over plain
  asyncio TCP, no runtime (what the distribution layer spends its overhead
  against);
- two Erlang nodes doing the same (when ``erl`` is installed; skipped
  otherwise).

Usage: ``python -m bench.dist [--messages N] [--round-trips M] [--asyncio] [--busy-wait]
[--metrics] [--hogs N] [--compare-spin] [--repeat N] [--quick]``.

``--repeat N`` runs every row N times, the raw floor and otpylib
alternating, and prints medians, the per-pair ratio of otpylib to the raw
floor and Erlang's rate per run: on a shared machine one run's ratio can be
off by a third.

``--hogs N`` starts N CPU-hog processes (busy loops, ``bench.hogs``) before
measuring and kills them after, and implies ``--compare-spin``: the
otpylib row is measured in three node configurations in the same run,
*default* (a node built as ``otpy-node`` and ``otpylib.run`` build it),
*no spin* (any spin or busy wait off) and *spin* (busy wait on), with
the ratios to *no spin*. The issue's target for a spin that is safe by
default: with two hogs on two cores, *default* within 1.5x of *no spin*.

``--metrics`` adds a row: the same two nodes with the Prometheus endpoint
on (``otpylib_dist.metrics``), the loop-lag timer running, and a separate
process scraping both nodes every 0.5 s (30 times Prometheus' default rate).

uvloop is used when installed (as ``otpy-node`` does); ``--asyncio`` measures
asyncio's own loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

import msgspec

from bench.harness import (
    COOKIE,
    ROOT,
    erlang_missing,
    erlang_pair,
    exit_on_sigterm,
    run_loop,
    serve_until_orphaned,
    start_child,
    stop,
    use_uvloop,
    write_port_file,
)
from bench.hogs import cpu_hogs
from otpylib import atom, process
from otpylib.runtime.gc_tuning import tune_gc

DONE = atom.ensure("done")
#: ``--busy-wait``: nodes and the raw floor poll after traffic (BEAM-style).
BUSY_WAIT = "--busy-wait" in sys.argv
#: Seconds between two scrapes of each node in the ``--metrics`` row.
SCRAPE_INTERVAL = 0.5
#: Node configurations of ``--compare-spin``, in the order printed.
CONFIGS = ("default", "no spin", "spin")


def node_options(config: str) -> dict[str, Any]:
    """Keyword arguments for ``Node`` in ``config`` (one of :data:`CONFIGS`).

    The one place that knows the spin knob (``busy_wait``, see
    ``otpylib_dist/busy_wait.py``): when the knob changes, change this.
    *default* passes nothing, so it measures whatever ``Node`` does by
    default (``otpy-node`` builds the same; every node child also tunes the
    collector as ``otpy-node`` and ``otpylib.run`` do, and so do the raw
    floor's processes); *no spin* turns spinning off;
    *spin* asks for a fixed 200 µs window that never backs off (BEAM's
    way, and this node's default before the adaptive spin).
    """
    from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT

    if config == "default":
        return {"busy_wait": DEFAULT_BUSY_WAIT} if BUSY_WAIT else {}
    if config == "no spin":
        return {"busy_wait": 0.0}
    if config == "spin":
        return {"busy_wait": DEFAULT_BUSY_WAIT}
    raise ValueError(f"unknown node configuration {config!r}; use one of {', '.join(CONFIGS)}")


MSG = atom.ensure("msg")


# ----------------------------------------------------------------- otpylib


async def sink(count: int) -> None:
    """Take ``count`` messages, then tell the ``(DONE, sender)`` asker."""
    await process.register("sink")
    while True:
        first = await process.receive()
        reply_to = first[1]
        for _ in range(count - 1):
            await process.receive()
        await process.send(reply_to, DONE)


async def echo() -> None:
    """Send every ``(sender, x)`` back as ``x``."""
    await process.register("echo")
    while True:
        sender, x = await process.receive()
        await process.send(sender, x)


async def _serve_node(port_file: str, count: int, config: str, metrics: bool = False) -> None:
    from otpylib_dist import Node

    node = Node("bench_b@127.0.0.1", cookie=COOKIE, **node_options(config))
    await node.initialize()
    tune_gc()  # as otpy-node and otpylib.run do once started
    await node.spawn(sink, args=[count])
    await node.spawn(echo)
    metrics_port = 0
    if metrics:
        from otpylib_dist.metrics import start_metrics

        metrics_port = (await start_metrics(node, "127.0.0.1", 0)).port
    write_port_file(port_file, f"{node.port} {metrics_port}")
    await serve_until_orphaned()


def _scrape_forever(ports: list[int]) -> None:
    """``--scrape``: GET /metrics from every port each SCRAPE_INTERVAL, until killed."""
    import urllib.request

    ready = False
    while True:
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                r.read()
        if not ready:
            print("ready", flush=True)
            ready = True
        time.sleep(SCRAPE_INTERVAL)


async def _client_node(
    port: int, count: int, trips: int, config: str, metrics_port: int = 0
) -> tuple[float, float]:
    from otpylib_dist import Node

    node = Node("bench_a@127.0.0.1", cookie=COOKIE, **node_options(config))
    await node.initialize()
    tune_gc()  # as otpy-node and otpylib.run do once started
    assert await node.connect("bench_b@127.0.0.1", "127.0.0.1", port)
    scraper = None
    if metrics_port:
        from otpylib_dist.metrics import start_metrics

        own = await start_metrics(node, "127.0.0.1", 0)
        scraper = subprocess.Popen(
            [sys.executable, "-m", "bench.dist", "--scrape", str(metrics_port), str(own.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        # Measure once the scraper runs, not while its interpreter starts.
        assert scraper.stdout is not None
        await asyncio.to_thread(scraper.stdout.readline)
    result: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()

    async def client() -> None:
        me = process.self()
        target = ("sink", "bench_b@127.0.0.1")
        echo_to = ("echo", "bench_b@127.0.0.1")
        # Warm-up round trip so the connection and code paths are hot.
        await process.send(echo_to, (me, 0))
        await process.receive(timeout=10)
        t0 = time.perf_counter()
        for i in range(count):
            await process.send(target, (MSG, me, i, "payload"))
        await process.receive(timeout=60)
        one_way = count / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(trips):
            # No timeout, as the Erlang and raw-floor loops have none (a
            # timeout costs a timer per receive); the warm-up bounds a hang.
            await process.send(echo_to, (me, i))
            await process.receive()
        rtt = (time.perf_counter() - t0) / trips * 1e6
        result.set_result((one_way, rtt))

    await node.spawn(client)
    try:
        out = await result
    finally:
        if scraper is not None:
            scraper.kill()
            scraper.wait()
    await node.shutdown()
    return out


# ---------------------------------------------------------------- raw floor

_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()


async def _serve_raw(port_file: str, count: int) -> None:
    busy = _busy_wait()
    tune_gc()  # the floor gets the same collector settings as the nodes

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        seen = 0
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            busy.poke()
            buf += data
            pos = 0
            out = bytearray()
            while len(buf) - pos >= 4:
                (n,) = struct.unpack_from(">I", buf, pos)
                if len(buf) - pos - 4 < n:
                    break
                msg = _DEC.decode(memoryview(buf)[pos + 4 : pos + 4 + n])
                pos += 4 + n
                if msg[0] == "echo":
                    body = _ENC.encode(msg[1])
                    out += struct.pack(">I", len(body)) + body
                else:
                    seen += 1
                    if seen == count:
                        body = _ENC.encode("done")
                        out += struct.pack(">I", len(body)) + body
                        seen = 0
            del buf[:pos]
            if out:
                writer.write(bytes(out))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    write_port_file(port_file, str(server.sockets[0].getsockname()[1]))
    await serve_until_orphaned()


def _busy_wait() -> Any:
    """The raw floor polls after traffic as the nodes do (same policy, same window)."""
    from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT, BusyWait

    busy = BusyWait(DEFAULT_BUSY_WAIT if BUSY_WAIT else 0.0)
    busy.start()
    return busy


async def _client_raw(port: int, count: int, trips: int) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    busy = _busy_wait()
    tune_gc()

    async def read_one() -> Any:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        return _DEC.decode(await reader.readexactly(n))

    t0 = time.perf_counter()
    batch = bytearray()
    for i in range(count):
        body = _ENC.encode(("msg", "pid", i, "payload"))
        batch += struct.pack(">I", len(body)) + body
        if len(batch) > 1 << 16:
            writer.write(bytes(batch))
            batch.clear()
            await writer.drain()
    writer.write(bytes(batch))
    await read_one()
    one_way = count / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(trips):
        body = _ENC.encode(("echo", i))
        writer.write(struct.pack(">I", len(body)) + body)
        busy.poke()
        await read_one()
    rtt = (time.perf_counter() - t0) / trips * 1e6
    writer.close()
    return one_way, rtt


# ------------------------------------------------------------------ erlang

_ERL_SOURCE = """
-module(otpy_dist_bench).
-export([serve/1, run/1]).

serve([CountA]) ->
    Count = list_to_integer(atom_to_list(CountA)),
    register(sink, spawn(fun() -> sink(Count) end)),
    register(echo, spawn(fun echo/0)),
    receive stop -> ok end.

sink(Count) ->
    receive {msg, From, _, _} -> drain(Count - 1), From ! done end,
    sink(Count).

drain(0) -> ok;
drain(N) -> receive _ -> drain(N - 1) end.

echo() -> receive {From, X} -> From ! X end, echo().

%% The peer answers and has registered echo (its -s function has run).
wait_ready(Peer, 0) -> error({not_ready, Peer});
wait_ready(Peer, N) ->
    case net_adm:ping(Peer) =:= pong andalso
         rpc:call(Peer, erlang, whereis, [echo]) of
        Pid when is_pid(Pid) -> ok;
        _ -> timer:sleep(50), wait_ready(Peer, N - 1)
    end.

run([PeerA, CountA, TripsA]) ->
    Count = list_to_integer(atom_to_list(CountA)),
    Trips = list_to_integer(atom_to_list(TripsA)),
    ok = wait_ready(PeerA, 400),
    {echo, PeerA} ! {self(), 0}, receive 0 -> ok end,
    T0 = erlang:monotonic_time(microsecond),
    [{sink, PeerA} ! {msg, self(), I, <<"payload">>} || I <- lists:seq(1, Count)],
    receive done -> ok end,
    T1 = erlang:monotonic_time(microsecond),
    lists:foreach(fun(I) -> {echo, PeerA} ! {self(), I}, receive I -> ok end end,
                  lists:seq(1, Trips)),
    T2 = erlang:monotonic_time(microsecond),
    io:format("RESULT ~p ~p~n", [Count * 1000000 / (T1 - T0), (T2 - T1) / Trips]),
    halt(0).
"""


def _erlang(count: int, trips: int) -> tuple[float, float] | None:
    if erlang_missing() is not None:
        return None
    out = erlang_pair(
        "otpy_dist_bench", _ERL_SOURCE, serve=[str(count)], run=[str(count), str(trips)]
    )
    match = re.search(r"RESULT ([\d.e+]+) ([\d.e+]+)", out)
    return (float(match.group(1)), float(match.group(2))) if match else None


# -------------------------------------------------------------------- main


def _child(
    kind: str, count: int, uvloop_on: bool, config: str = "default", metrics: bool = False
) -> tuple[subprocess.Popen[bytes], int, int]:
    argv = ["--serve", kind, "--messages", str(count), "--config", config]
    argv.append("--uvloop" if uvloop_on else "--asyncio")
    if BUSY_WAIT:
        argv.append("--busy-wait")
    if metrics:
        argv.append("--metrics")
    proc, text = start_child("bench.dist", argv)
    port, _, metrics_port = text.partition(" ")
    return proc, int(port), int(metrics_port or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.dist", description=__doc__)
    parser.add_argument("--messages", type=int, help="one-way messages (default 200000)")
    parser.add_argument("--round-trips", type=int, help="round trips (default 5000)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (2000 messages, 100 round trips)"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="use uvloop (the default when it is installed)"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="use asyncio's own loop even if uvloop is installed"
    )
    parser.add_argument(
        "--busy-wait",
        action="store_true",
        help="nodes and raw floor keep polling 200 us after traffic (as BEAM does by default)",
    )
    parser.add_argument(
        "--hogs",
        type=int,
        default=0,
        metavar="N",
        help="run N CPU-hog processes while measuring (2 on a 2-core machine); implies "
        "--compare-spin",
    )
    parser.add_argument(
        "--compare-spin",
        action="store_true",
        help="measure otpylib in three node configurations: default, no spin, spin",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="add a row with the metrics endpoint on and scraped every 0.5 s",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each row N times and print medians: the raw floor and otpylib alternate "
        "(with per-pair ratios), as do the otpylib rows of --metrics or --compare-spin/--hogs "
        "(the machine's noise otherwise hides a few per cent; with hogs, much more)",
    )
    parser.add_argument("--scrape", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("node", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=CONFIGS, default="default", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    return parser


#: Row label of each ``--compare-spin`` configuration ("otpylib" is the default).
_LABELS = {"default": "otpylib", "no spin": "  no spin", "spin": "  spin"}


def _measure(args: argparse.Namespace, uvloop_on: bool) -> dict[str, tuple[float, float] | None]:
    """Every row, each in fresh processes; medians where a row ran more than once."""
    # Plain runs alternate the raw floor and ours, so a change in the
    # machine's load hits both (and each pair gives a same-run ratio).
    kinds = ["raw floor", "otpylib"] * args.repeat
    if args.compare_spin:
        # The configurations alternate, so a change in the machine's load hits each.
        kinds = ["raw floor", *[_LABELS[c] for c in CONFIGS] * args.repeat]
    if args.metrics:
        # Off and on alternate, so a change in the machine's load hits both.
        kinds = ["raw floor", *["otpylib", "+metrics"] * args.repeat]
    configs = {label: config for config, label in _LABELS.items()}
    samples: dict[str, list[tuple[float, float]]] = {}
    for kind in kinds:
        with_metrics = kind == "+metrics"
        config = configs.get(kind, "default")
        proc, port, metrics_port = _child(
            "raw" if kind == "raw floor" else "node", args.messages, uvloop_on, config, with_metrics
        )
        try:
            if kind == "raw floor":
                coro = _client_raw(port, args.messages, args.round_trips)
            else:
                coro = _client_node(port, args.messages, args.round_trips, config, metrics_port)
            samples.setdefault(kind, []).append(run_loop(coro, uvloop_on))
        finally:
            stop(proc)
    rows: dict[str, tuple[float, float] | None] = {
        kind: (statistics.median(g[0] for g in got), statistics.median(g[1] for g in got))
        for kind, got in samples.items()
    }
    if args.metrics and args.repeat > 1:
        pairs = zip(samples["otpylib"], samples["+metrics"], strict=True)
        print(
            "metrics on / off one-way, per pair:", " ".join(f"{b[0] / a[0]:.3f}" for a, b in pairs)
        )
    if args.compare_spin and args.repeat > 1:
        for config in CONFIGS:
            trips = " ".join(f"{g[1]:.1f}" for g in samples[_LABELS[config]])
            print(f"round trip us per run, {config}: {trips}")
    plain = not (args.metrics or args.compare_spin)
    if plain and args.repeat > 1:
        pairs = zip(samples["raw floor"], samples["otpylib"], strict=True)
        print(
            "one-way otpylib / raw floor, per pair:",
            " ".join(f"{b[0] / a[0]:.2f}" for a, b in pairs),
        )
    erlang_runs = [
        _erlang(args.messages, args.round_trips) for _ in range(args.repeat if plain else 1)
    ]
    erlang = [run for run in erlang_runs if run is not None]
    rows["erlang"] = (
        (statistics.median(g[0] for g in erlang), statistics.median(g[1] for g in erlang))
        if erlang
        else None
    )
    if len(erlang) > 1:
        print("one-way erlang msg/s per run:", " ".join(f"{g[0]:,.0f}" for g in erlang))
    return rows


def _print(args: argparse.Namespace, uvloop_on: bool, rows: dict[str, Any]) -> None:
    loop_name = "uvloop" if uvloop_on else "asyncio default loop"
    if BUSY_WAIT:
        loop_name += ", busy wait 200 us"
    if args.hogs:
        loop_name += f", {args.hogs} CPU hogs"
    several = args.repeat > 1
    medians = f", medians of {args.repeat}" if several else ""
    print(
        f"\nbench.dist: two OS processes on 127.0.0.1, {args.messages} msgs, "
        f"{args.round_trips} round trips, {loop_name}{medians}"
    )
    print(f"{'':<12} {'one-way msg/s':>15} {'round trip us':>15}")
    for kind, row in rows.items():
        if row is None:
            print(f"{kind:<12} {'(erl not installed: skipped)':>31}")
        else:
            print(f"{kind:<12} {row[0]:>15,.0f} {row[1]:>15.1f}")
    ours, raw, erl = rows["otpylib"], rows["raw floor"], rows["erlang"]
    assert ours is not None and raw is not None
    metered = rows.get("+metrics")
    if metered is not None:
        print(
            f"\nmetrics on / off: one-way {metered[0] / ours[0]:.3f}x, "
            f"round trip {metered[1] / ours[1]:.3f}x"
        )
    # One-way targets: issue 12 item 1 (round-trip targets are item 2's).
    print(
        f"\notpylib / raw floor: one-way {ours[0] / raw[0]:.2f}x (target >= 0.5), "
        f"round trip {ours[1] / raw[1]:.2f}x"
    )
    if erl is not None:
        print(
            f"otpylib / erlang:    one-way {ours[0] / erl[0]:.2f}x (target >= 2.0), "
            f"round trip {ours[1] / erl[1]:.2f}x (target <= 1.0, default config)"
        )
    if args.compare_spin:
        no_spin = rows[_LABELS["no spin"]]
        for config in ("default", "spin"):
            row = rows[_LABELS[config]]
            target = " (target <= 1.5 with every core hogged)" if config == "default" else ""
            print(
                f"{config + ' / no spin:':<20} round trip {row[1] / no_spin[1]:.2f}x{target}, "
                f"one-way {row[0] / no_spin[0]:.2f}x"
            )


def main() -> None:
    """Run every row and print the table."""
    args = _parser().parse_args()
    if args.quick:
        args.messages = args.messages or 2_000
        args.round_trips = args.round_trips or 100
    args.messages = args.messages or 200_000
    args.round_trips = args.round_trips or 5_000
    args.compare_spin = args.compare_spin or args.hogs > 0
    if args.hogs < 0:
        sys.exit(f"bench.dist: --hogs takes a number of processes >= 0, got {args.hogs}")
    if args.repeat < 1:
        sys.exit(f"bench.dist: --repeat takes a number of runs >= 1, got {args.repeat}")
    if args.metrics and args.compare_spin:
        sys.exit("bench.dist: --metrics and --hogs/--compare-spin are separate runs; pick one")
    uvloop_on = use_uvloop(args.asyncio, asked=args.uvloop)
    if args.scrape:
        _scrape_forever(args.scrape)
        return
    if args.serve == "node":
        run_loop(_serve_node(args.port_file, args.messages, args.config, args.metrics), uvloop_on)
        return
    if args.serve == "raw":
        run_loop(_serve_raw(args.port_file, args.messages), uvloop_on)
        return
    exit_on_sigterm()
    with cpu_hogs(args.hogs) as hogs:
        if hogs:
            print(f"hogs: {len(hogs)} busy-loop processes, pids {' '.join(map(str, hogs))}")
            sys.stdout.flush()
        rows = _measure(args, uvloop_on)
    _print(args, uvloop_on, rows)


if __name__ == "__main__":
    main()
