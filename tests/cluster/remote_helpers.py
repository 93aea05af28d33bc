"""Helpers for the remote-behaviour tests: run code as a process, collect reports.

Imported by unique module name (``remote_helpers``), never from ``conftest``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from otpylib import process
from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend

#: Generous deadline for anything a test waits on: events, not timings.
WAIT = 10.0

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]

#: Close reason :func:`crash` gives the dying node's connections (only it sees it).
CRASHED = atom.ensure("crashed")


async def run_in(
    node: DistributedBackend,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    trap_exits: bool = False,
) -> Any:
    """Run ``await fn(*args)`` as a process on ``node``; return its result or raise its error."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        try:
            result = await fn(*args)
        except asyncio.CancelledError:
            if not done.done():
                done.set_exception(AssertionError("the test process was killed"))
            raise
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(result)

    await node.spawn(body, trap_exits=trap_exits)
    return await asyncio.wait_for(done, WAIT)


class Reports:
    """A process on a node whose mailbox the test reads: servers report events to it.

    ``pid`` is the address to hand to servers (``observer``); ``next(kind)``
    returns the next ``(kind, ...)`` report, waiting up to :data:`WAIT`.
    Reports of other kinds are kept for later ``next`` calls.
    """

    def __init__(self) -> None:
        self.pid: Pid | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._kept: list[Any] = []

    @classmethod
    async def on(cls, node: DistributedBackend) -> Reports:
        """Start the collecting process on ``node``."""
        reports = cls()

        async def collect() -> None:
            while True:
                reports._queue.put_nowait(await process.receive())

        reports.pid = await node.spawn(collect)
        return reports

    async def next(self, kind: str) -> tuple[Any, ...]:
        """The next report whose first element is ``kind``."""
        for i, msg in enumerate(self._kept):
            if msg[0] == kind:
                del self._kept[i]
                return tuple(msg)
        while True:
            msg = await asyncio.wait_for(self._queue.get(), WAIT)
            if type(msg) is tuple and msg and msg[0] == kind:
                return msg
            self._kept.append(msg)


def mailbox_len() -> int:
    """How many messages wait in the calling process's mailbox."""
    info = process.process_info(process.self())
    assert info is not None
    return info.message_queue_len


async def crash(node: DistributedBackend) -> None:
    """Make ``node`` vanish as if its OS process were killed.

    Its peers see their connections to it drop (links and monitors across
    fire with ``noconnection``) and hear nothing more from it: it stops
    listening and closes every connection before its processes end, so none
    of their exit signals gets out. For the real thing, see ``tests/faults``
    (SIGKILL).
    """
    if node._server is not None:
        node._server.close()
    for conn in list(node.connections.up.values()):
        conn.close(CRASHED)
    # No await before this: shutdown marks the node stopping at once, so
    # none of its processes can dial a peer again while they end.
    await node.shutdown(timeout=0.5)
