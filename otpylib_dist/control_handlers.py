"""The incoming half of distribution: what a node does with each control message.

One handler per control message type, chosen by a table (not an if-chain).
Handlers never await: a frame read from a peer is acted on in the same loop
step, which keeps the per-connection order of signals (a message sent before
an exit signal is delivered before it). A peer naming a dead process gets
the answer Erlang gives: a link answers with the exit signal ``noproc``, a
monitor with a DOWN ``noproc``, a message is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otpylib.runtime.atoms import NOPROC
from otpylib.runtime.backends.asyncio_backend import resolve_function
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_reason, encode_term

if TYPE_CHECKING:
    from otpylib_dist.connection import Connection
    from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = ["dispatch"]

_Handler = Callable[["DistributedBackend", "Connection", Any], None]


def _link(node: DistributedBackend, conn: Connection, msg: control.Link) -> None:
    if not node._remote_link(msg.to, msg.from_):
        conn.send_control(control.Exit(msg.to, msg.from_, encode_reason(NOPROC)))


def _unlink(node: DistributedBackend, conn: Connection, msg: control.Unlink) -> None:
    node._remote_unlink(msg.to, msg.from_)


def _exit(node: DistributedBackend, conn: Connection, msg: control.Exit) -> None:
    node._remote_link_exit(msg.to, msg.from_, decode_term(msg.reason))


def _exit2(node: DistributedBackend, conn: Connection, msg: control.Exit2) -> None:
    node._remote_exit(msg.to, msg.from_, decode_term(msg.reason))


def _monitor(node: DistributedBackend, conn: Connection, msg: control.Monitor) -> None:
    if node._remote_monitor(msg.target, msg.owner, msg.ref) is None:
        conn.send_control(
            control.MonitorExit(msg.target, msg.owner, msg.ref, encode_reason(NOPROC))
        )


def _demonitor(node: DistributedBackend, conn: Connection, msg: control.Demonitor) -> None:
    node._remote_demonitor(msg.target, msg.ref)


def _monitor_exit(node: DistributedBackend, conn: Connection, msg: control.MonitorExit) -> None:
    node._remote_down(msg.owner, msg.ref, decode_term(msg.reason))


def _spawn_request(node: DistributedBackend, conn: Connection, msg: control.SpawnRequest) -> None:
    try:
        fn = resolve_function(msg.function)
        args, kwargs = decode_term(msg.args)
        proc = node._spawn(fn, args, kwargs, msg.name, msg.trap_exits)
    except Exception as exc:
        logger.warning(
            "refused remote spawn of %r from %s: %s",
            msg.function,
            conn.peer_name,
            exc,
            extra={"event": "spawn_refused", "peer": conn.peer_name},
        )
        conn.send_control(
            control.SpawnReply(
                ref=msg.ref, ok=False, result=encode_reason(f"{type(exc).__name__}: {exc}")
            )
        )
        return
    if msg.link:
        node._remote_link(proc.pid, msg.sender)
    if msg.monitor:
        node._remote_monitor(proc.pid, msg.sender, msg.ref)
    conn.send_control(control.SpawnReply(ref=msg.ref, ok=True, result=encode_term(proc.pid)))


def _spawn_reply(node: DistributedBackend, conn: Connection, msg: control.SpawnReply) -> None:
    node._answer_call(msg.ref, msg.ok, decode_term(msg.result))


def _node_rpc(node: DistributedBackend, conn: Connection, msg: control.NodeRpc) -> None:
    from otpylib_dist.node_rpc import answer

    ok, result = answer(node, msg.op, decode_term(msg.arg))
    conn.send_control(control.NodeRpcReply(ref=msg.ref, ok=ok, result=encode_reason(result)))


def _node_rpc_reply(node: DistributedBackend, conn: Connection, msg: control.NodeRpcReply) -> None:
    node._answer_call(msg.ref, msg.ok, decode_term(msg.result))


# Send and RegSend, nearly all the traffic, are handled inline by
# Connection._steady_data (one call less per message).
_HANDLERS: dict[type, _Handler] = {
    control.Link: _link,
    control.Unlink: _unlink,
    control.Exit: _exit,
    control.Exit2: _exit2,
    control.Monitor: _monitor,
    control.Demonitor: _demonitor,
    control.MonitorExit: _monitor_exit,
    control.SpawnRequest: _spawn_request,
    control.SpawnReply: _spawn_reply,
    control.NodeRpc: _node_rpc,
    control.NodeRpcReply: _node_rpc_reply,
}


def dispatch(node: DistributedBackend, conn: Connection, msg: Any) -> None:
    """Run the handler for ``msg``'s type."""
    _HANDLERS[type(msg)](node, conn, msg)
