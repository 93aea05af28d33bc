"""gen_server call round trip beside the raw send/receive round trip, in one run.

Rows, each the best of ``--repeat`` runs of ``--round-trips`` sequential
round trips between two processes of one runtime:

- ``raw``: ``send(echo, (self, i))`` then ``receive()``: the floor;
- ``call, timeout=None``: ``gen_server.call`` that waits forever (monitor,
  send, selective receive, demonitor: no proxy);
- ``call, default 5 s``: ``gen_server.call`` with a finite timeout, which
  makes the call through a short-lived proxy process so a late reply can
  never reach the caller (see ``otpylib._gen``).

Usage: ``python -m bench.gen_server [--round-trips N] [--repeat R] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from otpylib import gen_server, process
from otpylib.gen_server import REPLY
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend


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


async def driver(n: int, repeat: int, results: asyncio.Future[dict[str, float]]) -> None:
    """Run every row from inside one process and hand the figures back."""
    raw_server = await process.spawn(echo)
    gen = await gen_server.start(Echo)
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
    """Start a runtime, run the driver process, shut down; return the figures."""
    runtime = AsyncIOBackend()
    await runtime.initialize()
    results: asyncio.Future[dict[str, float]] = asyncio.get_running_loop().create_future()
    await runtime.spawn(driver, (n, repeat, results))
    rows = await results
    await runtime.shutdown()
    return rows


def main() -> None:
    """Parse arguments, run, print the table and the ratios to the raw floor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="use uvloop when installed")
    args = parser.parse_args()
    loop_name = "asyncio default loop"
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed; using the default loop")
            rows = asyncio.run(run(args.round_trips, args.repeat))
        else:
            loop_name = "uvloop"
            rows = uvloop.run(run(args.round_trips, args.repeat))
    else:
        rows = asyncio.run(run(args.round_trips, args.repeat))
    raw = rows["raw send/receive"]
    print(
        f"\nbench.gen_server: one runtime, two processes, {args.round_trips} sequential "
        f"round trips, best of {args.repeat} ({loop_name})"
    )
    print(f"{'':<20} {'round trip us':>14} {'vs raw':>8}")
    for kind, us in rows.items():
        print(f"{kind:<20} {us:>14.2f} {us / raw:>7.2f}x")


if __name__ == "__main__":
    main()
