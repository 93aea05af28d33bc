"""Inside a supervisor process: starting, watching, restarting and stopping children.

:mod:`otpylib.supervisor` is the public side (options, start, the API
calls); this module holds the callbacks of the supervisor's gen_server and
the child bookkeeping they share. Every operation on a child goes through
``link``/``monitor``/``unlink``/``exit`` of the runtime on the pid its start
function returned, so a child may live on another node.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final

from otpylib import _gen, process
from otpylib._child_spec import (
    ALREADY_PRESENT,
    ALREADY_STARTED,
    BRUTAL_KILL,
    FAILED_TO_START_CHILD,
    NOT_FOUND,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    RUNNING,
    SIMPLE_ONE_FOR_ONE,
    SUPERVISOR,
    TEMPORARY,
    TRANSIENT,
    ChildCounts,
    ChildInfo,
    ChildSpec,
)
from otpylib._gen import describe_reason, is_quiet
from otpylib._gen_server_loop import NOREPLY, REPLY, STOP
from otpylib.gen_server import From, GenServer
from otpylib.runtime.atoms import DOWN, EXIT, KILL, SHUTDOWN, TRAP_EXIT, Atom, atom
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import OtpError

logger = logging.getLogger(__name__)

__all__ = [
    "COUNT_CHILDREN",
    "DELETE_CHILD",
    "OK",
    "RESTART_CHILD",
    "START_CHILD",
    "TERMINATE_CHILD",
    "WHICH_CHILDREN",
    "Supervisor",
]

# Requests (first element of the call) and answers.
WHICH_CHILDREN: Final = atom.ensure("which_children")
COUNT_CHILDREN: Final = atom.ensure("count_children")
START_CHILD: Final = atom.ensure("start_child")
TERMINATE_CHILD: Final = atom.ensure("terminate_child")
RESTART_CHILD: Final = atom.ensure("restart_child")
DELETE_CHILD: Final = atom.ensure("delete_child")
OK: Final = atom.ensure("ok")
_ERROR: Final = atom.ensure("error")
_BADARG: Final = atom.ensure("badarg")


class _Child:
    """A child slot: its spec, its pid while it runs, its extra start arguments."""

    __slots__ = ("args", "pid", "spec")

    def __init__(self, spec: ChildSpec, args: tuple[Any, ...] = ()) -> None:
        self.spec = spec
        self.args = args
        self.pid: Pid | None = None


class _State:
    """The supervisor's state (mutated in place; the gen_server passes it along).

    ``children`` holds an ordinary supervisor's children in start order;
    ``by_pid`` maps every running child's pid to its slot (for a dynamic
    supervisor it is the only table, in start order). ``restarts`` holds the
    monotonic times of recent restarts, for the intensity check.
    """

    __slots__ = (
        "by_pid",
        "children",
        "max_restarts",
        "max_seconds",
        "restarts",
        "rt",
        "strategy",
        "template",
    )

    def __init__(
        self, rt: RuntimeBackend, strategy: Atom, max_restarts: int, max_seconds: float
    ) -> None:
        self.rt = rt
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.restarts: deque[float] = deque()
        self.children: list[_Child] = []
        self.by_pid: dict[Pid, _Child] = {}
        self.template: ChildSpec | None = None

    def find(self, child_id: Hashable) -> _Child | None:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        return None

    def allow_restart(self) -> bool:
        """Record a restart; ``False`` when it exceeds the intensity."""
        now = time.monotonic()
        restarts = self.restarts
        restarts.append(now)
        while restarts and restarts[0] < now - self.max_seconds:
            restarts.popleft()
        return len(restarts) <= self.max_restarts


class _StartFailed(Exception):
    """A child's start function failed; ``reason`` is its error's reason."""

    def __init__(self, child_id: Any, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"child {child_id!r} failed to start: {describe_reason(reason)}")


class Supervisor(GenServer):
    """The supervisor's gen_server callbacks."""

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        specs, strategy, max_restarts, max_seconds = args
        process.flag(TRAP_EXIT, True)
        process.set_label(f"supervisor {strategy}")
        st = _State(process.runtime(), strategy, max_restarts, max_seconds)
        if strategy is SIMPLE_ONE_FOR_ONE:
            st.template = specs[0]
            return st
        for spec in specs:
            child = _Child(spec)
            try:
                await _start_child(st, child)
            except _StartFailed as failed:
                logger.error("supervisor %r: %s; stopping", process.self(), failed)
                await self.terminate(SHUTDOWN, st)
                return (STOP, (SHUTDOWN, (FAILED_TO_START_CHILD, spec.id, failed.reason)))
            st.children.append(child)
        return st

    async def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        st: _State = state
        kind = request[0]
        if kind is WHICH_CHILDREN:
            answer: tuple[Any, ...] = (OK, _which(st))
        elif kind is COUNT_CHILDREN:
            answer = (OK, _count(st))
        elif kind is START_CHILD:
            answer = await _handle_start_child(st, request[1], request[2])
        elif kind is TERMINATE_CHILD:
            answer = await _handle_terminate_child(st, request[1])
        elif kind is RESTART_CHILD:
            answer = await _handle_restart_child(st, request[1])
        elif kind is DELETE_CHILD:
            answer = _handle_delete_child(st, request[1])
        else:
            answer = (_ERROR, _BADARG, f"unknown supervisor request {request!r}")
        if (
            answer[0] is _ERROR
            and isinstance(answer[1], BaseException)
            and not st.rt.is_local(from_[0])
        ):
            # An exception cannot travel to another node (and the reply
            # would crash us trying): the caller there gets its text.
            answer = (_ERROR, describe_reason(answer[1]), answer[2])
        return (REPLY, answer, st)

    async def handle_info(self, message: Any, state: Any) -> Any:
        st: _State = state
        if type(message) is tuple and len(message) == 3 and message[0] is EXIT:
            child = st.by_pid.pop(message[1], None)
            if child is not None:
                return await _child_exited(st, child, message[2])
            logger.debug("supervisor %r: EXIT from %r, not a child", process.self(), message[1])
            return (NOREPLY, st)
        logger.warning("supervisor %r ignored an unexpected message: %r", process.self(), message)
        return (NOREPLY, st)

    async def terminate(self, reason: Any, state: Any) -> None:
        st: _State = state
        if st.template is not None:
            pids = list(st.by_pid)
            st.by_pid.clear()
            await _shutdown(st.rt, pids, _shutdown_of(st.template))
            return
        for child in reversed(st.children):
            await _stop_child(st, child)


# ------------------------------------------------------ starting and stopping


async def _start_child(st: _State, child: _Child) -> Pid:
    """Run the child's start function and record the child; raises :class:`_StartFailed`."""
    spec = child.spec
    try:
        pid = await spec.start(*child.args)
    except Exception as exc:
        reason = exc.reason if isinstance(exc, OtpError) and exc.reason is not None else exc
        raise _StartFailed(spec.id, reason) from exc
    if type(pid) is not Pid:
        raise _StartFailed(
            spec.id, TypeError(f"start function of child {spec.id!r} returned {pid!r}, not a Pid")
        )
    # Idempotent if the start function linked already; needed if it did not.
    await st.rt.link(pid)
    child.pid = pid
    st.by_pid[pid] = child
    return pid


async def _stop_child(st: _State, child: _Child) -> None:
    """Shut a running child down as its spec says; it stays in ``children``."""
    pid = child.pid
    if pid is None:
        return
    st.by_pid.pop(pid, None)
    child.pid = None
    await _shutdown(st.rt, [pid], _shutdown_of(child.spec))


async def _shutdown(rt: RuntimeBackend, pids: list[Pid], how: float | Atom) -> None:
    """Stop ``pids`` together: ``shutdown`` signal, wait up to ``how`` seconds, then kill.

    Each is monitored and unlinked first, so its end is seen as a ``DOWN``
    (also when it ignores the signal or already died) and no ``EXIT`` from
    it reaches the supervisor's mailbox; an ``EXIT`` that was already queued
    is dropped (OTP's ``monitor_child``).
    """
    watching: dict[Ref, Pid] = {}
    for pid in pids:
        watching[await rt.monitor(pid)] = pid
        await rt.unlink(pid)
        await _gen.flush(rt, _exit_from(pid))
    for pid in pids:
        await rt.exit(pid, KILL if how is BRUTAL_KILL else SHUTDOWN)
    deadline = None
    if isinstance(how, int | float) and not math.isinf(how):
        deadline = time.monotonic() + how
    await _await_downs(rt, watching, deadline)
    if watching:
        logger.warning(
            "%d child(ren) did not stop within %s s of the shutdown signal; killing %r",
            len(watching),
            how,
            list(watching.values()),
        )
        for pid in watching.values():
            await rt.exit(pid, KILL)
        await _await_downs(rt, watching, None)


def _shutdown_of(spec: ChildSpec) -> float | Atom:
    """The spec's shutdown (its ``None`` default was resolved when the spec was made)."""
    shutdown = spec.shutdown
    assert shutdown is not None
    return shutdown


def _exit_from(pid: Pid) -> Callable[[Any], bool]:
    """A receive pattern for ``(EXIT, pid, _)``."""

    def match(m: Any) -> bool:
        return type(m) is tuple and len(m) == 3 and m[0] is EXIT and m[1] == pid

    return match


async def _await_downs(
    rt: RuntimeBackend, watching: dict[Ref, Pid], deadline: float | None
) -> None:
    """Take the ``DOWN`` of each watched monitor, removing it, until none is left or time is up."""

    def is_down(m: Any) -> bool:
        return type(m) is tuple and len(m) == 4 and m[0] is DOWN and m[1] in watching

    while watching:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            msg = await rt.receive(timeout, is_down)
        except TimeoutError:
            return
        del watching[msg[1]]


# ------------------------------------------------------------------ restarts


async def _child_exited(st: _State, child: _Child, reason: Any) -> Any:
    """A child ended with ``reason`` (its pid already left ``by_pid``): restart or forget it."""
    child.pid = None
    restart = child.spec.restart
    me = process.self()
    if restart is TEMPORARY or (restart is TRANSIENT and is_quiet(reason)):
        if not is_quiet(reason):
            logger.error(
                "supervisor %r: %s child %r exited with reason %s; not restarted",
                me,
                restart,
                child.spec.id,
                describe_reason(reason),
            )
        if restart is TEMPORARY and st.template is None:
            st.children.remove(child)
        return (NOREPLY, st)
    log = logger.info if is_quiet(reason) else logger.error
    log(
        "supervisor %r: child %r exited with reason %s; restarting (%s)",
        me,
        child.spec.id,
        describe_reason(reason),
        st.strategy,
    )
    if await _restart(st, child):
        return (NOREPLY, st)
    logger.error(
        "supervisor %r: more than %d restarts within %s s; stopping all children and "
        "exiting with reason shutdown",
        me,
        st.max_restarts,
        st.max_seconds,
    )
    return (STOP, SHUTDOWN, st)


async def _restart(st: _State, child: _Child) -> bool:
    """Restart by the strategy; ``False`` once the intensity is exceeded (give up)."""
    if not st.allow_restart():
        return False
    if st.strategy is ONE_FOR_ONE or st.strategy is SIMPLE_ONE_FOR_ONE:
        while True:
            try:
                await _start_child(st, child)
                return True
            except _StartFailed as failed:
                logger.error("supervisor %r: %s", process.self(), failed)
                if not st.allow_restart():
                    return False
    index = st.children.index(child)
    group = st.children if st.strategy is ONE_FOR_ALL else st.children[index:]
    # Only the children running now (and the one that ended) come back: a
    # child stopped with terminate_child stays stopped.
    group = [c for c in group if c is child or c.pid is not None]
    while True:
        for other in reversed(group):
            await _stop_child(st, other)
        for other in group:
            if other.spec.restart is TEMPORARY:
                st.children.remove(other)
        group = [c for c in group if c.spec.restart is not TEMPORARY]
        try:
            for other in group:
                await _start_child(st, other)
            return True
        except _StartFailed as failed:
            logger.error("supervisor %r: %s", process.self(), failed)
            if not st.allow_restart():
                return False


# ------------------------------------------------------------------ requests


def _which(st: _State) -> list[ChildInfo]:
    if st.template is not None:
        kind = st.template.type
        return [ChildInfo(None, pid, kind) for pid in st.by_pid]
    return [ChildInfo(c.spec.id, c.pid, c.spec.type) for c in st.children]


def _count(st: _State) -> ChildCounts:
    if st.template is not None:
        n = len(st.by_pid)
        sups = n if st.template.type is SUPERVISOR else 0
        return ChildCounts(specs=1, active=n, supervisors=sups, workers=n - sups)
    sups = sum(1 for c in st.children if c.spec.type is SUPERVISOR)
    return ChildCounts(
        specs=len(st.children),
        active=sum(1 for c in st.children if c.pid is not None),
        supervisors=sups,
        workers=len(st.children) - sups,
    )


async def _handle_start_child(
    st: _State, spec: ChildSpec | None, args: tuple[Any, ...] | None
) -> tuple[Any, ...]:
    if st.template is not None:
        if args is None:
            return (
                _ERROR,
                _BADARG,
                "this is a dynamic (SIMPLE_ONE_FOR_ONE) supervisor: start_child takes a list "
                "of extra arguments for its template, not a ChildSpec",
            )
        child = _Child(st.template, args)
    else:
        if spec is None:
            return (
                _ERROR,
                _BADARG,
                "this supervisor is not dynamic: start_child takes a ChildSpec",
            )
        existing = st.find(spec.id)
        if existing is not None:
            if existing.pid is not None:
                return (
                    _ERROR,
                    (ALREADY_STARTED, existing.pid),
                    f"a child with id {spec.id!r} is already running as {existing.pid!r}",
                )
            return (
                _ERROR,
                ALREADY_PRESENT,
                f"a stopped child with id {spec.id!r} exists; restart_child or delete_child it",
            )
        child = _Child(spec)
    try:
        pid = await _start_child(st, child)
    except _StartFailed as failed:
        return (_ERROR, failed.reason, str(failed))
    if st.template is None:
        st.children.append(child)
    return (OK, pid)


async def _handle_terminate_child(st: _State, child_id: Any) -> tuple[Any, ...]:
    if st.template is not None:
        if type(child_id) is Pid and child_id in st.by_pid:
            del st.by_pid[child_id]
            await _shutdown(st.rt, [child_id], _shutdown_of(st.template))
            return (OK, None)
        return (_ERROR, NOT_FOUND, f"{child_id!r} is not a child of this dynamic supervisor")
    child = st.find(child_id)
    if child is None:
        return (_ERROR, NOT_FOUND, f"no child has the id {child_id!r}")
    await _stop_child(st, child)
    if child.spec.restart is TEMPORARY:
        st.children.remove(child)
    return (OK, None)


async def _handle_restart_child(st: _State, child_id: Any) -> tuple[Any, ...]:
    if st.template is not None:
        return (_ERROR, SIMPLE_ONE_FOR_ONE, "a dynamic supervisor cannot restart_child")
    child = st.find(child_id)
    if child is None:
        return (_ERROR, NOT_FOUND, f"no child has the id {child_id!r}")
    if child.pid is not None:
        return (_ERROR, RUNNING, f"child {child_id!r} is running as {child.pid!r}")
    try:
        pid = await _start_child(st, child)
    except _StartFailed as failed:
        return (_ERROR, failed.reason, str(failed))
    return (OK, pid)


def _handle_delete_child(st: _State, child_id: Any) -> tuple[Any, ...]:
    if st.template is not None:
        return (_ERROR, SIMPLE_ONE_FOR_ONE, "a dynamic supervisor cannot delete_child")
    child = st.find(child_id)
    if child is None:
        return (_ERROR, NOT_FOUND, f"no child has the id {child_id!r}")
    if child.pid is not None:
        return (
            _ERROR,
            RUNNING,
            f"child {child_id!r} is running as {child.pid!r}; terminate it first",
        )
    st.children.remove(child)
    return (OK, None)
