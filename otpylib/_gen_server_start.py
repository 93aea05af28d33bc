"""Starting a gen_server, here or on another node, and waiting for its ``init``.

Kept apart from :mod:`otpylib.gen_server` (which re-exports
:class:`StartError`) so that module holds the client API and callbacks.
The starter spawns :func:`otpylib._gen_server_loop.serve` with a monitor,
and waits for the acknowledgement that ``init`` returned or for the
``DOWN`` that says why it did not.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from otpylib import _gen
from otpylib._gen import describe_reason
from otpylib._gen_server_loop import ALREADY_STARTED, SERVE_REFERENCE, serve
from otpylib.runtime.atoms import DOWN, EXIT, KILL, TIMEOUT
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NameAlreadyRegistered, OtpError

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
    parent = me if link else None
    try:
        if node is not None and node != rt.node_name:
            # Monitored atomically with the spawn, so a failing init is seen
            # with its reason; the server links to its parent itself, first
            # thing, as spawn takes one relation. The name is registered by
            # the server too, to report a clash as OTP does.
            pid, mref = await rt.spawn_monitor(
                SERVE_REFERENCE,
                (_class_reference(cls), args, parent, me, tag, name, link),
                trap_exits=link,
                node=node,
            )
        elif link:
            pid = await rt.spawn_link(serve, (cls, args, me, me, tag), name=name, trap_exits=True)
            mref = await rt.monitor(pid)
        else:
            pid, mref = await rt.spawn_monitor(serve, (cls, args, None, me, tag), name=name)
    except NameAlreadyRegistered:
        holder = rt.whereis(name) if name is not None else None
        raise StartError(
            (ALREADY_STARTED, holder),
            f"{cls.__name__} not started: the name {name!r} is already registered to "
            f"{holder!r}; stop that process or choose another name",
            holder,
        ) from None
    except OtpError as exc:  # the node is unreachable, or refused the spawn
        raise StartError(exc.reason, f"{cls.__name__} not started on {node}: {exc}") from exc

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
    if type(reason) is tuple and len(reason) == 2 and reason[0] is ALREADY_STARTED:
        raise StartError(
            reason,
            f"{cls.__name__} not started on {node}: the name {name!r} is already registered "
            f"there to {reason[1]!r}; stop that process or choose another name",
            reason[1],
        )
    raise StartError(reason, f"{cls.__name__} not started: init stopped with reason {reason!r}")


def _class_reference(cls: type[GenServer]) -> str:
    """``"module:Class"`` naming ``cls`` for another node, which imports it.

    A class defined in a script run as ``python -m package.module`` lives in
    ``__main__`` here; the other node knows it by its real module name.
    """
    module = cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    qualname = cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        raise TypeError(
            f"cannot start {qualname} on another node: the class must be defined at module "
            "level in a module that node can import (run scripts with 'python -m package.module')"
        )
    return f"{module}:{qualname}"


async def _flush_ack(rt: RuntimeBackend, tag: Any) -> None:
    """Drop an acknowledgement that arrived just as the start timed out."""
    await _gen.flush(rt, lambda m: type(m) is tuple and len(m) == 2 and m[0] == tag)


async def _flush_exit(rt: RuntimeBackend, pid: Pid) -> None:
    """Drop an ``EXIT`` from ``pid`` already queued for a trapping caller."""
    await _gen.flush(
        rt, lambda m: type(m) is tuple and len(m) == 3 and m[0] is EXIT and m[1] == pid
    )
