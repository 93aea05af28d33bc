"""What a supervisor is told and what it tells: child specs, options, records, errors.

Kept apart from :mod:`otpylib.supervisor` (which re-exports every public
name here) so the supervisor module holds only behaviour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgspec

from otpylib.runtime.atoms import Atom, atom
from otpylib.runtime.backends.base import DEFAULT_SHUTDOWN_TIMEOUT
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import OtpError

logger = logging.getLogger(__name__)

__all__ = [
    "ALREADY_PRESENT",
    "ALREADY_STARTED",
    "BRUTAL_KILL",
    "FAILED_TO_START_CHILD",
    "NOT_FOUND",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "RUNNING",
    "SIMPLE_ONE_FOR_ONE",
    "SUPERVISOR",
    "TEMPORARY",
    "TRANSIENT",
    "WORKER",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "StartFunction",
    "SupervisorError",
]

# Restart types: when a child that ended is started again.
#: Always restarted.
PERMANENT: Final = atom.ensure("permanent")
#: Restarted only after an abnormal exit (not normal, shutdown or (shutdown, _)).
TRANSIENT: Final = atom.ensure("transient")
#: Never restarted; its spec is forgotten once it ends.
TEMPORARY: Final = atom.ensure("temporary")

#: Shutdown without asking: ``exit(child, kill)`` straight away.
BRUTAL_KILL: Final = atom.ensure("brutal_kill")

# Child types (introspection, and the default shutdown).
WORKER: Final = atom.ensure("worker")
SUPERVISOR: Final = atom.ensure("supervisor")

# Strategies: which children restart when one of them ends.
#: Only the child that ended.
ONE_FOR_ONE: Final = atom.ensure("one_for_one")
#: Every child: the others are shut down (reverse order), then all start again in order.
ONE_FOR_ALL: Final = atom.ensure("one_for_all")
#: The child that ended and every child started after it.
REST_FOR_ONE: Final = atom.ensure("rest_for_one")
#: A dynamic supervisor: one template spec, children added with ``start_child(sup, args)``.
SIMPLE_ONE_FOR_ONE: Final = atom.ensure("simple_one_for_one")

# Error reasons of the supervisor API (SupervisorError.reason).
#: No child has that id (or, for a dynamic supervisor, that pid).
NOT_FOUND: Final = atom.ensure("not_found")
#: The child is running; terminate it first.
RUNNING: Final = atom.ensure("running")
#: A stopped child with that id exists; restart or delete it instead.
ALREADY_PRESENT: Final = atom.ensure("already_present")
#: ``(ALREADY_STARTED, pid)``: a running child has that id.
ALREADY_STARTED: Final = atom.ensure("already_started")
#: ``(FAILED_TO_START_CHILD, id, reason)``: a child failed to start during ``init``.
FAILED_TO_START_CHILD: Final = atom.ensure("failed_to_start_child")

#: How a child is started: an async callable returning the new child's pid,
#: e.g. ``functools.partial(gen_server.start_link, Worker, arg)``. It is called
#: from inside the supervisor process and should link the child to it (the
#: supervisor links again anyway, so a plain ``spawn`` works too). The pid may
#: be on another node: the supervisor only ever links, monitors and signals it.
StartFunction: TypeAlias = Callable[..., Awaitable[Pid]]

#: Default shutdown of a worker: OTP's 5000 ms, the runtime's own default.
DEFAULT_WORKER_SHUTDOWN: Final = DEFAULT_SHUTDOWN_TIMEOUT

_RESTARTS = (PERMANENT, TRANSIENT, TEMPORARY)
_TYPES = (WORKER, SUPERVISOR)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start, restart and stop one child (OTP's ``child_spec()`` map).

    Attributes:
        id: names the child within its supervisor (any hashable value).
        start: ``await start(*extra_args)`` starts the child and returns its
            pid (see :data:`StartFunction`); a dynamic supervisor passes the
            arguments given to ``start_child``.
        restart: :data:`PERMANENT` (default), :data:`TRANSIENT` or :data:`TEMPORARY`.
        shutdown: seconds the child gets to end after ``exit(child, shutdown)``
            before it is killed, ``math.inf`` to wait as long as it takes, or
            :data:`BRUTAL_KILL`. Default (``None``): 5 s for a worker, ``inf``
            for a supervisor, which needs the time to stop its own children.
        type: :data:`WORKER` (default) or :data:`SUPERVISOR`.

    Raises:
        TypeError, ValueError: a field has a value the supervisor cannot use.
    """

    id: Hashable
    start: StartFunction
    restart: Atom = PERMANENT
    shutdown: float | Atom | None = None
    type: Atom = WORKER

    def __post_init__(self) -> None:
        if not callable(self.start):
            raise TypeError(
                f"child {self.id!r}: start must be an async callable returning a Pid, "
                f"e.g. functools.partial(gen_server.start_link, Cls); got {self.start!r}"
            )
        if self.restart not in _RESTARTS:
            raise ValueError(
                f"child {self.id!r}: restart must be PERMANENT, TRANSIENT or TEMPORARY, "
                f"got {self.restart!r}"
            )
        if self.type not in _TYPES:
            raise ValueError(
                f"child {self.id!r}: type must be WORKER or SUPERVISOR, got {self.type!r}"
            )
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = math.inf if self.type is SUPERVISOR else DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", shutdown)
        elif shutdown is not BRUTAL_KILL and (
            isinstance(shutdown, Atom)
            or not isinstance(shutdown, int | float)
            or isinstance(shutdown, bool)
            or math.isnan(shutdown)
            or shutdown < 0
        ):
            raise ValueError(
                f"child {self.id!r}: shutdown must be seconds >= 0, math.inf or BRUTAL_KILL, "
                f"got {shutdown!r}"
            )
        try:
            hash(self.id)
        except TypeError:
            raise TypeError(f"child id must be hashable, got {self.id!r}") from None


class ChildInfo(msgspec.Struct, frozen=True):
    """One child as ``which_children`` reports it (OTP's ``{Id, Child, Type, Modules}``).

    Attributes:
        id: the spec's id (``None`` for children of a dynamic supervisor).
        pid: the running child, or ``None`` when it is not running.
        type: :data:`WORKER` or :data:`SUPERVISOR`.
    """

    id: Any
    pid: Pid | None
    type: Any


class ChildCounts(msgspec.Struct, frozen=True):
    """Counts of a supervisor's children, as ``supervisor:count_children/1``.

    Attributes:
        specs: child specs held (1 for a dynamic supervisor: its template).
        active: children running now.
        supervisors: children of type supervisor (running or not).
        workers: children of type worker (running or not).
    """

    specs: int
    active: int
    supervisors: int
    workers: int


class SupervisorError(OtpError):
    """A supervisor API request was refused or failed; ``.reason`` says why.

    Reasons: :data:`NOT_FOUND`, :data:`RUNNING`, :data:`ALREADY_PRESENT`,
    ``(ALREADY_STARTED, pid)``, :data:`SIMPLE_ONE_FOR_ONE` (an operation a
    dynamic supervisor does not offer), ``badarg``, or the reason a child
    failed to start with (its start function's error).
    """

    def __init__(self, reason: Any, message: str) -> None:
        self.reason = reason
        super().__init__(message)
