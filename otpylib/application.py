"""Applications, as OTP's ``application``: a start function, a top process, a type.

A node exists to keep some code running, and to stop (and say why) when it
cannot. An *application* is a start function that returns the pid of its
top process, usually a supervisor or a ``start_link``-ed server, plus a type
that says what its end means for the node:

=============  ==============================================================
``permanent``  any end stops the node (a crash: the node stops as failed)
``transient``  a normal end is logged; any other stops the node as failed
``temporary``  any end is logged; the node runs on
=============  ==============================================================

::

    from otpylib import application, gen_server

    async def start_kv():
        return await gen_server.start_link(KV, name="kv")

    await application.start(start_kv, runtime=runtime)       # from main
    application.which_applications(runtime)                  # [ApplicationInfo(...)]
    await application.stop("start_kv", runtime=runtime)

Theory of operation
-------------------
``start`` spawns an *application master* (trapping exits), which spawns and
links a *holder*, which calls the start function. The holder is the process
a ``start_link`` in the start function links to, so the server it returns
keeps running after the start function returns: the holder then traps
exits, links to the returned pid and waits. When the top process ends, the
holder ends with its reason, and the master acts on it by the type. To
stop an application, the master sends ``shutdown`` to the holder, which
passes it to its top process, waits for it to end, then ends itself.

A start function that does not return (a plain process function: a receive
loop) is its own top process: the holder running it is the top process. The
application counts as started (and ``start`` returns, so ``--run``s start in
order) when the start function returns a pid; or, while it still runs, once
its process has been linked to nothing but its master for two polls in a
row (a ``start_link`` waiting for its server's ``init`` is linked to that
server, so it is not mistaken for a plain process); or after
``SETTLE_TIME`` seconds in any case.

A start function that returns something other than a pid is reported in one
log line and the application ends ``normal`` at once (so a permanent one
stops the node, with success).

Stopping the node: when an application's end stops the node, the handler
set with ``set_node_stop_handler`` is called with an ``ApplicationEnd``
(``otpy-node`` uses it to choose its exit status); with no handler, the
runtime's ``shutdown()`` is called, for any backend.

Differs from OTP: no ``.app`` resource files, dependencies, environment or
``start_phases``; an application is named by its start function (or a
``name=``); ``stop`` of a permanent application does not stop the node (as in
OTP); ``start`` takes a start function rather than a callback module, and a
plain process function may be one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from otpylib import process
from otpylib._gen import describe_reason, is_quiet
from otpylib.runtime.atoms import EXIT, KILL, NORMAL, SHUTDOWN, TRAP_EXIT, Atom, atom
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import OtpError, ProcessExit
from otpylib.runtime.function_ref import resolve_function

logger = logging.getLogger(__name__)

__all__ = [
    "PERMANENT",
    "SETTLE_TIME",
    "STOP_TIMEOUT",
    "TEMPORARY",
    "TRANSIENT",
    "ApplicationEnd",
    "ApplicationError",
    "ApplicationInfo",
    "set_node_stop_handler",
    "start",
    "stop",
    "stop_all",
    "which_applications",
]

#: Any end of the application stops the node.
PERMANENT: Final = atom.ensure("permanent")
#: An abnormal end stops the node; a normal one is only logged.
TRANSIENT: Final = atom.ensure("transient")
#: Any end is only logged.
TEMPORARY: Final = atom.ensure("temporary")
_TYPES: Final = {PERMANENT, TRANSIENT, TEMPORARY}

#: Seconds a start function that has not returned (and is linked to a
#: process) may run before its application counts as started anyway: it is
#: then taken to be a plain process function that links to something.
SETTLE_TIME: Final = 1.0
#: Seconds ``stop`` gives a top process to end after ``shutdown`` before it is
#: killed: a supervisor's default for a worker, OTP's 5000 ms.
STOP_TIMEOUT: Final = 5.0
#: How often a master looks whether a start function still running waits.
_POLL: Final = 0.01

# Messages between the holder, the master and ``stop``.
_STARTED: Final = atom.ensure("$app_started")
_NO_PID: Final = atom.ensure("$app_no_pid")
_STOP: Final = atom.ensure("$app_stop")


class ApplicationError(OtpError):
    """An application could not be started or stopped; ``.reason`` says why.

    Reasons: ``already_started`` (the name is taken), ``not_started`` (stop of
    an unknown name), a type that is not permanent/transient/temporary
    (``bad_type``), or the exit reason of a start function that failed (the
    exception it raised, also chained as ``__cause__``).
    """

    def __init__(self, name: str, reason: Any, message: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ApplicationInfo:
    """A running application, as ``which_applications`` reports it."""

    #: The application's name (its start function's, unless given).
    name: str
    #: ``PERMANENT``, ``TRANSIENT`` or ``TEMPORARY``.
    type: Atom
    #: ``module:function`` of the start function.
    function: str
    #: Its top process (the holder itself for a plain process function).
    top: Pid | None


@dataclass(frozen=True, slots=True)
class ApplicationEnd:
    """Why an application's end stops the node: what the stop handler gets."""

    name: str
    type: Atom
    function: str
    #: The top process's exit reason.
    reason: Any
    #: Whether it ended abnormally (a crash, or a failed start).
    failed: bool
    #: One line for humans, e.g. ``application app:main crashed: ValueError: boom``.
    message: str


@dataclass(eq=False)
class _App:
    name: str
    type: Atom
    function: str
    started: asyncio.Future[Pid | None]
    ended: asyncio.Future[Any]
    top: Pid | None = None
    master: Pid | None = None
    stopping: bool = False


@dataclass(eq=False)
class _Controller:
    """The applications of one runtime (OTP's application_controller, without a process)."""

    apps: dict[str, _App] = field(default_factory=dict)
    on_node_stop: Callable[[ApplicationEnd], None] | None = None
    stopping: bool = False


_controllers: weakref.WeakKeyDictionary[RuntimeBackend, _Controller] = weakref.WeakKeyDictionary()


def _controller(rt: RuntimeBackend) -> _Controller:
    ctl = _controllers.get(rt)
    if ctl is None:
        ctl = _controllers[rt] = _Controller()
    return ctl


def _pick(runtime: RuntimeBackend | None, what: str) -> RuntimeBackend:
    if runtime is not None:
        return runtime
    if process.in_process():
        return process.runtime()
    raise ApplicationError(
        "",
        atom.ensure("badarg"),
        f"application.{what}() was called outside any process; pass the runtime: "
        f"'application.{what}(..., runtime=runtime)'",
    )


def _reference(fn: Callable[..., Any] | str) -> str:
    if isinstance(fn, str):
        return fn
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', repr(fn))}"


def set_node_stop_handler(
    runtime: RuntimeBackend, handler: Callable[[ApplicationEnd], None] | None
) -> None:
    """Choose what happens when an application's end stops the node.

    ``handler`` is called once, in the event loop, with the
    ``ApplicationEnd`` that stops the node; it must not block. ``None``
    restores the default: the runtime's ``shutdown()``.
    """
    _controller(runtime).on_node_stop = handler


async def start(
    fn: Callable[..., Any] | str,
    args: list[Any] | tuple[Any, ...] = (),
    *,
    name: str | None = None,
    type: Atom | str = PERMANENT,
    runtime: RuntimeBackend | None = None,
) -> Pid | None:
    """Start an application (``application:start/2``); return its top process's pid.

    Args:
        fn: the start function, or ``"package.module:function"``: called
            with ``args`` in a process of its own, it returns the pid of the
            top process (e.g. of ``gen_server.start_link`` or
            ``supervisor.start_link``), or is itself a process function that
            never returns.
        args: passed to ``fn``.
        name: the application's name (default: ``fn``'s ``module:function``).
        type: ``PERMANENT`` (default), ``TRANSIENT`` or ``TEMPORARY`` (or their names).
        runtime: the runtime to start on; needed only outside any process.

    Returns:
        The top process's pid; ``None`` when the start function returned
        something else (then the application has already ended ``normal``).

    Raises:
        ApplicationError: the name is taken, the type is unknown, ``fn``
            cannot be imported, or the start function failed (``.reason``).
    """
    rt = _pick(runtime, "start")
    kind = atom.ensure(type) if isinstance(type, str) else type
    function = _reference(fn)
    app_name = name or function
    if kind not in _TYPES:
        raise ApplicationError(
            app_name,
            atom.ensure("bad_type"),
            f"application {app_name}: type {type!r} is not permanent, transient or temporary",
        )
    ctl = _controller(rt)
    if app_name in ctl.apps:
        raise ApplicationError(
            app_name,
            atom.ensure("already_started"),
            f"application {app_name} is already started; stop it first or give another name",
        )
    if isinstance(fn, str):
        try:
            fn = resolve_function(fn)
        except Exception as exc:
            raise ApplicationError(
                app_name, exc, f"application {app_name} not started: {describe_reason(exc)}"
            ) from exc
    loop = asyncio.get_running_loop()
    app = _App(app_name, kind, function, loop.create_future(), loop.create_future())
    ctl.apps[app_name] = app
    try:
        app.master = await rt.spawn(_master, (app, fn, tuple(args), ctl), trap_exits=True)
        return await asyncio.shield(app.started)
    except BaseException:
        if app.master is None and ctl.apps.get(app_name) is app:
            del ctl.apps[app_name]
        raise


async def stop(name: str, *, runtime: RuntimeBackend | None = None) -> None:
    """Stop an application (``application:stop/1``): its top process gets ``shutdown``.

    The node keeps running, whatever the type (as in OTP). Waits until the
    application's processes have ended (the top process has ``STOP_TIMEOUT``
    seconds before it is killed).

    Raises:
        ApplicationError: no application of that name runs (``not_started``).
    """
    rt = _pick(runtime, "stop")
    app = _controller(rt).apps.get(name)
    if app is None or app.master is None:
        raise ApplicationError(
            name, atom.ensure("not_started"), f"application {name} is not running"
        )
    app.stopping = True
    await rt.send(app.master, (_STOP,))
    await asyncio.shield(app.ended)


async def stop_all(runtime: RuntimeBackend) -> None:
    """Stop every application, the last started first (what a node does on its way down).

    After this no application's end stops the node any more.
    """
    ctl = _controller(runtime)
    ctl.stopping = True
    for name in reversed(list(ctl.apps)):
        app = ctl.apps.get(name)
        if app is not None and app.master is not None and runtime.is_alive(app.master):
            with contextlib.suppress(ApplicationError):  # it ended on its own meanwhile
                await stop(name, runtime=runtime)


def which_applications(runtime: RuntimeBackend | None = None) -> list[ApplicationInfo]:
    """The running applications, in start order (``application:which_applications/0``)."""
    rt = _pick(runtime, "which_applications")
    return [
        ApplicationInfo(app.name, app.type, app.function, app.top)
        for app in _controller(rt).apps.values()
        if app.started.done() and not app.ended.done()
    ]


# ------------------------------------------------------------ processes


async def _holder(fn: Callable[..., Any], args: tuple[Any, ...], master: Pid) -> None:
    """Call the start function; then hold (link to) the top process it returned."""
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
    except ProcessExit:
        raise  # exit_self(reason): the reason is the user's
    except Exception as exc:
        # One line says it (the application's end); the traceback is for debugging.
        logger.debug("application start function %r raised", fn, exc_info=True)
        raise ProcessExit(exc) from exc
    me = process.self()
    if type(result) is not Pid:
        await process.send(master, (_NO_PID, me, result))
        return
    top = result
    process.flag(TRAP_EXIT, True)
    await process.link(top)  # a no-op for a start_link-ed one; noproc if it is dead
    await process.send(master, (_STARTED, me, top))
    while True:
        msg = await process.receive()
        if not (type(msg) is tuple and len(msg) == 3 and msg[0] is EXIT):
            logger.debug("application holder %s: ignoring %r", me, msg)
            continue
        if msg[1] == top:
            raise ProcessExit(msg[2])
        # From the master (stop) or the runtime (shutdown): stop the top first.
        await _stop_top(top)
        raise ProcessExit(SHUTDOWN)


async def _stop_top(top: Pid) -> None:
    await process.exit(top, SHUTDOWN)

    def from_top(m: Any) -> bool:
        return type(m) is tuple and len(m) == 3 and m[0] is EXIT and m[1] == top

    try:
        await process.receive(STOP_TIMEOUT, from_top)
    except TimeoutError:
        logger.warning("top process %s did not stop within %.0f s; killing it", top, STOP_TIMEOUT)
        await process.exit(top, KILL)
        await process.receive(None, from_top)


async def _master(
    app: _App, fn: Callable[..., Any], args: tuple[Any, ...], ctl: _Controller
) -> None:
    """Start the holder, tell ``start`` when the application is up, act on its end."""
    rt = process.runtime()
    me = process.self()

    async def holder() -> None:
        await _holder(fn, args, me)

    # ``ps`` shows the holder as the function it runs (or ran): the user's.
    holder.__module__ = getattr(fn, "__module__", None) or holder.__module__
    holder.__qualname__ = getattr(fn, "__qualname__", None) or holder.__qualname__
    holder_pid = await process.spawn_link(holder)
    elapsed = 0.0
    unlinked_polls = 0
    reason: Any = NORMAL
    while True:
        timeout = _POLL if not app.started.done() else None
        try:
            msg = await process.receive(timeout)
        except TimeoutError:
            info = rt.process_info(holder_pid)
            if info is None:
                continue  # its EXIT is on the way
            # A start function in the middle of a start_link is linked to the
            # child it waits for; one that is not, for two polls in a row, is
            # taken to be a plain process function.
            unlinked_polls = unlinked_polls + 1 if set(info.links) <= {me} else 0
            elapsed += _POLL
            if unlinked_polls >= 2 or elapsed >= SETTLE_TIME:
                _started(app, holder_pid)
            continue
        if type(msg) is not tuple or not msg:
            continue
        tag = msg[0]
        if tag is _STARTED and msg[1] == holder_pid:
            app.top = msg[2]
            _started(app, msg[2])
        elif tag is _NO_PID and msg[1] == holder_pid and not app.started.done():
            logger.warning(
                "application %s: start function %s returned %r, not the pid of its top process "
                "(return e.g. the pid of gen_server.start_link); the application ends normally",
                app.name,
                app.function,
                msg[2],
            )
        elif tag is _STOP or (tag is EXIT and msg[1] != holder_pid):
            app.stopping = True
            await process.exit(holder_pid, SHUTDOWN)
        elif tag is EXIT:
            reason = msg[2]
            break
    _ended(app, reason, ctl, rt)


def _started(app: _App, top: Pid | None) -> None:
    if not app.started.done():
        app.top = top
        app.started.set_result(top)
        logger.info(
            "application %s started (top process %s)",
            app.name,
            top,
            extra={"event": "application_started", "pid": str(top)},
        )


def _ended(app: _App, reason: Any, ctl: _Controller, rt: RuntimeBackend) -> None:
    if ctl.apps.get(app.name) is app:
        del ctl.apps[app.name]
    app.ended.set_result(reason)
    if not app.started.done():
        # Ended before it counted as started: the start failed, unless the
        # start function simply returned no pid (then it ended normally).
        if reason is NORMAL:
            app.started.set_result(None)
        else:
            error = ApplicationError(
                app.name,
                reason,
                f"application {app.function} failed to start: {describe_reason(reason)}",
            )
            if isinstance(reason, BaseException):
                error.__cause__ = reason
            # ``start`` raises it: its caller decides (the node is not stopped here).
            app.started.set_exception(error)
            return
    if app.stopping or ctl.stopping:
        logger.info("application %s stopped", app.name, extra={"event": "application_stopped"})
        return
    _react(app, reason, ctl, rt)


def _react(app: _App, reason: Any, ctl: _Controller, rt: RuntimeBackend) -> None:
    """Act on an application's own end by its type, as OTP's application_controller."""
    normal = reason is NORMAL
    if normal:
        message = f"application {app.function} ended (normal)"
    else:
        if is_quiet(reason):
            # A supervisor that gave up (restart intensity) exits with shutdown.
            message = (
                f"application {app.function} ended with reason {describe_reason(reason)} (as a "
                "supervisor does after too many restarts)"
            )
        else:
            message = f"application {app.function} crashed: {describe_reason(reason)}"
    level = logging.INFO if normal else logging.ERROR
    # The fields a log pipeline filters on (otpylib_dist.logformat prints them).
    fields = {"event": "application_ended", "reason": _reason_field(reason)}
    if app.type is TEMPORARY or (app.type is TRANSIENT and normal):
        logger.log(level, "%s; the node runs on", message, extra=fields)
        return
    end = ApplicationEnd(app.name, app.type, app.function, reason, not normal, message)
    logger.log(level, "%s; stopping the node", message, extra=fields)
    ctl.stopping = True
    handler = ctl.on_node_stop
    if handler is not None:
        handler(end)
    else:
        asyncio.get_running_loop().create_task(rt.shutdown())


def _reason_field(reason: Any) -> str:
    """A reason as a log field: an atom's name, an exception's class, else the term."""
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return str(reason)
