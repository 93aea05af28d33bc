"""gen_server: a process that owns state and answers requests, as OTP's ``gen_server``.

Writing a server loop by hand means getting a dozen details right every
time: start only after initialization succeeded, answer each call exactly
once, never leave a caller hanging when the server dies, stop when the
parent stops, clean up on the way out. A gen_server does all of that; you
write only the callbacks, on a subclass of :class:`GenServer`::

    from otpylib import gen_server

    class Counter(gen_server.GenServer):
        async def init(self, start: int) -> int:
            return start

        async def handle_call(self, request, from_, count):
            if request == "get":
                return (gen_server.REPLY, count, count)
            return (gen_server.REPLY, count + 1, count + 1)

        async def handle_cast(self, request, count):
            return (gen_server.NOREPLY, 0)

    pid = await gen_server.start_link(Counter, 0, name="counter")
    await gen_server.call("counter", "incr")  # 1

Callbacks answer with tuples tagged by the atoms of this module:

==================================  ==========================================
``(REPLY, value, state)``           (calls) answer ``value``, go on with ``state``
``(NOREPLY, state)``                go on; a call is answered later by :func:`reply`
``(STOP, reason, value, state)``    (calls) answer, then terminate with ``reason``
``(STOP, reason, state)``           terminate with ``reason``
==================================  ==========================================

Theory of operation
-------------------
``start``/``start_link`` spawn the server and wait for an acknowledgement
that ``init`` returned: the pid is handed out only once the server can
serve. A failed ``init`` raises :class:`StartError` in the starter.

Messages: ``($gen_call, caller, reply_to, ref, request)`` (``from_`` is
``(caller, reply_to, ref)``), ``($gen_cast, request)``,
``($gen_stop, reason)``; anything else goes to ``handle_info``. The call
protocol is described in :mod:`otpylib._gen`. In short: the caller monitors
the server, so a dead, unknown or lost server fails the call with the
``DOWN``'s reason (``noproc``, ``noconnection``, its exit reason); and a
reply that comes after the caller gave up never reaches the caller's
mailbox, because it is addressed to an alias the caller deactivated.

A server is named by a pid (of any node), a registered name, or
``(name, node)``; ``start``/``start_link`` take ``node=`` to start the
server on another node (the class travels as ``"module:Class"``).

A server started with ``start_link`` traps exits, and an exit signal from
its parent (the starter) arrives as a message: the server calls
``terminate(reason, state)`` and exits with that reason, as an OTP server
does. ``EXIT`` messages from other linked processes go to ``handle_info``.
Differs from Erlang: an OTP server traps exits only if its ``init`` asks;
here ``start_link`` turns it on, so ``terminate`` always runs when the
parent (a supervisor) stops the server.

The runtime itself (pid id 0: ``runtime.shutdown()``, ``runtime.exit``
called from main) counts as the parent of a server that has none (started
with ``start`` and trapping exits, such as the root supervisor of a tree).
A server that has a parent ignores it and waits for its parent, so that
shutdown goes down a supervision tree in the order the supervisors define
instead of stopping every server at once; unless that parent is on another
node, which is not shutting down: then the server obeys its own node.

Across nodes: a parent's node lost is the parent's exit with reason
``noconnection`` (the server terminates with it). A reply that cannot be
encoded for a caller on another node raises ``EncodeError`` in the server
(the codec refuses it at the sender, and the callback's crash ends the
server), so a server with remote callers answers with sendable values.

``terminate`` runs when a callback asks to stop, on :func:`stop`, on the
parent's exit, and after a callback raised (then the server exits with the
exception as its reason). It cannot run when the server is killed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Final

from otpylib import _gen, process
from otpylib._gen import (
    CALL,
    CALLING_SELF,
    CAST,
    DEFAULT_CALL_TIMEOUT,
    CallError,
    From,
)
from otpylib._gen_server_loop import (
    ALREADY_STARTED,
    NOREPLY,
    REPLY,
    STOP,
    STOP_REQUEST,
    BadReturnError,
)
from otpylib._gen_server_start import StartError, start_server
from otpylib.runtime.atoms import DOWN, NORMAL, TIMEOUT, normalize_reason
from otpylib.runtime.backends.base import RuntimeBackend, Target
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import (
    NotInProcessError,
    UnknownNameError,
)

logger = logging.getLogger(__name__)

#: ``current_process.get``, bound once (see ``asyncio_backend.mailbox``).
_current_process: Final = current_process.get

__all__ = [
    "ALREADY_STARTED",
    "CALLING_SELF",
    "DEFAULT_CALL_TIMEOUT",
    "NOREPLY",
    "REPLY",
    "STOP",
    "BadReturnError",
    "CallError",
    "From",
    "GenServer",
    "StartError",
    "call",
    "cast",
    "reply",
    "start",
    "start_link",
    "stop",
]


class GenServer:
    """Base class of gen_server callback modules: override the callbacks you need.

    One instance is created per server process, in that process, before
    ``init`` runs. Keep the server's state in the ``state`` value the
    callbacks pass along (that is what ``code_change`` and debugging see);
    attributes on ``self`` are fine for fixed configuration.
    """

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        """Set the server up; return its initial state.

        Called with the extra arguments given to ``start``/``start_link``,
        which wait until it returns. Return ``(STOP, reason)`` or raise to
        make the start fail with that reason (:class:`StartError`).
        """
        return None

    async def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        """Answer a :func:`call`; return ``(REPLY, value, state)`` or another call answer.

        ``from_`` identifies the caller (``from_[0]`` is its pid); keep it to
        answer later with :func:`reply` after returning ``(NOREPLY, state)``.
        The default raises, as a server that gets calls must say how to answer.
        """
        raise NotImplementedError(
            f"{type(self).__name__} received the call {request!r} but does not define handle_call"
        )

    async def handle_cast(self, request: Any, state: Any) -> Any:
        """Handle a :func:`cast`; return ``(NOREPLY, state)`` or ``(STOP, reason, state)``.

        The default raises, as a server that gets casts must say what to do.
        """
        raise NotImplementedError(
            f"{type(self).__name__} received the cast {request!r} but does not define handle_cast"
        )

    async def handle_info(self, message: Any, state: Any) -> Any:
        """Handle any other message (``EXIT`` and ``DOWN`` included); return as ``handle_cast``.

        The default logs the message and ignores it, so a stray message can
        never crash a server that did not expect one.
        """
        logger.warning("%s ignored an unexpected message: %r", type(self).__name__, message)
        return (NOREPLY, state)

    async def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before the server exits with ``reason``; the return value is ignored."""

    async def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        """Convert ``state`` from version ``old_vsn`` of the module; return the new state.

        Kept for OTP parity and future release handling: nothing calls it yet.
        """
        return state


# ------------------------------------------------------------------ client API


async def start(
    cls: type[GenServer],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    node: str | None = None,
    runtime: RuntimeBackend | None = None,
) -> Pid:
    """Start a server that is not linked to the caller; return its pid once ``init`` is done.

    Use it for servers whose life is not tied to the caller's (and from
    ``main``, passing ``runtime``); under a supervisor use :func:`start_link`.

    Args:
        cls: the :class:`GenServer` subclass; ``cls()`` runs in the new process.
        *args: passed to ``init``.
        name: register the server under this name (before ``init`` runs).
        timeout: seconds ``init`` may take (None: no limit); past it the
            server is killed and the start fails with ``timeout``.
        node: start the server on this node (a distributed runtime, the
            node reachable); ``name`` is then registered there. The class
            goes as ``"module:Class"`` and must be importable on that node,
            and ``args`` must be sendable (see the codec).
        runtime: the runtime to start from; needed only outside any process.

    Differs from Erlang: OTP's ``gen_server:start`` has no node argument
    (one spawns there through ``rpc`` or ``proc_lib``); here it is one
    keyword, because a supervisor's child on another node needs exactly
    this. The server on the other node links itself to its parent and
    registers its name before ``init``, since a remote spawn carries one
    relation (the starter's monitor, which sees a failing ``init``).

    Raises:
        StartError: ``init`` failed, timed out, ``name`` is taken, or the
            node could not start the server (``.reason`` says which:
            ``noconnection`` for an unreachable node).
        TypeError: ``node`` is given and ``cls`` is not importable there
            (defined inside a function, or in a script run as a file).
    """
    _check_callback_class(cls)
    rt, inside = _gen.pick_runtime(runtime, "gen_server.start")
    if not inside:
        pid: Pid = await _gen.run_outside(
            rt, start_server, rt, cls, args, name, timeout, False, node
        )
        return pid
    return await start_server(rt, cls, args, name, timeout, False, node)


async def start_link(
    cls: type[GenServer],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    node: str | None = None,
) -> Pid:
    """Start a server linked to the calling process; return its pid once ``init`` is done.

    The server traps exits, so when the caller (its parent) exits, the
    server runs ``terminate`` and exits with the same reason. This is the
    start function supervisors expect: ``functools.partial(start_link, Cls, ...)``,
    with ``node=`` for a child on another node (if that node is lost, the
    supervisor sees the child exit with ``noconnection``, and the server,
    seeing its parent's link break the same way, terminates). Arguments as
    :func:`start`.

    Differs from Erlang: when ``init`` fails, the server unlinks before
    exiting, so the failure reaches the caller only as :class:`StartError`
    and never also as an exit signal that would kill a non-trapping caller.

    Raises:
        StartError: ``init`` failed, timed out, or ``name`` is taken.
        NotInProcessError: called from outside a process (use :func:`start`).
    """
    _check_callback_class(cls)
    if not process.in_process():
        raise NotInProcessError(
            "gen_server.start_link() links the server to the calling process, so it must "
            "be called from inside a process; from main, use "
            "'await gen_server.start(Cls, ..., runtime=runtime)'"
        )
    return await start_server(process.runtime(), cls, args, name, timeout, True, node)


def call(
    target: Target,
    request: Any,
    timeout: float | None = DEFAULT_CALL_TIMEOUT,
    *,
    runtime: RuntimeBackend | None = None,
) -> Awaitable[Any]:
    """Send ``request`` to a server and wait for its answer (Erlang's ``gen_server:call``).

    ``await`` the result. A plain ``def`` that returns the call's coroutine:
    one coroutine per call instead of two, on the hot path of every client.

    Args:
        target: a pid, a registered name, or ``(name, node)``.
        request: any value; the server's ``handle_call`` gets it.
        timeout: seconds to wait (default 5, as OTP); ``None`` waits as
            long as the server lives. A reply arriving after the timeout
            never reaches the caller's mailbox (it is addressed to an alias
            the caller deactivated, see :mod:`otpylib._gen`).
        runtime: needed only when calling from outside any process.

    Raises:
        CallError: ``.reason`` is ``noproc`` (no such server), ``timeout``,
            ``noconnection``, ``calling_self`` or the reason the server
            exited with while the call was pending.
    """
    proc = _current_process()
    if proc is not None and (runtime is None or runtime is proc.runtime):
        # From a process of its own runtime (the common case): what
        # pick_runtime would decide, without its two calls.
        return _gen.call(proc.runtime, target, CALL, request, timeout)
    rt, inside = _gen.pick_runtime(runtime, "gen_server.call")
    if not inside:
        return _gen.run_outside(rt, _gen.call, rt, target, CALL, request, timeout)
    return _gen.call(rt, target, CALL, request, timeout)


async def cast(
    target: Target,
    request: Any,
    *,
    runtime: RuntimeBackend | None = None,
) -> None:
    """Send ``request`` to a server's ``handle_cast`` without waiting (``gen_server:cast``).

    Like OTP's cast it never fails: a dead server or an unregistered name
    just means the request is dropped. Use :func:`call` to know it arrived.
    """
    rt, _ = _gen.pick_runtime(runtime, "gen_server.cast")
    with contextlib.suppress(UnknownNameError):  # nobody holds the name: fire and forget
        await rt.send(target, (CAST, request))


async def reply(from_: From, value: Any, *, runtime: RuntimeBackend | None = None) -> None:
    """Answer the call ``from_`` with ``value`` (``gen_server:reply``).

    For a server that returned ``(NOREPLY, state)`` from ``handle_call`` and
    answers later, or from another process it handed ``from_`` to. Answering
    a caller that gave up (timed out, or died) is harmless: nothing arrives.
    """
    rt, _ = _gen.pick_runtime(runtime, "gen_server.reply")
    await _gen.send_reply(rt, from_, value)


async def stop(
    target: Target,
    reason: Any = NORMAL,
    timeout: float | None = None,
    *,
    runtime: RuntimeBackend | None = None,
) -> None:
    """Make a server terminate with ``reason`` and wait until it is gone (``gen_server:stop``).

    The server runs ``terminate(reason, state)`` and exits with ``reason``.

    Raises:
        CallError: ``.reason`` is ``noproc`` (no such server), ``timeout``
            (it did not end within ``timeout`` seconds; it is left running),
            or the different reason it exited with (``terminate`` raised).
    """
    rt, inside = _gen.pick_runtime(runtime, "gen_server.stop")
    if not inside:
        await _gen.run_outside(rt, _stop, rt, target, reason, timeout)
        return
    await _stop(rt, target, reason, timeout)


async def _stop(rt: RuntimeBackend, target: Target, reason: Any, timeout: float | None) -> None:
    reason = normalize_reason(reason)
    dest = _gen.server_of(rt, target, "stop")
    mref = await rt.monitor(dest)
    with contextlib.suppress(UnknownNameError):  # unreachable (name, node): see the DOWN
        await rt.send(dest, (STOP_REQUEST, reason))

    def is_down(m: Any) -> bool:
        return type(m) is tuple and len(m) == 4 and m[0] is DOWN and m[1] == mref

    try:
        msg = await rt.receive(timeout, is_down)
    except TimeoutError:
        await rt.demonitor(mref, flush=True)
        raise CallError(
            TIMEOUT,
            target,
            f"stop of {target!r} timed out after {timeout} s (timeout)",
            operation="stop",
        ) from None
    exited = msg[3]
    if exited is reason or exited == reason:
        return
    raise CallError(exited, target, operation="stop")


# ------------------------------------------------------------------- starting


def _check_callback_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(
            f"gen_server needs a subclass of gen_server.GenServer, got {cls!r}; "
            "define 'class MyServer(gen_server.GenServer): ...' and pass MyServer"
        )
