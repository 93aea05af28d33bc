"""Fixtures for the behaviour tests (gen_server, supervisor): a runtime per test.

The runtime layer's own tests keep their fixtures in ``runtime/conftest.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from behaviour_helpers import WAIT, RunInProcess

from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend


@pytest.fixture
async def runtime() -> AsyncIterator[AsyncIOBackend]:
    """An initialized runtime, shut down (every process ended) after the test."""
    rt = AsyncIOBackend()
    await rt.initialize()
    yield rt
    await rt.shutdown()


@pytest.fixture
def run(runtime: AsyncIOBackend) -> RunInProcess:
    """Run ``await fn(*args)`` as a process of ``runtime``; return its result or raise its error.

    Behaviour code waits for replies, EXITs and DOWNs in a mailbox, so the
    body of most tests runs as a process. ``trap_exits=True`` makes that
    process trap exits (to see a linked supervisor's EXIT).
    """

    async def run_in_process(
        fn: Callable[..., Awaitable[Any]], *args: Any, trap_exits: bool = False
    ) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def body() -> None:
            try:
                result = await fn(*args)
            except asyncio.CancelledError:
                if not fut.done():
                    fut.set_exception(AssertionError("the test process was killed"))
                raise
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(result)

        await runtime.spawn(body, trap_exits=trap_exits)
        return await asyncio.wait_for(fut, WAIT)

    return run_in_process
