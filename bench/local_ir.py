"""Fixed local workloads for counting instructions, which a busy machine does not change.

Wall-clock figures on a shared 2-core VM swing by a third; callgrind's
instruction count does not. Each workload runs N messages (or round trips)
and nothing else, so the difference of two sizes cancels start-up::

    python -m bench.ir_per_item "bench/local_ir.py one-way" 5000 15000

or by hand: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null
.venv/bin/python bench/local_ir.py one-way N`` for two values of N, then
(total2 - total1) / (N2 - N1).

Add ``--uvloop`` to run on uvloop. Workloads: ``one-way`` (one ``receive``
per message), ``batch`` (the sink takes them with ``receive_batch``),
``round-trip``, and ``raw-one-way`` / ``raw-round-trip``: the same through
a deque and one future per wait, as bench.local's raw rows. The collector
is left as CPython sets it (tune it with ``--gc-tuned``), and the process
API is bound once, as hot code does.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bench.harness import run_loop
from bench.local import RawMailbox
from otpylib import Runtime, process
from otpylib.runtime.gc_tuning import tune_gc


async def _otp(n: int, sink: Callable[[int], Coroutine[Any, Any, None]], rtt: bool) -> None:
    runtime = Runtime()
    await runtime.initialize()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run_sink() -> None:
        await sink(n)
        done.set_result(None)

    async def client() -> None:
        send, receive = process.send, process.receive
        if rtt:
            me = process.self()
            for i in range(n):
                await send(target, (me, i))
                await receive()
            done.set_result(None)
        else:
            for i in range(n):
                await send(target, ("msg", i))

    target = await runtime.spawn(_echo if rtt else run_sink)
    await runtime.spawn(client)
    await done
    await runtime.shutdown()


async def _one_by_one(n: int) -> None:
    receive = process.receive
    for _ in range(n):
        await receive()


async def _batches(n: int) -> None:
    receive_batch = process.receive_batch
    seen = 0
    while seen < n:
        seen += len(await receive_batch())


async def _echo() -> None:
    send, receive = process.send, process.receive
    while True:
        sender, x = await receive()
        await send(sender, x)


async def _raw(n: int, rtt: bool) -> None:
    loop = asyncio.get_running_loop()
    a, b = RawMailbox(loop), RawMailbox(loop)
    done: asyncio.Future[None] = loop.create_future()

    async def sink() -> None:
        get = b.get
        if rtt:
            while True:
                sender, x = await get()
                sender.put(x)
        for _ in range(n):
            await get()
        done.set_result(None)

    async def client() -> None:
        put = b.put
        if rtt:
            for i in range(n):
                put((a, i))
                await a.get()
            done.set_result(None)
        else:
            for i in range(n):
                put(("msg", i))

    task = loop.create_task(sink())
    await loop.create_task(client())
    await done
    task.cancel()


WORKLOADS: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
    "one-way": lambda n: _otp(n, _one_by_one, rtt=False),
    "batch": lambda n: _otp(n, _batches, rtt=False),
    "round-trip": lambda n: _otp(n, _one_by_one, rtt=True),
    "raw-one-way": lambda n: _raw(n, rtt=False),
    "raw-round-trip": lambda n: _raw(n, rtt=True),
}


def main() -> None:
    """Run one workload of N messages (asyncio's default loop unless ``--uvloop``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("n", type=int, nargs="?", default=100_000)
    parser.add_argument("--gc-tuned", action="store_true", help="tune the collector first")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = parser.parse_args()
    if args.gc_tuned:
        tune_gc()
    run_loop(WORKLOADS[args.workload](args.n), args.uvloop)


if __name__ == "__main__":
    main()
