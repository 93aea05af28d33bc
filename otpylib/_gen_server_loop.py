"""The gen_server process itself: ``init``, the acknowledgement, the receive loop.

:mod:`otpylib.gen_server` is the client side (start, call, cast, stop) and
the callback base class; this module is what runs inside the server
process. The loop is the hot path of every call, so it looks up its
callbacks once and dispatches on the message tag by identity (atoms), with
no log record and no allocation beyond the reply tuple per message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from otpylib import _child_spec, process
from otpylib._gen import CALL, CAST, From, describe_reason, is_quiet
from otpylib.runtime.atoms import EXIT, NORMAL, atom, normalize_reason
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import ProcessExit
from otpylib.runtime.function_ref import resolve_function

if TYPE_CHECKING:
    from otpylib.gen_server import GenServer

logger = logging.getLogger(__name__)

__all__ = [
    "NOREPLY",
    "REPLY",
    "STOP",
    "STOP_REQUEST",
    "BadReturnError",
    "serve",
]

#: ``(REPLY, value, state)``: answer the call with ``value``.
REPLY: Final = atom.ensure("reply")
#: ``(NOREPLY, state)``: go on without answering (now).
NOREPLY: Final = atom.ensure("noreply")
#: ``(STOP, reason, state)`` / ``(STOP, reason, value, state)``; also ``init``'s failure.
STOP: Final = atom.ensure("stop")
#: ``($gen_stop, reason)``: the request ``gen_server.stop`` sends.
STOP_REQUEST: Final = atom.ensure("$gen_stop")
#: Reason of a start whose name is taken: ``(ALREADY_STARTED, pid)``.
ALREADY_STARTED: Final = _child_spec.ALREADY_STARTED


class BadReturnError(TypeError):
    """A callback returned something that is not one of the tuples it may return.

    It becomes the server's exit reason (after ``terminate``), as OTP's
    ``{bad_return_value, Value}``; the message names the callback and value.
    """

    def __init__(self, callback: str, value: Any, expected: str) -> None:
        self.callback = callback
        self.value = value
        super().__init__(f"{callback} returned {value!r}; expected {expected}")


_CALL_ANSWERS = (
    "(REPLY, value, state), (NOREPLY, state), (STOP, reason, value, state) or (STOP, reason, state)"
)
_OTHER_ANSWERS = "(NOREPLY, state) or (STOP, reason, state)"


async def serve(
    cls: type[GenServer] | str,
    args: tuple[Any, ...],
    parent: Pid | None,
    starter: Pid,
    tag: Any,
) -> None:
    """The server process: create the instance, run ``init``, ack, then loop.

    Spawned with ``spawn_opt`` (linked to ``parent`` for ``start_link``,
    monitored by ``starter``, registered under its name), here or on another
    node; started by another node, ``cls`` is ``"module:Class"``.
    """
    rt = process.runtime()
    me = rt.self()
    try:
        if isinstance(cls, str):
            cls = _resolve_class(cls)
        # What `otpy-node ps` shows instead of this function's name.
        process.set_label(f"gen_server {cls.__module__}.{cls.__qualname__}")
        server = cls()
        state = await server.init(*args)
        if type(state) is tuple and len(state) == 2 and state[0] is STOP:
            raise ProcessExit(state[1])
    except asyncio.CancelledError:
        raise
    except BaseException:
        # A start that fails is reported to the starter by the exit reason,
        # not by an exit signal through the link (as OTP's init_ack).
        if parent is not None:
            await rt.unlink(parent)
        raise
    await rt.send(starter, (tag, me))
    await _loop(rt, me, server, state, parent)


async def _loop(
    rt: RuntimeBackend, me: Pid, server: GenServer, state: Any, parent: Pid | None
) -> None:
    """Receive and dispatch until a callback stops, the parent exits or a callback raises."""
    # The process API's receive (this loop runs in the server process, of
    # ``rt``): the runtime's own receive only adds a frame in front of it.
    receive = process.receive
    answer = rt.answer
    handle_call = server.handle_call
    handle_cast = server.handle_cast
    handle_info = server.handle_info
    node = rt.node_name
    msg: Any = None
    reason: Any = NORMAL
    stop_reply: tuple[From, Any] | None = None
    try:
        while True:
            msg = await receive()
            if type(msg) is tuple and msg:
                kind = msg[0]
                if kind is CALL and len(msg) == 5:
                    from_ = (msg[1], msg[2], msg[3])
                    result = await handle_call(msg[4], from_, state)
                    if type(result) is tuple and result:
                        head = result[0]
                        n = len(result)
                        if head is REPLY and n == 3:
                            await answer(from_, result[1])
                            state = result[2]
                            continue
                        if head is NOREPLY and n == 2:
                            state = result[1]
                            continue
                        if head is STOP and n == 4:
                            # The reply goes after terminate (as OTP): the
                            # caller must not act before the clean-up is done.
                            stop_reply = (from_, result[2])
                            reason, state = result[1], result[3]
                            break
                        if head is STOP and n == 3:
                            reason, state = result[1], result[2]
                            break
                    raise BadReturnError("handle_call", result, _CALL_ANSWERS)
                if kind is CAST and len(msg) == 2:
                    result = await handle_cast(msg[1], state)
                    callback = "handle_cast"
                elif kind is EXIT and len(msg) == 3 and msg[1] == parent:
                    reason = msg[2]
                    break
                elif kind is EXIT and len(msg) == 3 and _is_runtime(msg[1], node):
                    if parent is None or not rt.is_local(parent):
                        reason = msg[2]
                        break
                    continue  # the runtime's shutdown reaches us through our parent
                elif kind is STOP_REQUEST and len(msg) == 2:
                    reason = msg[1]
                    break
                else:
                    result = await handle_info(msg, state)
                    callback = "handle_info"
            else:
                result = await handle_info(msg, state)
                callback = "handle_info"
            if type(result) is tuple:
                if len(result) == 2 and result[0] is NOREPLY:
                    state = result[1]
                    continue
                if len(result) == 3 and result[0] is STOP:
                    reason, state = result[1], result[2]
                    break
            raise BadReturnError(callback, result, _OTHER_ANSWERS)
    except Exception as exc:
        # A callback raised: terminate with the exception as the reason,
        # then re-raise it so the runtime records it (with its traceback).
        crash = exc.exit_reason if isinstance(exc, ProcessExit) else exc
        if not is_quiet(crash):
            logger.error(
                "gen_server %r (%s) terminating: %s; last message: %r",
                me,
                type(server).__name__,
                describe_reason(crash),
                msg,
            )
        await server.terminate(crash, state)
        raise
    reason = normalize_reason(reason)
    if not is_quiet(reason):
        logger.error(
            "gen_server %r (%s) terminating with reason %s; last message: %r",
            me,
            type(server).__name__,
            describe_reason(reason),
            msg,
        )
    try:
        await server.terminate(reason, state)
    finally:
        if stop_reply is not None:
            await answer(*stop_reply)
    if reason is not NORMAL:
        raise ProcessExit(reason)


def _resolve_class(reference: str) -> type[GenServer]:
    """Import ``"module:Class"`` and check that it is a gen_server callback class."""
    from otpylib.gen_server import GenServer

    cls = resolve_function(reference)
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"{reference!r} is not a gen_server.GenServer subclass")
    return cls


def _is_runtime(sender: Any, node: str) -> bool:
    """Whether an ``EXIT`` comes from the runtime itself rather than a process.

    Pid id 0 of our node is the runtime (``runtime.shutdown()``, or
    ``runtime.exit`` called from main). It acts as the parent of a server
    that has none (started with ``start`` and trapping exits: the root of a
    supervision tree), which terminates. A server that has a parent ignores
    it, because its parent will stop it, in the order its supervisor
    defines; obeying the runtime directly would stop every server of a tree
    at once. A server whose parent is on another node obeys it too: that
    parent is not stopping, and this node is going away under the server
    (the parent then sees the exit, ``shutdown``, and its strategy decides).
    Differs from Erlang, where nothing stands above the processes.
    """
    return type(sender) is Pid and sender.id == 0 and sender.node == node
