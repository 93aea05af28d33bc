"""gen_server call round trip beside the raw send/receive round trip, in one run.

Rows, each the best of ``--repeat`` runs of sequential round trips between
two processes:

- ``raw``: ``send(echo, (self, i))`` then ``receive()``: the floor;
- ``call, timeout=None``: ``gen_server.call`` that waits forever;
- ``call, default 5 s``: ``gen_server.call`` with a finite timeout.

Both calls monitor the server, send with an alias as the reply address,
take the answer by selective receive and demonitor (see ``otpylib._gen``);
the finite timeout adds the receive's timer.

Two tables: *local* (one runtime, ``--round-trips``) and *remote* (the
caller on this process's node, the servers on a second node in a separate
OS process on 127.0.0.1, ``--remote-round-trips``; ``--no-remote`` skips
it). Ratios are to the raw row of the same table.

Usage: ``python -m bench.gen_server [--round-trips N] [--remote-round-trips M]
[--repeat R] [--asyncio] [--no-remote]``. uvloop is used when installed (as
``otpy-node`` does); ``--asyncio`` measures asyncio's own loop.

Instructions per call (steady under load, unlike these wall-clock rows):
``bench/gen_server_ir.py`` under callgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import run_loop, use_uvloop
from otpylib import Runtime, gen_server, process
from otpylib.gen_server import REPLY


class Echo(gen_server.GenServer):
    """Answers every call with its request."""

    async def handle_call(self, request: Any, from_: gen_server.From, state: Any) -> Any:
        return (REPLY, request, state)


async def echo() -> None:
    """The raw floor's server: send every ``(sender, x)`` back as ``x``."""
    while True:
        sender, x = await process.receive()
        await process.send(sender, x)


async def raw_round_trips(server: Any, n: int) -> None:
    """``n`` raw send/receive round trips."""
    me = process.self()
    send = process.send
    receive = process.receive
    for i in range(n):
        await send(server, (me, i))
        await receive()


async def call_round_trips(server: Any, n: int, timeout: float | None) -> None:
    """``n`` gen_server calls with ``timeout``."""
    call = gen_server.call
    for i in range(n):
        await call(server, i, timeout)


async def best_of(repeat: int, n: int, fn: Callable[[], Awaitable[None]]) -> float:
    """Microseconds per round trip, the best of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


async def driver(
    raw_server: Any, gen: Any, n: int, repeat: int, results: asyncio.Future[dict[str, float]]
) -> None:
    """Run every row from inside one process and hand the figures back."""
    warm = max(1, n // 10)
    await raw_round_trips(raw_server, warm)
    await call_round_trips(gen, warm, None)
    await call_round_trips(gen, warm, 5.0)
    rows = {
        "raw send/receive": await best_of(repeat, n, lambda: raw_round_trips(raw_server, n)),
        "call, timeout=None": await best_of(repeat, n, lambda: call_round_trips(gen, n, None)),
        "call, default 5 s": await best_of(repeat, n, lambda: call_round_trips(gen, n, 5.0)),
    }
    results.set_result(rows)


async def run(n: int, repeat: int) -> dict[str, float]:
    """One runtime: start both servers and the driver, shut down; return the figures."""
    runtime = Runtime()
    await runtime.initialize()
    results: asyncio.Future[dict[str, float]] = asyncio.get_running_loop().create_future()
    raw_server = await runtime.spawn(echo)
    gen = await gen_server.start(Echo, runtime=runtime)
    await runtime.spawn(driver, (raw_server, gen, n, repeat, results))
    rows = await results
    await runtime.shutdown()
    return rows


# ----------------------------------------------------------------- remote

COOKIE = "bench-gen-server-cookie"
PEER = "bench_gs_b@127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


async def serve_node() -> None:
    """The second OS process: a bare node; the client starts the servers on it."""
    from otpylib_dist import Node

    node = Node(PEER, cookie=COOKIE)
    await node.initialize()
    print(f"port {node.port}", flush=True)
    await asyncio.Event().wait()


async def run_remote(port: int, n: int, repeat: int) -> dict[str, float]:
    """This process's node: start the servers on the peer by reference, drive them from here."""
    from otpylib_dist import Node

    node = Node("bench_gs_a@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    try:
        if not await node.connect(PEER, "127.0.0.1", port):
            raise RuntimeError(f"cannot connect to {PEER} on port {port}")
        raw_server = await node.spawn("bench.gen_server:echo", node=PEER)
        gen = await gen_server.start(Echo, node=PEER, runtime=node)
        results: asyncio.Future[dict[str, float]] = asyncio.get_running_loop().create_future()
        await node.spawn(driver, (raw_server, gen, n, repeat, results))
        rows = await results
        rows[f"{CALLERS} callers (calls/s)"] = await concurrent_calls(node, gen, CALLERS, 2.0)
        return rows
    finally:
        await node.shutdown()


#: Concurrent callers in the throughput row (issue 12: at least 60k calls/s on uvloop).
CALLERS = 64


async def concurrent_calls(node: Any, server: Any, callers: int, seconds: float) -> float:
    """Calls per second from ``callers`` processes calling ``server`` back to back."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    counts: list[int] = []
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        n = 0
        while time.perf_counter() < stop_at:
            await gen_server.call(server, n)
            n += 1
        counts.append(n)
        if len(counts) == callers:
            done.set_result(None)

    start = time.perf_counter()
    for _ in range(callers):
        await node.spawn(caller)
    await done
    return sum(counts) / (time.perf_counter() - start)


def start_peer(uvloop_on: bool) -> tuple[subprocess.Popen[str], int]:
    """Start the peer node's OS process; return it and its port."""
    argv = [sys.executable, "-m", "bench.gen_server", "--serve-node"]
    argv.append("--uvloop" if uvloop_on else "--asyncio")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        raise RuntimeError(f"the peer node did not start: {line!r}")
    return proc, int(line.split()[1])


# ------------------------------------------------------------------- main


def print_table(title: str, rows: dict[str, float]) -> None:
    """The rows in microseconds and as multiples of the raw row (throughput rows apart)."""
    raw = rows["raw send/receive"]
    print(f"\n{title}")
    print(f"{'':<20} {'round trip us':>14} {'vs raw':>8}")
    for kind, us in rows.items():
        if kind.endswith("(calls/s)"):
            print(f"{kind}: {us:,.0f} (target >= 60,000 on uvloop)")
        else:
            print(f"{kind:<20} {us:>14.2f} {us / raw:>7.2f}x")


def main() -> None:
    """Parse arguments, run, print the tables and the ratios to the raw floor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--remote-round-trips", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--uvloop", action="store_true", help="use uvloop (the default when it is installed)"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="use asyncio's own loop even if uvloop is installed"
    )
    parser.add_argument("--no-remote", action="store_true", help="skip the two-node table")
    parser.add_argument("--serve-node", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    uvloop_on = use_uvloop(args.asyncio, asked=args.uvloop)
    if args.serve_node:
        run_loop(serve_node(), uvloop_on)
        return
    loop_name = "uvloop" if uvloop_on else "asyncio default loop"
    rows = run_loop(run(args.round_trips, args.repeat), uvloop_on)
    print_table(
        f"bench.gen_server local: one runtime, two processes, {args.round_trips} sequential "
        f"round trips, best of {args.repeat} ({loop_name})",
        rows,
    )
    if args.no_remote:
        return
    peer, port = start_peer(uvloop_on)
    try:
        rows = run_loop(run_remote(port, args.remote_round_trips, args.repeat), uvloop_on)
    finally:
        peer.kill()
        peer.wait()
    print_table(
        f"bench.gen_server remote: caller and servers on two nodes in two OS processes, "
        f"127.0.0.1, {args.remote_round_trips} sequential round trips, best of {args.repeat} "
        f"({loop_name})",
        rows,
    )


if __name__ == "__main__":
    main()
