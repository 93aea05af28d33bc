"""Starting a gen_server, here or on another node, and waiting for its ``init``.

Kept apart from :mod:`otpylib.gen_server` (which re-exports
:class:`StartError`) so that module holds the client API and callbacks.
The starter spawns :func:`otpylib._gen_server_loop.serve` with a monitor,
and waits for the acknowledgement that ``init`` returned or for the
``DOWN`` that says why it did not.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from otpylib import _gen
from otpylib._gen import describe_reason
from otpylib._gen_server_loop import ALREADY_STARTED, serve
from otpylib.runtime.atoms import DOWN, EXIT, KILL, TIMEOUT
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NameAlreadyRegistered, OtpError
from otpylib.runtime.function_ref import reference_of

if TYPE_CHECKING:
    from otpylib.gen_server import GenServer

logger = logging.getLogger(__name__)

__all__ = ["StartError", "start_server"]


class StartError(OtpError):
    """A server could not be started; ``.reason`` says why, like Erlang's ``{error, Reason}``.

    Reasons: what ``init`` stopped with (``(STOP, reason)``), the exception
    ``init`` raised (also chained as ``__cause__``), ``timeout`` (``init``
    took longer than the start timeout; the server was killed) or
    ``(ALREADY_STARTED, pid)`` when the name is taken (then ``.pid`` is the
    holder). Started on another node, also ``noconnection`` (the node could
    not be reached) or the reason that node gave for refusing the spawn; an
    exception ``init`` raised there arrives as its type name and message.
    """

    def __init__(self, reason: Any, message: str, pid: Pid | None = None) -> None:
        self.reason = reason
        self.pid = pid
        super().__init__(message)


async def start_server(
    rt: RuntimeBackend,
    cls: type[GenServer],
    args: tuple[Any, ...],
    name: str | None,
    timeout: float | None,
    link: bool,
    node: str | None = None,
) -> Pid:
    """Spawn the server from the calling process and wait for its ``init`` to end.

    ``link`` links it to the caller (``start_link``); ``node`` starts it on
    another node. Raises :class:`StartError`.
    """
    me = rt.self()
    tag = rt.make_ref()
    remote = node is not None and not rt.is_local(node)
    # One path, here or on another node: spawn_opt links (start_link) and
    # monitors atomically with the spawn, so a failing init is seen with its
    # reason, and registers the name before the server runs. Another node
    # imports the class by its reference.
    server_class: type[GenServer] | str = reference_of(cls, "start") if remote else cls
    try:
        pid, mref = await rt.spawn_opt(
            serve,
            (server_class, args, me if link else None, me, tag),
            name=name,
            trap_exits=link,
            link=link,
            monitor=True,
            node=node,
        )
    except NameAlreadyRegistered as exc:
        holder = exc.holder
        where = " there" if remote else ""
        raise StartError(
            (ALREADY_STARTED, holder),
            f"{cls.__name__} not started{' on ' + str(node) if remote else ''}: the name "
            f"{name!r} is already registered{where} to {holder!r}; stop that process or "
            "choose another name",
            holder,
        ) from None
    except OtpError as exc:  # the node is unreachable, or refused the spawn
        raise StartError(exc.reason, f"{cls.__name__} not started on {node}: {exc}") from exc
    assert mref is not None

    def is_down(m: Any) -> bool:
        return type(m) is tuple and len(m) == 4 and m[0] is DOWN and m[1] == mref

    def match(m: Any) -> bool:
        return (type(m) is tuple and len(m) == 2 and m[0] == tag) or is_down(m)

    try:
        msg = await rt.receive(timeout, match)
    except TimeoutError:
        if link:
            await rt.unlink(pid)
        await rt.exit(pid, KILL)
        await rt.receive(None, is_down)  # once it is gone, its name is free again
        await _flush_ack(rt, tag)
        await _flush_exit(rt, pid)
        raise StartError(
            TIMEOUT, f"{cls.__name__} not started: init did not return within {timeout} s"
        ) from None
    if msg[0] is not DOWN:
        await rt.demonitor(mref, flush=True)
        return pid
    reason = msg[3]
    await _flush_exit(rt, pid)
    if isinstance(reason, BaseException):
        raise StartError(
            reason, f"{cls.__name__} not started: init raised {describe_reason(reason)}"
        ) from reason
    raise StartError(reason, f"{cls.__name__} not started: init stopped with reason {reason!r}")


async def _flush_ack(rt: RuntimeBackend, tag: Any) -> None:
    """Drop an acknowledgement that arrived just as the start timed out."""
    await _gen.flush(rt, lambda m: type(m) is tuple and len(m) == 2 and m[0] == tag)


async def _flush_exit(rt: RuntimeBackend, pid: Pid) -> None:
    """Drop an ``EXIT`` from ``pid`` already queued for a trapping caller."""
    await _gen.flush(
        rt, lambda m: type(m) is tuple and len(m) == 3 and m[0] is EXIT and m[1] == pid
    )
