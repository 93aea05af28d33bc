"""supervisor: start children, watch them, restart them by a strategy (OTP's ``supervisor``).

A crash should cost one process, not the program: the supervisor notices
it (it is linked to its children and traps exits), starts the child again
in a known good state, and gives up in an orderly way when restarts come
too often to help (the restart *intensity*: more than ``max_restarts`` in
``max_seconds`` makes it stop its children and exit with ``shutdown``, so
its own supervisor can try a bigger restart)::

    from functools import partial
    from otpylib import gen_server, supervisor

    children = [
        supervisor.ChildSpec("db", partial(gen_server.start_link, Db, url, name="db")),
        supervisor.ChildSpec("api", partial(gen_server.start_link, Api, name="api")),
    ]
    sup = await supervisor.start_link(children, strategy=supervisor.REST_FOR_ONE)

Children start in list order and are shut down in reverse order: each gets
``exit(child, shutdown)`` and up to its spec's ``shutdown`` seconds to end
(a gen_server runs ``terminate``), then ``exit(child, kill)``. A dynamic
supervisor (:data:`SIMPLE_ONE_FOR_ONE`) has one template spec and starts a
child per ``start_child(sup, args)``; it stops all its children at once.

The supervisor is a gen_server: its API is a set of calls (default timeout
``None``, as OTP's ``infinity``), and it ends when its parent (or the
runtime) tells it to, stopping its children first.

Distribution: the supervisor only ever calls ``link``, ``monitor``,
``unlink`` and ``exit`` on the pid a start function returns, so a child may
live on another node: start it with ``partial(gen_server.start_link, Cls,
node="b@host")`` or ``partial(process.spawn_link, "pkg.mod:fn", node=...)``.
When that node is lost, the link breaks with ``noconnection``: an abnormal
exit, so the strategy restarts the child (and counts the restart). Where it
comes back is the start function's choice: try a list of nodes and take the
first that answers to move to a survivor, or wait for the node to return;
the supervisor itself never waits between restarts, as in OTP. A child whose
node shuts down cleanly ends with ``shutdown`` (it obeys its own node's
shutdown, its parent being elsewhere) and is restarted the same way.

The API calls work from any node, by ``(name, node)`` or pid. A failure
reason that is an exception reaches a caller on another node as its text
(``"ValueError: ..."``): an exception cannot cross nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any

from otpylib import gen_server
from otpylib._child_spec import (
    ALREADY_PRESENT,
    ALREADY_STARTED,
    BRUTAL_KILL,
    FAILED_TO_START_CHILD,
    NOT_FOUND,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    PERMANENT,
    REST_FOR_ONE,
    RUNNING,
    SIMPLE_ONE_FOR_ONE,
    SUPERVISOR,
    TEMPORARY,
    TRANSIENT,
    WORKER,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    StartFunction,
    SupervisorError,
)
from otpylib._gen import describe_reason
from otpylib._supervisor_server import (
    COUNT_CHILDREN,
    DELETE_CHILD,
    OK,
    RESTART_CHILD,
    START_CHILD,
    TERMINATE_CHILD,
    WHICH_CHILDREN,
    Supervisor,
)
from otpylib.gen_server import StartError
from otpylib.runtime.atoms import SHUTDOWN, Atom
from otpylib.runtime.backends.base import RuntimeBackend, Target
from otpylib.runtime.data import Pid

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
    "count_children",
    "delete_child",
    "restart_child",
    "start",
    "start_child",
    "start_link",
    "terminate_child",
    "which_children",
]

_STRATEGIES = (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE)

# ------------------------------------------------------------------ client API


async def start_link(
    children: Sequence[ChildSpec],
    strategy: Atom = ONE_FOR_ONE,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    name: str | None = None,
) -> Pid:
    """Start a supervisor linked to the caller; return its pid once every child started.

    Args:
        children: the child specs, in start order (exactly one template spec
            for :data:`SIMPLE_ONE_FOR_ONE`, whose children come later).
        strategy: :data:`ONE_FOR_ONE`, :data:`ONE_FOR_ALL`,
            :data:`REST_FOR_ONE` or :data:`SIMPLE_ONE_FOR_ONE`.
        max_restarts, max_seconds: the restart intensity (OTP's defaults):
            one restart more than ``max_restarts`` within ``max_seconds``
            makes the supervisor stop its children and exit with ``shutdown``.
        name: register the supervisor under this name.

    Raises:
        StartError: a child failed to start; ``.reason`` is
            ``(SHUTDOWN, (FAILED_TO_START_CHILD, id, reason))`` and the
            children started before it were shut down again.
        TypeError, ValueError: invalid arguments (raised before anything starts).
    """
    specs = _check_options(children, strategy, max_restarts, max_seconds)
    try:
        return await gen_server.start_link(
            Supervisor, specs, strategy, max_restarts, max_seconds, name=name
        )
    except StartError as exc:
        raise _start_error(exc) from exc.__cause__


async def start(
    children: Sequence[ChildSpec],
    strategy: Atom = ONE_FOR_ONE,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    name: str | None = None,
    *,
    runtime: RuntimeBackend | None = None,
) -> Pid:
    """Start a supervisor not linked to the caller (a tree's root, e.g. from ``main``).

    As :func:`start_link`; ``runtime`` is needed only outside any process.
    The supervisor stops its children and exits when the runtime shuts down
    or when it gets ``exit(sup, shutdown)``.
    """
    specs = _check_options(children, strategy, max_restarts, max_seconds)
    try:
        return await gen_server.start(
            Supervisor, specs, strategy, max_restarts, max_seconds, name=name, runtime=runtime
        )
    except StartError as exc:
        raise _start_error(exc) from exc.__cause__


async def which_children(
    sup: Target, *, timeout: float | None = None, runtime: RuntimeBackend | None = None
) -> list[ChildInfo]:
    """The children in start order, running or not (``supervisor:which_children/1``)."""
    result: list[ChildInfo] = await _request(sup, (WHICH_CHILDREN,), timeout, runtime)
    return result


async def count_children(
    sup: Target, *, timeout: float | None = None, runtime: RuntimeBackend | None = None
) -> ChildCounts:
    """How many specs, running children, supervisors and workers (``count_children/1``)."""
    result: ChildCounts = await _request(sup, (COUNT_CHILDREN,), timeout, runtime)
    return result


async def start_child(
    sup: Target,
    spec_or_args: ChildSpec | Sequence[Any],
    *,
    timeout: float | None = None,
    runtime: RuntimeBackend | None = None,
) -> Pid:
    """Add a child and start it; return its pid (``supervisor:start_child/2``).

    Give a :class:`ChildSpec` to an ordinary supervisor (the child goes last
    in the start order), or a list of extra arguments to a dynamic one (its
    template's ``start`` is called with them appended).

    Raises:
        SupervisorError: ``(ALREADY_STARTED, pid)`` or ``already_present``
            for a taken id, ``badarg`` for the wrong kind of argument, or the
            reason the child failed to start (then nothing was added).
    """
    if isinstance(spec_or_args, ChildSpec):
        request: tuple[Any, ...] = (START_CHILD, spec_or_args, None)
    elif isinstance(spec_or_args, list | tuple):
        request = (START_CHILD, None, tuple(spec_or_args))
    else:
        raise TypeError(
            "start_child takes a ChildSpec (ordinary supervisor) or a list of extra "
            f"arguments (dynamic supervisor); got {type(spec_or_args).__name__}"
        )
    pid: Pid = await _request(sup, request, timeout, runtime)
    return pid


async def terminate_child(
    sup: Target,
    child_id: Hashable,
    *,
    timeout: float | None = None,
    runtime: RuntimeBackend | None = None,
) -> None:
    """Shut a child down as its spec says, keeping the spec (``terminate_child/2``).

    A dynamic supervisor's children are named by pid and are forgotten, as
    are temporary children. Terminating a stopped child does nothing.

    Raises:
        SupervisorError: ``not_found``.
    """
    await _request(sup, (TERMINATE_CHILD, child_id), timeout, runtime)


async def restart_child(
    sup: Target,
    child_id: Hashable,
    *,
    timeout: float | None = None,
    runtime: RuntimeBackend | None = None,
) -> Pid:
    """Start a stopped child again from its spec; return its pid (``restart_child/2``).

    Raises:
        SupervisorError: ``not_found``, ``running``, ``simple_one_for_one``,
            or the reason the child failed to start.
    """
    pid: Pid = await _request(sup, (RESTART_CHILD, child_id), timeout, runtime)
    return pid


async def delete_child(
    sup: Target,
    child_id: Hashable,
    *,
    timeout: float | None = None,
    runtime: RuntimeBackend | None = None,
) -> None:
    """Forget a stopped child's spec (``delete_child/2``).

    Raises:
        SupervisorError: ``not_found``, ``running`` or ``simple_one_for_one``.
    """
    await _request(sup, (DELETE_CHILD, child_id), timeout, runtime)


async def _request(
    sup: Target, request: tuple[Any, ...], timeout: float | None, runtime: RuntimeBackend | None
) -> Any:
    answer = await gen_server.call(sup, request, timeout, runtime=runtime)
    if answer[0] is OK:
        return answer[1]
    raise SupervisorError(answer[1], answer[2])


def _check_options(
    children: Sequence[ChildSpec], strategy: Atom, max_restarts: int, max_seconds: float
) -> tuple[ChildSpec, ...]:
    """Refuse bad arguments in the caller, before any process starts."""
    if strategy not in _STRATEGIES:
        raise ValueError(
            "strategy must be ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE or SIMPLE_ONE_FOR_ONE, "
            f"got {strategy!r}"
        )
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
    if not isinstance(max_seconds, int | float) or not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")
    specs = tuple(children)
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children must be ChildSpec values, got {spec!r}")
    if strategy is SIMPLE_ONE_FOR_ONE and len(specs) != 1:
        raise ValueError(
            f"a SIMPLE_ONE_FOR_ONE supervisor takes exactly one template spec, got {len(specs)}"
        )
    seen: set[Hashable] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"two children have the id {spec.id!r}; ids must be unique")
        seen.add(spec.id)
    return specs


def _start_error(exc: StartError) -> StartError:
    """Reword the failure of a supervisor's start so it names the child that failed."""
    reason = exc.reason
    if (
        type(reason) is tuple
        and len(reason) == 2
        and reason[0] is SHUTDOWN
        and type(reason[1]) is tuple
        and len(reason[1]) == 3
        and reason[1][0] is FAILED_TO_START_CHILD
    ):
        _, child_id, why = reason[1]
        return StartError(
            reason,
            f"supervisor not started: child {child_id!r} failed to start: {describe_reason(why)}",
        )
    return exc
