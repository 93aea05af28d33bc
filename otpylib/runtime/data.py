"""Immutable, hashable values the runtime hands out: Pid, Ref and records.

Pids and refs are ``msgspec.Struct`` values (frozen, no GC tracking): they
hash and compare by value in C, which keeps mailbox routing and table
lookups cheap, and they can cross the wire. Both carry the *node name* and
the node's *creation* (a number new at every start of a node), so an
identifier minted by an earlier incarnation of a node is never mistaken for
one of the current incarnation.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from otpylib.runtime.atoms import SHUTDOWN, Atom

logger = logging.getLogger(__name__)

__all__ = [
    "EXIT_KINDS",
    "LOCAL_NODE",
    "Pid",
    "ProcessInfo",
    "Ref",
    "RuntimeStatistics",
    "exit_kind",
]

#: Node name of a runtime that is not distributed (as Erlang's ``nonode@nohost``).
LOCAL_NODE: Final = "nonode@nohost"


class Pid(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A process identifier: which node, which process there, which incarnation.

    ``id`` 0 is reserved for the runtime itself (signals sent from outside
    any process, e.g. ``runtime.exit(pid, reason)`` from ``main``).
    """

    node: str
    id: int
    creation: int

    def __repr__(self) -> str:
        if self.node == LOCAL_NODE:
            return f"<0.{self.id}.{self.creation}>"
        return f"<{self.node}.{self.id}.{self.creation}>"

    __str__ = __repr__


class Ref(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A unique reference (monitor refs, call tags). Cheap: a counter, not a uuid."""

    node: str
    id: int
    creation: int

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.id}.{self.creation}>"

    __str__ = __repr__


class ProcessInfo(msgspec.Struct, frozen=True):
    """A snapshot of one process, as ``erlang:process_info/1`` gives.

    Attributes:
        pid: the process.
        state: ``"running"`` (runnable or executing), ``"waiting"`` (blocked in
            ``receive``) or ``"exiting"``.
        name: registered name, or ``None``.
        created_at: wall-clock time (``time.time()``) of the spawn.
        trap_exits: whether exit signals arrive as messages.
        message_queue_len: messages waiting in the mailbox.
        links: pids linked to this process.
        monitors: pids this process monitors.
        monitored_by: pids that monitor this process.
        function: ``module.qualname`` of the function the process runs.
        label: what the process says it is (``process.set_label``), e.g.
            ``"gen_server mypkg.Counter"`` or ``"supervisor one_for_one"``;
            ``None`` when it never set one.
        messages_received: messages delivered to its mailbox since it started.
    """

    pid: Pid
    state: str
    name: str | None
    created_at: float
    trap_exits: bool
    message_queue_len: int
    links: tuple[Pid, ...]
    monitors: tuple[Any, ...]
    monitored_by: tuple[Pid, ...]
    function: str
    label: str | None = None
    messages_received: int = 0


class RuntimeStatistics(msgspec.Struct, frozen=True):
    """Counters for a whole runtime (``erlang:statistics/1`` in spirit).

    Attributes:
        uptime_seconds: seconds since ``initialize()``.
        total_spawned: processes spawned since start.
        active_processes: processes alive now.
        messages_processed: messages delivered to local mailboxes since start.
        active_monitors: monitors in place now (counted once, at the owner).
        active_links: links in place now (each link counted once).
        registered_names: names in the registry now.
        exits: processes ended since start, by :func:`exit_kind` of their
            reason (every key of :data:`EXIT_KINDS` is present).
    """

    uptime_seconds: float
    total_spawned: int
    active_processes: int
    messages_processed: int
    active_monitors: int
    active_links: int
    registered_names: int
    exits: dict[str, int] = msgspec.field(default_factory=dict)


#: The kinds :func:`exit_kind` sorts exit reasons into: a bounded set, so a
#: metric labelled by it stays small whatever reasons processes invent.
EXIT_KINDS: Final = ("normal", "shutdown", "killed", "noconnection", "crash")

_KIND_OF_ATOM: Final = {
    "normal": "normal",
    "shutdown": "shutdown",
    "killed": "killed",
    "noconnection": "noconnection",
}


def exit_kind(reason: Any) -> str:
    """Sort an exit reason into one of :data:`EXIT_KINDS`.

    ``normal``, ``shutdown`` and ``(shutdown, term)`` (a supervisor's
    orderly stop, as in Erlang), ``killed``, ``noconnection`` (a link or
    monitor across a lost connection); every other reason (an exception, any
    other term) is a ``crash``. Called once per process exit, never per message.
    """
    if type(reason) is Atom:
        return _KIND_OF_ATOM.get(reason.name, "crash")
    if type(reason) is tuple and len(reason) == 2 and reason[0] is SHUTDOWN:
        return "shutdown"
    return "crash"
