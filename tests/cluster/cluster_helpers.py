"""Helpers shared by the in-process cluster tests."""

from __future__ import annotations

import asyncio
from typing import Any

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


async def wait_until(predicate: Any, what: str, deadline: float = DEADLINE) -> None:
    """Poll ``predicate()`` every 10 ms until true; fail naming ``what`` after ``deadline``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
