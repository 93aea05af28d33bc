"""One node, one event loop: the local runtime's hot paths beside raw asyncio.

Four figures, each measured for otpylib processes (through the
``otpylib.process`` API that process code uses) and for a raw-asyncio
baseline in the same run, on the same loop:

- round trip: two processes ping-pong ``(sender, i)`` with send/receive;
  baseline: two tasks, each with a deque + one future per wait.
- one-way: one process sends N ``(MSG, i)`` to a sink that receives them
  all; baseline: the same through a deque + one future per wait, one call
  per message (the inline-drain floor, no call per message, is printed too).
  A second row has the sink take them with ``process.receive_batch``.
- spawn+exit: ``runtime.spawn`` of a function that returns, until all N
  have ended; baseline: ``loop.create_task`` of the same coroutine.
- idle process: N processes blocked in ``receive``, traced bytes / N
  (tracemalloc, runtime tables included); baseline: N tasks blocked on a
  future.

Targets (issue "Speed", point 4): round trip <= 1.3x the raw baseline,
one-way >= 2M messages/s on the default loop, <= 1,800 bytes per idle
process (Erlang's is 2,704). Each timing is the best of ``--repeat`` runs.
The garbage collector is tuned first as ``otpylib.run`` and ``otpy-node``
tune it (``otpylib.runtime.gc_tuning``; ``--gc-default`` to leave it), for
ours and the raw baseline alike.

Usage: ``python -m bench.local [--uvloop] [--repeat R] [--scale S] [--gc-default]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from otpylib import Pid, Runtime, atom, process
from otpylib.runtime.gc_tuning import tune_gc

MSG = atom.ensure("msg")
DONE = atom.ensure("done")

#: Default sizes (multiplied by ``--scale``).
ROUND_TRIPS = 20_000
ONE_WAY = 300_000
SPAWNS = 30_000
IDLE = 20_000

#: Targets from the issues ("Local process runtime", then "Speed" point 4).
TARGET_RTT_RATIO = 1.3
TARGET_ONE_WAY = 2_000_000.0
TARGET_IDLE_BYTES = 1_800.0


# --------------------------------------------------------------- raw asyncio


class RawMailbox:
    """The baseline mailbox: a deque plus a future created only when the owner waits."""

    __slots__ = ("items", "loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: deque[Any] = deque()
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        """Append ``item`` and wake the owner if it waits."""
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set_result(None)

    async def get(self) -> Any:
        """Take the oldest item, waiting for one if there is none."""
        items = self.items
        while not items:
            waiter = self.waiter = self.loop.create_future()
            await waiter
        return items.popleft()


async def raw_round_trip(n: int) -> float:
    """Microseconds per ping-pong between two raw tasks."""
    loop = asyncio.get_running_loop()
    a, b = RawMailbox(loop), RawMailbox(loop)

    async def echo() -> None:
        while True:
            sender, x = await b.get()
            sender.put(x)

    task = loop.create_task(echo())
    b.put((a, -1))
    await a.get()
    t0 = time.perf_counter()
    for i in range(n):
        b.put((a, i))
        await a.get()
    elapsed = time.perf_counter() - t0
    task.cancel()
    return elapsed / n * 1e6


async def raw_one_way(n: int) -> float:
    """Messages per second from one raw task to another."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    box = RawMailbox(loop)

    async def sink() -> None:
        get = box.get
        for _ in range(n):
            await get()
        done.set_result(None)

    task = loop.create_task(sink())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    put = box.put
    for i in range(n):
        put((MSG, i))
    await done
    elapsed = time.perf_counter() - t0
    await task
    return n / elapsed


async def raw_drain_floor(n: int) -> float:
    """Messages per second when the sink drains the deque inline (no call per message).

    Not a like-for-like baseline (``receive`` is one call per message), but the
    floor quoted in DESIGN.md ("a deque + one wake-up future per batch").
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    box = RawMailbox(loop)
    items = box.items

    async def sink() -> None:
        seen = 0
        while True:
            while items:
                items.popleft()
                seen += 1
            if seen >= n:
                break
            box.waiter = loop.create_future()
            await box.waiter
        done.set_result(None)

    task = loop.create_task(sink())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    put = box.put
    for i in range(n):
        put((MSG, i))
    await done
    elapsed = time.perf_counter() - t0
    await task
    return n / elapsed


_ended = 0
_all_ended: asyncio.Future[None] | None = None
_target = 0


def _count_end() -> None:
    global _ended
    _ended += 1
    if _ended == _target and _all_ended is not None:
        _all_ended.set_result(None)


async def _noop() -> None:
    _count_end()


async def _wait_ends(n: int, start: Callable[[], Awaitable[None]]) -> float:
    """Seconds from the first ``start()`` call until ``n`` ``_noop`` runs have ended."""
    global _ended, _all_ended, _target
    _ended, _target = 0, n
    _all_ended = asyncio.get_running_loop().create_future()
    t0 = time.perf_counter()
    for _ in range(n):
        await start()
    await _all_ended
    elapsed = time.perf_counter() - t0
    _all_ended = None
    await asyncio.sleep(0)
    return elapsed


async def raw_spawn(n: int) -> float:
    """Raw tasks created, run and ended per second."""
    loop = asyncio.get_running_loop()

    async def start() -> None:
        # No reference kept (as otpylib keeps none once a process ended): the
        # scheduled step holds the task until it has run to its end.
        loop.create_task(_noop())  # noqa: RUF006

    return n / await _wait_ends(n, start)


async def _settle(n: int) -> None:
    """Yield until ``n`` idle tasks/processes have reached their wait."""
    while _ended < n:
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _traced_bytes_per(n: int, start: Callable[[], Awaitable[None]]) -> float:
    """Traced bytes per item for ``n`` things started by ``start`` and left blocked."""
    global _ended
    _ended = 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            await start()
        await _settle(n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


async def raw_idle_bytes(n: int) -> float:
    """Bytes per raw task blocked on a future."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    async def idle() -> None:
        global _ended
        _ended += 1
        await loop.create_future()

    async def start() -> None:
        tasks.append(loop.create_task(idle()))

    # The list holding the tasks is the baseline's "process table".
    per = await _traced_bytes_per(n, start)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return per


# ------------------------------------------------------------------ otpylib


async def _in_process(runtime: Runtime, body: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run ``body`` as a process of ``runtime`` and return what it returns."""
    result: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def driver() -> None:
        result.set_result(await body())

    await runtime.spawn(driver)
    return await result


async def _fresh_runtime() -> Runtime:
    runtime = Runtime()
    await runtime.initialize()
    return runtime


async def _echo() -> None:
    receive, send = process.receive, process.send
    while True:
        sender, x = await receive()
        await send(sender, x)


async def otp_round_trip(n: int) -> float:
    """Microseconds per ping-pong between two processes."""
    runtime = await _fresh_runtime()
    echo = await runtime.spawn(_echo)

    async def body() -> float:
        receive, send = process.receive, process.send
        me = process.self()
        await send(echo, (me, -1))
        await receive()
        t0 = time.perf_counter()
        for i in range(n):
            await send(echo, (me, i))
            await receive()
        return (time.perf_counter() - t0) / n * 1e6

    try:
        return await _in_process(runtime, body)
    finally:
        await runtime.shutdown()


async def _sink(n: int, report_to: Pid) -> None:
    receive = process.receive
    for _ in range(n):
        await receive()
    await process.send(report_to, DONE)


async def _batch_sink(n: int, report_to: Pid) -> None:
    receive_batch = process.receive_batch
    seen = 0
    while seen < n:
        seen += len(await receive_batch())
    await process.send(report_to, DONE)


async def otp_one_way(n: int) -> float:
    """Messages per second from one process to another, one ``receive`` per message."""
    return await _one_way(n, _sink)


async def otp_one_way_batch(n: int) -> float:
    """Messages per second from one process to another that takes them with ``receive_batch``."""
    return await _one_way(n, _batch_sink)


async def _one_way(n: int, sink_fn: Callable[[int, Pid], Coroutine[Any, Any, None]]) -> float:
    runtime = await _fresh_runtime()

    async def body() -> float:
        send = process.send
        sink = await process.spawn(sink_fn, args=[n, process.self()])
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for i in range(n):
            await send(sink, (MSG, i))
        await process.receive()
        return n / (time.perf_counter() - t0)

    try:
        return await _in_process(runtime, body)
    finally:
        await runtime.shutdown()


async def otp_spawn(n: int) -> float:
    """Processes spawned (from main), run and ended per second."""
    runtime = await _fresh_runtime()

    async def start() -> None:
        await runtime.spawn(_noop)

    try:
        rate = n / await _wait_ends(n, start)
        assert not runtime.processes(), "processes left after they all returned"
        return rate
    finally:
        await runtime.shutdown()


async def _idle() -> None:
    global _ended
    _ended += 1
    await process.receive()


async def otp_idle_bytes(n: int) -> float:
    """Bytes per process blocked in ``receive`` (including its runtime table entries)."""
    runtime = await _fresh_runtime()

    async def start() -> None:
        await runtime.spawn(_idle)

    try:
        return await _traced_bytes_per(n, start)
    finally:
        await runtime.shutdown()


# --------------------------------------------------------------------- main


@dataclass
class Row:
    """One line of the table."""

    label: str
    ours: float
    raw: float
    fmt: str
    target: str
    ok: bool | None


async def _best(
    fn: Callable[[int], Coroutine[Any, Any, float]], n: int, repeat: int, low: bool
) -> float:
    results = []
    for _ in range(repeat):
        results.append(await fn(n))
        gc.collect()
    return min(results) if low else max(results)


async def run(repeat: int, scale: float) -> tuple[list[Row], float]:
    """Measure everything (the table's rows, and the inline-drain floor in msgs/s)."""
    rtt_n, ow_n = int(ROUND_TRIPS * scale), int(ONE_WAY * scale)
    sp_n, idle_n = int(SPAWNS * scale), int(IDLE * scale)
    await raw_round_trip(1000)  # warm up the loop and the code paths
    await otp_round_trip(1000)

    raw_rtt = await _best(raw_round_trip, rtt_n, repeat, low=True)
    our_rtt = await _best(otp_round_trip, rtt_n, repeat, low=True)
    raw_ow = await _best(raw_one_way, ow_n, repeat, low=False)
    our_ow = await _best(otp_one_way, ow_n, repeat, low=False)
    our_batch = await _best(otp_one_way_batch, ow_n, repeat, low=False)
    drain = await _best(raw_drain_floor, ow_n, repeat, low=False)
    raw_sp = await _best(raw_spawn, sp_n, repeat, low=False)
    our_sp = await _best(otp_spawn, sp_n, repeat, low=False)
    raw_mem = await raw_idle_bytes(idle_n)
    our_mem = await otp_idle_bytes(idle_n)
    rows = [
        Row(
            "round trip (us)",
            our_rtt,
            raw_rtt,
            ",.2f",
            f"<= {TARGET_RTT_RATIO:g}x raw",
            our_rtt <= TARGET_RTT_RATIO * raw_rtt,
        ),
        Row(
            "one-way (msgs/s)",
            our_ow,
            raw_ow,
            ",.0f",
            f">= {TARGET_ONE_WAY:,.0f}",
            our_ow >= TARGET_ONE_WAY,
        ),
        Row(
            "one-way, receive_batch",
            our_batch,
            raw_ow,
            ",.0f",
            f">= {TARGET_ONE_WAY:,.0f}",
            our_batch >= TARGET_ONE_WAY,
        ),
        Row("spawn+exit (/s)", our_sp, raw_sp, ",.0f", "-", None),
        Row(
            "idle process (bytes)",
            our_mem,
            raw_mem,
            ",.0f",
            f"<= {TARGET_IDLE_BYTES:,.0f}",
            our_mem <= TARGET_IDLE_BYTES,
        ),
    ]
    return rows, drain


def print_table(rows: list[Row], title: str) -> None:
    """The table: our figure, the baseline, ours/raw, the target and whether it is met."""
    print(title)
    head = f"{'':<22} {'otpylib':>12} {'raw asyncio':>12} {'ours/raw':>9}  {'target':<14} met"
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        print(
            f"{r.label:<22} {format(r.ours, r.fmt):>12} {format(r.raw, r.fmt):>12} "
            f"{r.ours / r.raw:>8.2f}x  {r.target:<14} {ok}"
        )


def print_targets(rows: list[Row]) -> None:
    """One line per target of the issue: the figure, its ratio to raw asyncio, met or not."""
    print("targets:")
    for r in rows:
        if r.ok is None:
            continue
        print(
            f"  {r.label:<22} {format(r.ours, r.fmt):>12}  ({r.ours / r.raw:.2f}x raw)  "
            f"target {r.target}: {'met' if r.ok else 'NOT met'}"
        )


def main() -> None:
    """Parse options, run the measurements on the chosen loop, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop when installed")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best kept)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    parser.add_argument(
        "--gc-default",
        action="store_true",
        help="leave the garbage collector as CPython sets it (default: tuned, as otpylib.run "
        "and otpy-node run do; the raw baseline runs under the same settings either way)",
    )
    args = parser.parse_args()
    if not args.gc_default:
        tune_gc()
    use_uvloop = args.uvloop
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed; using the default loop")
            use_uvloop = False
    t0 = time.perf_counter()
    coro = run(max(1, args.repeat), args.scale)
    rows, drain = uvloop.run(coro) if use_uvloop else asyncio.run(coro)
    loop_name = "uvloop" if use_uvloop else "asyncio default loop"
    loop_name += ", gc default" if args.gc_default else ", gc tuned"
    print_table(
        rows,
        f"bench.local: {loop_name}, Python {platform.python_version()} ({sys.platform}), "
        f"best of {args.repeat}, {time.perf_counter() - t0:.1f} s",
    )
    print(
        f"(one-way floor when the sink drains the deque inline, no call per message: "
        f"{drain:,.0f} msgs/s)"
    )
    print_targets(rows)


if __name__ == "__main__":
    main()
