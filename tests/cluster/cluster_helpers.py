"""Helpers shared by the in-process cluster tests."""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import process
from otpylib_dist import DistributedBackend

#: Generous: every wait in these tests is for something that takes milliseconds.
DEADLINE = 10.0


async def run_in(node: DistributedBackend, fn: Any, *args: Any, trap_exits: bool = False) -> Any:
    """Run ``fn(*args)`` as a process on ``node`` and return its result."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        try:
            done.set_result(await fn(*args))
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise

    await node.spawn(body, trap_exits=trap_exits)
    return await asyncio.wait_for(done, DEADLINE)


async def collector(
    node: DistributedBackend, count: int, log: list[Any] | None = None
) -> tuple[Any, asyncio.Future[list[Any]]]:
    """A process on ``node`` that traps exits and takes ``count`` messages.

    Returns its pid and a future of the messages, in the order received;
    ``log``, if given, also gets each one as it arrives.
    """
    done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def collect() -> None:
        process.flag("trap_exit", True)
        got = []
        while len(got) < count:
            msg = await process.receive()
            got.append(msg)
            if log is not None:
                log.append(msg)
        done.set_result(got)

    return await node.spawn(collect), done


async def node_events(node: DistributedBackend) -> asyncio.Queue[Any]:
    """Subscribe a process of ``node`` to nodeup/nodedown; the queue gets each one."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    subscribed = asyncio.get_running_loop().create_future()

    async def subscriber() -> None:
        await node.monitor_nodes(True)
        subscribed.set_result(None)
        while True:
            queue.put_nowait(await process.receive())

    await node.spawn(subscriber)
    await asyncio.wait_for(subscribed, DEADLINE)
    return queue
