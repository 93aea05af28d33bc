"""The outgoing half of distribution: local operations on pids of other nodes.

``AsyncIOBackend`` hands every send/link/monitor/exit whose target lives on
another node to its ``RemoteRouter``; this is that router. Each method turns
the operation into one control message on the connection to the target's
node, setting the connection up first when needed (auto-connect, as Erlang
does on first use).

Rules kept here:

- A payload is encoded *before* any connection work, so an unencodable
  message raises at the sender even when the peer is unreachable.
- A pid of an earlier incarnation of a node (same name, other creation) is
  dead: sends are dropped, links and monitors answer ``noproc`` at once.
- When the node cannot be reached, a link fires ``noconnection`` and a
  monitor delivers ``(DOWN, ref, pid, noconnection)``; a plain send is
  dropped (as Erlang drops it).
- Methods that are plain ``def`` only enqueue on an existing connection:
  without one, the link or monitor they would update died with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from otpylib.runtime.atoms import NOCONNECTION, NOPROC
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import encode_reason, encode_term

if TYPE_CHECKING:
    from otpylib_dist.connection import Connection
    from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = ["NodeRouter"]


class NodeRouter:
    """Routes operations on remote pids to the right connection (a ``RemoteRouter``)."""

    __slots__ = ("_node",)

    def __init__(self, node: DistributedBackend) -> None:
        self._node = node

    async def _connection(self, node: str) -> Connection | None:
        conn = self._node._connections.get(node)
        if conn is not None:
            return conn
        if await self._node.connect(node):
            return self._node._connections.get(node)
        return None

    async def send(self, sender: Pid | None, to: Pid, message: Any) -> None:
        """Send to a remote pid; dropped when the node is unreachable or the pid stale."""
        conn = self._node._connections.get(to.node)
        if conn is None or conn.peer_creation != to.creation:
            encode_term(message)  # an unencodable message raises here, reachable or not
            if conn is None:
                conn = await self._connection(to.node)
            if conn is None or conn.peer_creation != to.creation:
                return
        if conn.send_term(to, message):
            await conn.drain()

    async def send_registered(self, sender: Pid | None, name: str, node: str, message: Any) -> None:
        """Send to ``name`` on ``node``; dropped when nobody there holds the name."""
        conn = self._node._connections.get(node)
        if conn is None:
            encode_term(message)
            conn = await self._connection(node)
            if conn is None:
                return
        if conn.reg_send_term(sender, name, message):
            await conn.drain()

    async def link(self, local: Pid, remote: Pid) -> None:
        """Ask the peer to link; unreachable node: noconnection, stale pid: noproc."""
        conn = await self._connection(remote.node)
        if conn is None:
            self._node._remote_link_exit(local, remote, NOCONNECTION)
        elif conn.peer_creation != remote.creation:
            self._node._remote_link_exit(local, remote, NOPROC)
        else:
            conn.send_control(control.Link(local, remote))

    def unlink(self, local: Pid, remote: Pid) -> None:
        """Tell the peer the link is gone."""
        conn = self._node._connections.get(remote.node)
        if conn is not None:
            conn.send_control(control.Unlink(local, remote))

    async def monitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Ask the peer to monitor ``target`` for ``owner``."""
        wire_target, node = _wire_target(target)
        conn = await self._connection(node)
        if conn is None:
            self._node._remote_down(owner, ref, NOCONNECTION)
        elif type(target) is Pid and conn.peer_creation != target.creation:
            self._node._remote_down(owner, ref, NOPROC)
        else:
            conn.send_control(control.Monitor(owner, wire_target, ref))

    def demonitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Tell the peer a monitor is gone."""
        wire_target, node = _wire_target(target)
        conn = self._node._connections.get(node)
        if conn is not None:
            conn.send_control(control.Demonitor(owner, wire_target, ref))

    async def exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Deliver an ``exit/2`` signal to a remote pid (dropped if unreachable)."""
        conn = await self._connection(target.node)
        if conn is not None and conn.peer_creation == target.creation:
            conn.send_control(control.Exit2(sender, target, encode_reason(reason)))

    def link_exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Our linked process ``sender`` ended: tell the remote ``target``."""
        conn = self._node._connections.get(target.node)
        if conn is not None:
            conn.send_control(control.Exit(sender, target, encode_reason(reason)))

    def monitor_down(
        self, target: Pid | tuple[str, str], owner: Pid, ref: Ref, reason: Any
    ) -> None:
        """A process a remote ``owner`` monitored ended: send its DOWN."""
        conn = self._node._connections.get(owner.node)
        if conn is not None:
            wire_target = _wire_target(target)[0]
            conn.send_control(control.MonitorExit(wire_target, owner, ref, encode_reason(reason)))

    def is_alive(self, pid: Pid) -> bool | None:
        """Not known dead: its node is connected and has not restarted since.

        Differs from Erlang: ``is_process_alive/1`` refuses remote pids; we
        answer from what this node knows without a round trip.
        """
        conn = self._node._connections.get(pid.node)
        return conn is not None and conn.peer_creation == pid.creation


def _wire_target(target: Pid | tuple[str, str]) -> tuple[Pid | str, str]:
    """A monitor target as sent (a pid, or a registered name) and its node."""
    if isinstance(target, Pid):
        return target, target.node
    return target[0], target[1]
