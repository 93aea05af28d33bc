"""Deadlines of requests: one event-loop timer for all the waiting callers.

A call with a timeout (``gen_server.call``'s default is 5 s) needs to be
woken if no answer comes, and nearly always the answer comes first. A
timer per call (``loop.call_at`` then ``cancel``) costs more than the rest
of the wait: ~10k instructions per call, and on uvloop each cancelled timer
is a libuv handle to close, which made a remote call with a timeout ~4 µs
slower than one without (``bench.gen_server``, idle machine).

So the requests of one runtime share one timer, armed for the earliest
deadline among them. A request adds its deadline when it starts waiting and
removes it when it is done: a dict insert and delete. A new deadline later
than the armed one (the common case: every call has the same timeout) arms
nothing. When the timer fires, it wakes every request whose deadline has
passed and arms itself again for the earliest left; a request woken that
way sees that its time is up and raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otpylib.runtime.backends.asyncio_backend.process import Process

logger = logging.getLogger(__name__)

__all__ = ["Deadlines"]


class Deadlines:
    """The pending request deadlines of one runtime, and the one timer that serves them."""

    __slots__ = ("_armed_at", "_handle", "_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: Each waiting process and its deadline (a process makes one request at a time).
        self._pending: dict[Process, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def add(self, proc: Process, deadline: float) -> None:
        """Wake ``proc`` (its ``waiter``) at ``deadline`` (loop time) unless removed before."""
        self._pending[proc] = deadline
        if self._handle is None:
            self._arm(deadline)
        elif deadline < self._armed_at:
            self._handle.cancel()
            self._arm(deadline)

    def remove(self, proc: Process) -> None:
        """``proc`` is no longer waiting. The timer stays armed: firing early is harmless."""
        self._pending.pop(proc, None)

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        pending = self._pending
        if not pending:
            return
        now = self._loop.time()
        earliest: float | None = None
        for proc, deadline in list(pending.items()):
            if deadline <= now:
                del pending[proc]
                waiter = proc.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(earliest)

    def close(self) -> None:
        """Cancel the timer (the runtime is shutting down)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending.clear()
