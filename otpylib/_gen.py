"""The request/reply machinery the behaviours share (the role of OTP's ``gen`` module).

A *call* is a message that expects exactly one answer. Doing it right takes
more than a send and a receive, and every behaviour needs the same steps, so
they live here once, on the runtime's ``request``/``answer`` pair, which
does the mechanics (a monitor, an alias, a selective receive) in one
coroutine instead of one runtime method per step:

1. The caller monitors the server before sending, so a server that is dead,
   unknown, dies while working or sits on a lost node produces a ``DOWN``
   whose reason the caller raises (``noproc``, the server's exit reason,
   ``noconnection``). A call never hangs on a dead server.
2. The request is ``(CALL, caller_pid, reply_to, ref, request)`` and
   ``ref`` is the monitor's ref; the server hands ``from_ = (caller_pid,
   reply_to, ref)`` to its callback. The
   answer is ``(ref, value)`` or ``(ref, value, MONITOR_ENDED)`` sent to
   ``reply_to``; the caller takes it by selective receive on ``ref``, so it
   can arrive among any other messages.
3. After the answer, the monitor ends with no ``DOWN`` of the server ever
   left behind in the caller's mailbox. The server ends its half when it
   answers (``rt.answer``, from the process the caller monitors) and says
   so with ``MONITOR_ENDED``; the caller then ends its own half locally.
   An answer without the mark (sent by another process the server handed
   ``from_`` to) makes the caller demonitor with ``flush``.

Differs from Erlang: OTP's caller always demonitors, which costs a
``DEMONITOR`` signal to the server's node per remote call; here that signal
is left out when the server released its half itself (see
``RuntimeBackend.answer``). What the caller can observe is the same.

Late replies, and how none can reach the caller
-----------------------------------------------
A call that times out leaves a server that may still answer; so may a
process the server handed ``from_`` to, after the server died. Erlang/OTP
24+ sends the answer to a process *alias* that the caller deactivates when
it stops waiting, so the runtime drops the late answer. We do the same:
``reply_to`` is an alias (``rt.alias()``), an extra pid that reaches the
caller's mailbox only until the call ends (answer, ``DOWN`` or timeout),
when ``rt.request`` deactivates it. A late answer, from this node or another, is
then addressed to an inactive alias and dropped like a message to a dead
pid. The cost is an id, a dict insert and a dict delete per call
(``python -m bench.gen_server`` measures it).

``from_[0]`` is always the real caller, so a server may monitor or link to
its client, as OTP servers do; only ``reply_to`` differs. Code outside any
process (``main``) has no mailbox: it calls through a short-lived helper
process (:func:`run_outside`).

Across nodes nothing changes: the monitor is a remote monitor (a lost
connection delivers its ``DOWN`` with ``noconnection``; an unknown name or
dead pid there, ``noproc``), the alias is a pid of the caller's node, and the
answer and the ``DOWN`` travel on the one connection between the two nodes,
so the answer is never overtaken by the ``DOWN`` that follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias

from otpylib import process
from otpylib.runtime.atoms import (
    KILL,
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    Atom,
    atom,
)
from otpylib.runtime.backends.base import MONITOR_ENDED, RuntimeBackend, Target
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import NotInProcessError, ProcessExit

logger = logging.getLogger(__name__)

__all__ = [
    "CALL",
    "CALLING_SELF",
    "CAST",
    "DEFAULT_CALL_TIMEOUT",
    "MONITOR_ENDED",
    "CallError",
    "From",
    "call",
    "describe_reason",
    "flush",
    "is_quiet",
    "pick_runtime",
    "resolve",
    "run_outside",
    "send_reply",
    "server_of",
]

#: Tag of a call request: ``(CALL, caller, reply_to, ref, request)``.
#: Differs from Erlang, whose call message is ``{'$gen_call', From, Request}``:
#: one flat tuple is one cached shape for the codec where the nested form
#: costs a nested-shape computation per remote call (~8k instructions).
CALL: Final = atom.ensure("$gen_call")
#: Tag of a cast: ``(CAST, request)``.
CAST: Final = atom.ensure("$gen_cast")
#: Reason of a call a process makes to itself (it would wait for itself forever).
CALLING_SELF: Final = atom.ensure("calling_self")

#: OTP's default call timeout (5000 ms): long enough for any healthy server,
#: short enough that a stuck one is reported rather than hanging its clients.
DEFAULT_CALL_TIMEOUT: Final = 5.0

#: Who made a call: ``(caller_pid, reply_to_pid, ref)``. Opaque apart from
#: ``from_[0]``, the calling process; hand it to ``gen_server.reply``.
#: Differs from Erlang, whose ``From`` is ``{Pid, Tag}``: the call message
#: carries its three parts flat (see :data:`CALL`).
From: TypeAlias = tuple[Pid, Pid, Ref]


class CallError(ProcessExit):
    """A call (or stop) did not get its answer; ``.reason`` says why.

    Reasons: ``noproc`` (no such process, or it was already dead),
    ``timeout``, ``noconnection`` (its node was lost), ``calling_self``, or
    whatever the server exited with while handling the call (an exception
    object for a crash). It is a :class:`ProcessExit`: a process that does
    not catch it crashes (logged) with the exit reason
    ``(reason, (call, target))``, as an Erlang process exits with
    ``{Reason, {gen_server, call, ...}}`` when its call fails; never with the
    bare reason, so a server's clean ``normal`` exit cannot make its client
    end ``normal`` (and a transient client is restarted).

    Attributes:
        reason: the reason, as above.
        target: the pid or name that was called.
    """

    crash = True

    def __init__(
        self, reason: Any, target: Any, message: str | None = None, *, operation: str = "call"
    ) -> None:
        self.target = target
        self.operation = atom.ensure(operation)
        super().__init__(reason, message or _call_message(reason, target))

    @property
    def exit_reason(self) -> Any:
        """``(reason, (operation, target))``: the reason and what failed."""
        return (self.reason, (self.operation, self.target))


def describe_reason(reason: Any) -> str:
    """A short human text for an exit reason (an exception shows its type)."""
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return repr(reason)


def is_quiet(reason: Any) -> bool:
    """Whether an exit reason is not a failure: normal, shutdown or ``(shutdown, _)``.

    Such exits are not logged, and a transient child is not restarted after
    one (OTP draws the same line).
    """
    return (
        reason is NORMAL
        or reason is SHUTDOWN
        or (type(reason) is tuple and len(reason) == 2 and reason[0] is SHUTDOWN)
    )


def _call_message(reason: Any, target: Any) -> str:
    if reason is NOPROC:
        return (
            f"call to {target!r} failed: no such process (noproc); check that the server "
            "is running and the name is spelled right"
        )
    if reason is NOCONNECTION:
        return f"call to {target!r} failed: the connection to its node was lost (noconnection)"
    if reason is CALLING_SELF:
        return (
            f"call to {target!r} failed: it is the calling process itself (calling_self); "
            "a server cannot wait for its own answer"
        )
    if reason is TIMEOUT:
        return f"call to {target!r} timed out (timeout)"
    return f"call to {target!r} failed: the server exited with reason {describe_reason(reason)}"


def pick_runtime(runtime: RuntimeBackend | None, what: str) -> tuple[RuntimeBackend, bool]:
    """The runtime to use and whether the caller is one of its processes.

    Inside a process, the process's own runtime is the default. Outside any
    process the runtime must be named, since nothing else identifies it.

    Raises:
        NotInProcessError: outside any process and ``runtime`` is None.
    """
    if process.in_process():
        own = process.runtime()
        if runtime is None or runtime is own:
            return own, True
        return runtime, False
    if runtime is None:
        raise NotInProcessError(
            f"{what}() was called outside any process, so it cannot tell which runtime "
            f"to use; pass it: 'await {what}(..., runtime=runtime)'"
        )
    return runtime, False


def resolve(rt: RuntimeBackend, target: Target) -> Pid | tuple[str, str] | None:
    """Turn a target into what to monitor and send to; ``None`` means noproc.

    A local name is looked up once, so the monitor and the send reach the
    same process even if the name moves meanwhile. ``(name, node)`` for
    another node stays as it is: that node resolves it.
    """
    if type(target) is Pid:
        return target
    if isinstance(target, (str, Atom)):
        return rt.whereis(target)
    if isinstance(target, tuple) and len(target) == 2:
        name, node = target
        if rt.is_local(node):
            return rt.whereis(name)
        return (str(name.name if isinstance(name, Atom) else name), node)
    raise TypeError(
        f"a server is named by a Pid, a registered name or (name, node); "
        f"got {type(target).__name__}: {target!r}"
    )


async def flush(rt: RuntimeBackend, match: Callable[[Any], bool]) -> Any:
    """Take the first queued message ``match`` accepts without waiting; ``None`` if none."""
    try:
        return await rt.receive(0, match)
    except TimeoutError:
        return None


async def send_reply(rt: RuntimeBackend, from_: From, value: Any) -> None:
    """Send the answer ``value`` for the call ``from_`` (dropped if nobody waits).

    From the server itself it also ends the caller's monitor (``rt.answer``).
    """
    await rt.answer(from_, value)


async def call(
    rt: RuntimeBackend,
    target: Target,
    message_tag: Any,
    request: Any,
    timeout: float | None,
) -> Any:
    """Make a call from the calling process of ``rt``; see the module docstring.

    ``message_tag`` is the first element of the request message (``CALL``
    for gen_server). Raises :class:`CallError`.
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None (wait forever) or >= 0 seconds, got {timeout}")
    if type(target) is Pid and target != rt.self():
        dest: Pid | tuple[str, str] = target  # what server_of would find, without its checks
    else:
        dest = server_of(rt, target)
    try:
        answered, value = await rt.request(dest, message_tag, request, timeout)
    except TimeoutError:
        raise CallError(
            TIMEOUT,
            target,
            f"call to {target!r} timed out after {timeout} s (timeout); the server may be "
            "busy or stuck: pass a larger timeout, or timeout=None to wait forever",
        ) from None
    if answered:
        return value
    raise CallError(value, target)


def server_of(rt: RuntimeBackend, target: Target, operation: str = "call") -> Pid | tuple[str, str]:
    """What to monitor and send to for a call or stop of ``target``.

    Raises :class:`CallError` with ``noproc`` for a local name nobody holds
    and ``calling_self`` for the caller itself. A ``(name, node)`` of
    another node is returned as it is: if that node cannot be reached, the
    monitor queues the DOWN that says why (so a send that then raises
    ``UnknownNameError`` is not an error of its own).
    """
    dest = resolve(rt, target)
    if dest is None:
        raise CallError(NOPROC, target, operation=operation)
    if dest == rt.self():
        raise CallError(CALLING_SELF, target, operation=operation)
    return dest


async def run_outside(rt: RuntimeBackend, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``await fn(*args)`` in a short-lived helper process of ``rt``; return its result.

    This is how code outside any process (``main``) calls, starts and stops
    servers: those need a mailbox to receive answers and ``DOWN`` messages,
    and a helper process has one. Exceptions raised by ``fn`` propagate. If
    the awaiting task is cancelled, the helper is killed.
    """
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pid = await rt.spawn(_helper, (fut, fn, args))
    try:
        # Once the helper has taken its first step it settles ``fut`` however
        # it ends. Killed before that step (a shutdown racing the call), it
        # never runs a line, and code outside any process cannot monitor it.
        # But its first step was scheduled when it was spawned, before this
        # task's wake-up below, and the loop runs ready callbacks in order: so
        # after one yield it has either started or is gone. No polling.
        await asyncio.sleep(0)
        if not fut.done() and not rt.is_alive(pid):
            raise ProcessExit(
                KILLED,
                "the helper process doing this for code outside any process was "
                "killed before it started (is the runtime shutting down?)",
            )
        return await fut
    except asyncio.CancelledError:
        if rt.is_alive(pid):
            await rt.exit(pid, KILL)
        raise


async def _helper(
    fut: asyncio.Future[Any], fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> None:
    """The body of a :func:`run_outside` helper: run ``fn``, settle ``fut``, end quietly."""
    try:
        result = await fn(*args)
    except asyncio.CancelledError:
        if not fut.done():
            fut.set_exception(
                ProcessExit(
                    KILLED,
                    "the helper process doing this for code outside any process was "
                    "killed (is the runtime shutting down?)",
                )
            )
        raise
    except Exception as exc:
        if not fut.done():
            fut.set_exception(exc)
    else:
        if not fut.done():
            fut.set_result(result)
