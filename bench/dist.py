"""Two nodes in two OS processes on loopback: one-way messages/s and round trip.

Printed beside, from the same run:

- a raw floor: two processes exchanging msgspec-msgpack frames over plain
  asyncio TCP, no runtime (what the distribution layer spends its overhead
  against);
- two Erlang nodes doing the same (when ``erl`` is installed; skipped
  otherwise).

Usage: ``python -m bench.dist [--messages N] [--round-trips M] [--asyncio] [--busy-wait]
[--metrics]``.

``--metrics`` adds a row: the same two nodes with the Prometheus endpoint
on (``otpylib_dist.metrics``), the loop-lag timer running, and a separate
process scraping both nodes every 0.5 s (30 times Prometheus' default rate).

uvloop is used when installed (as ``otpy-node`` does); ``--asyncio`` measures
asyncio's own loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from otpylib import atom, process

COOKIE = "bench-cookie"
HERE = Path(__file__).resolve().parent
DONE = atom.ensure("done")
#: ``--busy-wait``: nodes and the raw floor poll after traffic (BEAM-style).
BUSY_WAIT = "--busy-wait" in sys.argv
#: Seconds between two scrapes of each node in the ``--metrics`` row.
SCRAPE_INTERVAL = 0.5


def _window() -> float:
    from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT

    return DEFAULT_BUSY_WAIT if BUSY_WAIT else 0.0


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


async def _serve_node(port_file: str, count: int, metrics: bool = False) -> None:
    from otpylib_dist import Node

    node = Node("bench_b@127.0.0.1", cookie=COOKIE, busy_wait=_window())
    await node.initialize()
    await node.spawn(sink, args=[count])
    await node.spawn(echo)
    metrics_port = 0
    if metrics:
        from otpylib_dist.metrics import start_metrics

        metrics_port = (await start_metrics(node, "127.0.0.1", 0)).port
    Path(port_file).write_text(f"{node.port} {metrics_port}")
    await asyncio.Event().wait()


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
    port: int, count: int, trips: int, metrics_port: int = 0
) -> tuple[float, float]:
    from otpylib_dist import Node

    node = Node("bench_a@127.0.0.1", cookie=COOKIE, busy_wait=_window())
    await node.initialize()
    assert await node.connect("bench_b@127.0.0.1", "127.0.0.1", port)
    scraper = None
    if metrics_port:
        from otpylib_dist.metrics import start_metrics

        own = await start_metrics(node, "127.0.0.1", 0)
        scraper = subprocess.Popen(
            [sys.executable, "-m", "bench.dist", "--scrape", str(metrics_port), str(own.port)],
            cwd=HERE.parent,
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
    Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


def _busy_wait() -> Any:
    """The raw floor polls after traffic as the nodes do (same policy, same window)."""
    from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT, BusyWait

    busy = BusyWait(DEFAULT_BUSY_WAIT if BUSY_WAIT else 0.0)
    busy.start()
    return busy


async def _client_raw(port: int, count: int, trips: int) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    busy = _busy_wait()

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

run([PeerA, CountA, TripsA]) ->
    Count = list_to_integer(atom_to_list(CountA)),
    Trips = list_to_integer(atom_to_list(TripsA)),
    pong = net_adm:ping(PeerA),
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
    erl, erlc, epmd = shutil.which("erl"), shutil.which("erlc"), shutil.which("epmd")
    if erl is None or erlc is None or epmd is None:
        return None
    # A private epmd on a free loopback port, nodes listening on loopback
    # only, and everything stopped afterwards: nothing lingers or listens
    # beyond 127.0.0.1.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        epmd_port = probe.getsockname()[1]
    env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port), ERL_EPMD_ADDRESS="127.0.0.1")
    mapper = subprocess.Popen(
        [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = ""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "otpy_dist_bench.erl"
            src.write_text(_ERL_SOURCE)
            subprocess.run([erlc, "-o", tmp, str(src)], check=True)
            base = [
                erl,
                "-noshell",
                "-pa",
                tmp,
                "-setcookie",
                COOKIE,
                "-start_epmd",
                "false",
                "-kernel",
                "inet_dist_use_interface",
                "{127,0,0,1}",
            ]
            server = subprocess.Popen(
                [*base, "-name", "erl_b@127.0.0.1", "-s", "otpy_dist_bench", "serve", str(count)],
                env=env,
            )
            try:
                time.sleep(1.5)
                out = subprocess.run(
                    [
                        *base,
                        "-name",
                        "erl_a@127.0.0.1",
                        "-s",
                        "otpy_dist_bench",
                        "run",
                        "erl_b@127.0.0.1",
                        str(count),
                        str(trips),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env=env,
                ).stdout
            finally:
                server.kill()
                server.wait()
    finally:
        mapper.terminate()
        mapper.wait()
    match = re.search(r"RESULT ([\d.e+]+) ([\d.e+]+)", out)
    return (float(match.group(1)), float(match.group(2))) if match else None


# -------------------------------------------------------------------- main


def _child(
    kind: str, count: int, uvloop_on: bool, metrics: bool = False
) -> tuple[subprocess.Popen[bytes], int, int]:
    port_file = tempfile.mktemp()
    argv = [
        sys.executable,
        "-m",
        "bench.dist",
        "--serve",
        kind,
        "--port-file",
        port_file,
        "--messages",
        str(count),
    ]
    argv.append("--uvloop" if uvloop_on else "--asyncio")
    if BUSY_WAIT:
        argv.append("--busy-wait")
    if metrics:
        argv.append("--metrics")
    proc = subprocess.Popen(argv, cwd=HERE.parent)
    for _ in range(200):
        if os.path.exists(port_file) and Path(port_file).read_text():
            port, _, metrics_port = Path(port_file).read_text().partition(" ")
            os.unlink(port_file)
            return proc, int(port), int(metrics_port or 0)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def _run(coro: Any, uvloop_on: bool) -> Any:
    if uvloop_on:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main() -> None:
    """Run all three and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=5_000)
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
        "--metrics",
        action="store_true",
        help="add a row with the metrics endpoint on and scraped every 0.5 s",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --metrics: run the otpylib and +metrics rows N times each, alternating, "
        "and print medians (the machine's noise otherwise hides a few per cent)",
    )
    parser.add_argument("--scrape", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("node", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    uvloop_on = not args.asyncio
    if uvloop_on:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            if args.uvloop:
                print("uvloop is not installed; using the default loop")
            uvloop_on = False
    if args.scrape:
        _scrape_forever(args.scrape)
        return
    if args.serve == "node":
        _run(_serve_node(args.port_file, args.messages, args.metrics), uvloop_on)
        return
    if args.serve == "raw":
        _run(_serve_raw(args.port_file, args.messages), uvloop_on)
        return

    rows: dict[str, tuple[float, float] | None] = {}
    kinds = ["raw floor", "otpylib"]
    if args.metrics:
        # Off and on alternate, so a change in the machine's load hits both.
        kinds = ["raw floor", *["otpylib", "+metrics"] * args.repeat]
    samples: dict[str, list[tuple[float, float]]] = {}
    for kind in kinds:
        with_metrics = kind == "+metrics"
        proc, port, metrics_port = _child(
            "raw" if kind == "raw floor" else "node", args.messages, uvloop_on, with_metrics
        )
        try:
            if kind == "raw floor":
                coro = _client_raw(port, args.messages, args.round_trips)
            else:
                coro = _client_node(port, args.messages, args.round_trips, metrics_port)
            samples.setdefault(kind, []).append(_run(coro, uvloop_on))
        finally:
            proc.kill()
            proc.wait()
    for kind, got in samples.items():
        rows[kind] = (statistics.median(g[0] for g in got), statistics.median(g[1] for g in got))
    if args.metrics and args.repeat > 1:
        pairs = zip(samples["otpylib"], samples["+metrics"], strict=True)
        print(
            "metrics on / off one-way, per pair:", " ".join(f"{b[0] / a[0]:.3f}" for a, b in pairs)
        )
    rows["erlang"] = _erlang(args.messages, args.round_trips)

    loop_name = "uvloop" if uvloop_on else "asyncio default loop"
    if BUSY_WAIT:
        loop_name += ", busy wait 200 us"
    medians = f", medians of {args.repeat}" if args.metrics and args.repeat > 1 else ""
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
    print(
        f"\notpylib / raw floor: one-way {ours[0] / raw[0]:.2f}x, "
        f"round trip {ours[1] / raw[1]:.2f}x"
    )
    if erl is not None:
        print(
            f"otpylib / erlang:    one-way {ours[0] / erl[0]:.2f}x (target >= 1.0), "
            f"round trip {ours[1] / erl[1]:.2f}x (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
