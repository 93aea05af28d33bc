"""Waiting in tests for a state that no event announces: poll it, with a generous deadline.

Prefer an event whenever one exists (a message, a ``DOWN``, a nodeup from
``monitor_nodes``, a line of output, a future the code under test settles).
Poll only for a state nothing reports, such as "this node has dropped that
connection from its table". The deadline bounds a broken run; it never
measures speed, so it is long. :func:`watch` is the event kind: a process's
exit reason, from its ``DOWN``.

Importable from every test directory: pyproject.toml puts ``tests/support`` on
pytest's ``pythonpath``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from otpylib import process
from otpylib.runtime.atoms import DOWN
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid

#: Seconds to wait for something that should happen within milliseconds.
DEADLINE = 10.0

#: Seconds between two looks at the predicate: short, since what we wait for is quick.
INTERVAL = 0.005


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = DEADLINE,
    interval: float = INTERVAL,
) -> None:
    """Return once ``predicate()`` (a function or an async function) is true.

    Raises:
        AssertionError: still false after ``timeout`` seconds; the message names ``what``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(interval)


async def watch(runtime: RuntimeBackend, pid: Pid) -> asyncio.Future[Any]:
    """Monitor ``pid`` from a new process of ``runtime``; the future resolves to its exit reason.

    Returns only once the monitor is in place, so whatever the test does next
    is seen (a pid that is already dead resolves to ``noproc``). ``pid`` may
    be another node's: the ``DOWN`` then says ``noconnection`` if the
    connection is lost first.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    reason: asyncio.Future[Any] = loop.create_future()

    async def watcher() -> None:
        ref = await process.monitor(pid)
        ready.set_result(None)
        msg = await process.receive(
            match=lambda m: type(m) is tuple and len(m) == 4 and m[0] is DOWN and m[1] == ref
        )
        reason.set_result(msg[3])

    await runtime.spawn(watcher)
    await asyncio.wait_for(ready, DEADLINE)
    return reason
