"""The record the asyncio backend keeps for each live process.

A mailbox is a deque plus one wake-up future that exists only while the
owner is blocked in ``receive`` (no asyncio.Queue, no task per delivery):
a send is an append and, at most, one ``set_result``.

Everything a process may never need is created on first use: the mailbox
deque (about 600 bytes, so ``None`` until the first message arrives), the
link, monitor and name tables, and the printable name of the function. An
idle process should stay small (Erlang's is 2.7 KB).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from otpylib.runtime.data import Pid, Ref

if TYPE_CHECKING:
    from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend

logger = logging.getLogger(__name__)

__all__ = ["Process", "function_name"]


def function_name(fn: Any) -> str:
    """``module.qualname`` of a process function (or the reference, for a str).

    Computed only when asked (``process_info``, logs): building the string at
    every spawn would cost time and ~60 bytes per process for nothing.
    """
    if isinstance(fn, str):
        return fn
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


class Process:
    """One live process: its pid, task, mailbox, flags and relations.

    Attributes:
        pid: this process's pid.
        runtime: the backend running it (so process code can reach it).
        task: the asyncio task running the process function.
        mailbox: queued messages, oldest first; ``None`` until the first one.
        waiter: future the owner awaits in ``receive``; ``None`` when not waiting.
        trap_exits: exit signals arrive as ``(EXIT, from, reason)`` messages.
        name: registered name or ``None``.
        links: linked pids (local or remote), or ``None`` if never linked.
        monitors: refs of monitors this process holds -> monitored target.
        monitored_by: refs of monitors on this process -> owner pid.
        kill_reason: set once the process has been told to die; its exit reason.
        started: the process function has begun running.
        created_at: wall-clock time of the spawn.
        fn: the process function as given to spawn (see :attr:`function`).
        label: what the process says it is (``otpylib.process.set_label``).
        received: messages delivered to the mailbox so far (``ps``, ``top``).
    """

    __slots__ = (
        "aliases",
        "created_at",
        "fn",
        "kill_reason",
        "label",
        "links",
        "mailbox",
        "monitored_by",
        "monitors",
        "name",
        "pid",
        "received",
        "runtime",
        "started",
        "task",
        "trap_exits",
        "waiter",
    )

    def __init__(
        self,
        pid: Pid,
        runtime: AsyncIOBackend,
        trap_exits: bool,
        created_at: float,
        fn: Any,
    ) -> None:
        self.pid = pid
        self.runtime = runtime
        self.task: asyncio.Task[None] | None = None
        self.mailbox: deque[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.trap_exits = trap_exits
        self.name: str | None = None
        self.links: set[Pid] | None = None
        self.monitors: dict[Ref, Any] | None = None
        self.monitored_by: dict[Ref, Pid] | None = None
        self.kill_reason: Any = None
        self.started = False
        self.created_at = created_at
        self.fn = fn
        self.aliases: set[Pid] | None = None
        self.label: str | None = None
        self.received = 0

    def deliver(self, message: Any) -> None:
        """Append ``message`` and wake the owner if it waits in ``receive``.

        ``AsyncIOBackend.send`` and ``mailbox.send`` (the process API's)
        inline these lines for local sends (one call less per message); keep
        the three in step.
        """
        self.received += 1
        mailbox = self.mailbox
        if mailbox is None:
            self.mailbox = deque((message,))
        else:
            mailbox.append(message)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def function(self) -> str:
        """Printable name (``module.qualname``) of the function the process runs."""
        return function_name(self.fn)

    @property
    def message_queue_len(self) -> int:
        """Messages waiting in the mailbox."""
        mailbox = self.mailbox
        return 0 if mailbox is None else len(mailbox)

    @property
    def state(self) -> str:
        """``waiting`` when blocked in receive, ``exiting`` when told to die, else ``running``."""
        if self.kill_reason is not None:
            return "exiting"
        return "waiting" if self.waiter is not None else "running"

    def __repr__(self) -> str:
        return f"<Process {self.pid!r} {self.function} {self.state}>"
