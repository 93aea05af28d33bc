"""The outgoing half of distribution: operations on pids of other nodes.

The runtime hands every send/link/monitor/exit/spawn whose target lives on
another node to its ``RemoteRouter``; this is that router. Each method turns
the operation into one control message on the connection to the target's
node, setting the connection up first when needed (auto-connect, as Erlang
does on first use). The one exception is the hottest: ``process.send`` to a
node that is connected calls that connection itself (``channels``, the
dict of connections that are up, which this router owns and the connection
table fills), so a message costs no router frame. It touches only the
connection table and, for remote spawn, the pending requests: failures go
back to the runtime as reasons.

Rules kept here:

- A payload is encoded *before* any connection work, so an unencodable
  message raises at the sender even when the peer is unreachable.
- A pid of an earlier incarnation of a node (same name, other creation) is
  dead: sends are dropped, links and monitors answer ``noproc`` at once.
- When the node cannot be reached, a link or monitor answers
  ``noconnection`` (the runtime fires the link, delivers the DOWN); a plain
  send is dropped (as Erlang drops it).
- Methods that are plain ``def`` only enqueue on an existing connection:
  without one, the link or monitor they would update died with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from otpylib.runtime.atoms import NOCONNECTION, NOPROC, Atom, atom
from otpylib.runtime.backends.base import RuntimeEntry, SpawnOptions
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import NameAlreadyRegistered
from otpylib_dist.connection import Connection
from otpylib_dist.connections import ConnectionTable
from otpylib_dist.errors import NodeUnreachable, RemoteSpawnError
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import encode_reason, encode_term
from otpylib_dist.remote_requests import PendingRequests

logger = logging.getLogger(__name__)

__all__ = ["ALREADY_REGISTERED", "SPAWN_REPLY_TIMEOUT", "NodeRouter"]

#: How long a remote spawn waits for the peer's answer. The peer answers
#: right after spawning, so this only bites when the peer is stuck.
SPAWN_REPLY_TIMEOUT: Final = 10.0

#: A spawn refused because the name is taken: ``(ALREADY_REGISTERED, holder)``.
ALREADY_REGISTERED: Final = atom.ensure("already_registered")


class NodeRouter:
    """Routes operations on remote pids to the right connection (a ``RemoteRouter``)."""

    __slots__ = ("_done", "_entry", "_make_ref", "_requests", "_table", "_up", "channels")

    def __init__(self, requests: PendingRequests, make_ref: Callable[[], Ref]) -> None:
        self._requests = requests
        self._make_ref = make_ref
        #: RemoteRouter.channels: each connection that is up is its node's
        #: channel. The connection table keeps its connections here (bind).
        self.channels: dict[str, Connection] = {}

    def bind(self, table: ConnectionTable, entry: RuntimeEntry) -> None:
        """Give the router its connections and the runtime's entry points.

        Separate from ``__init__`` because the entry is what attaching this
        router to the runtime returns (``AsyncIOBackend.attach_router``).
        """
        self._table = table
        self._up = table.up
        if table.up is not self.channels:
            raise ValueError("the table must keep its connections in the router's channels")
        self._entry = entry
        # What a send that needs no waiting returns: one already-done future,
        # shared (as the runtime's local send does).
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        self._done = done

    async def _connection(self, node: str) -> Connection | None:
        conn = self._up.get(node)
        if conn is not None:
            return conn
        if await self._table.connect(node):
            return self._up.get(node)
        return None

    def send(self, to: Pid, message: Any) -> Awaitable[None]:
        """Send to a remote pid; dropped when the node is unreachable or the pid stale.

        ``process.send`` goes to the connection itself when it is up
        (``Connection.send_message``, the fast path); this is for everything
        else: the runtime's own ``send``, and a node not connected yet, which
        takes the coroutine in :meth:`_send_slow` (connect, then send).
        """
        conn = self._up.get(to.node)
        if conn is not None:
            return conn.send_message(to, message, None)
        encode_term(message)  # an unencodable message raises here, reachable or not
        return self._send_slow(to, message)

    async def _send_slow(self, to: Pid, message: Any) -> None:
        conn = await self._connection(to.node)
        if conn is not None:
            await conn.send_message(to, message, None)

    def send_registered(self, sender: Pid, name: str, node: str, message: Any) -> Awaitable[None]:
        """Send to ``name`` on ``node``; dropped when nobody there holds the name.

        As :meth:`send`: the connection's fast path when it is up, else a
        coroutine that connects first.
        """
        conn = self._up.get(node)
        if conn is not None:
            return conn.send_message(name, message, sender)
        encode_term(message)  # an unencodable message raises here, reachable or not
        return self._send_registered_slow(sender, name, node, message)

    async def _send_registered_slow(self, sender: Pid, name: str, node: str, message: Any) -> None:
        conn = await self._connection(node)
        if conn is not None:
            await conn.send_message(name, message, sender)

    async def link(self, local: Pid, remote: Pid) -> Atom | None:
        """Ask the peer to link; unreachable node: noconnection, stale pid: noproc."""
        conn = await self._connection(remote.node)
        if conn is None:
            return NOCONNECTION
        if conn.peer_creation != remote.creation:
            return NOPROC
        conn.send_control(control.Link(local, remote))
        return None

    def unlink(self, local: Pid, remote: Pid) -> None:
        """Tell the peer the link is gone."""
        conn = self._up.get(remote.node)
        if conn is not None:
            conn.send_control(control.Unlink(local, remote))

    def monitor(
        self, owner: Pid, target: Pid | tuple[str, str], ref: Ref
    ) -> Awaitable[Atom | None]:
        """Ask the peer to monitor ``target`` for ``owner``; await it for why not (or None).

        A plain ``def``: on an up connection of the target's incarnation (every
        ``gen_server.call`` to a remote server starts with this) the Monitor
        is queued here and the shared done future (result ``None``) returned,
        with no coroutine; anything else takes :meth:`_monitor_slow`.
        """
        if isinstance(target, Pid):  # _wire_target inlined for the common case, a pid
            conn = self._up.get(target.node)
            if conn is not None and conn.peer_creation == target.creation:
                conn.send_control(control.Monitor(owner, target, ref))
                return self._done
            return self._monitor_slow(owner, target, ref)
        conn = self._up.get(target[1])
        if conn is not None:
            conn.send_control(control.Monitor(owner, target[0], ref))
            return self._done
        return self._monitor_slow(owner, target, ref)

    def monitor_send(self, owner: Pid, target: Pid, ref: Ref, message: Any) -> Awaitable[Any]:
        """Monitor ``target`` for ``owner``, then send it ``message``; await for why not.

        The fast path (every remote ``gen_server.call``): on an up
        connection of the target's incarnation, both go in one MonitorSend
        frame when the peer reads them, else as Monitor then Send, and the
        result is ``None`` (done, or waiting for room). Otherwise the
        monitor's answer comes first (``noconnection``, ``noproc``): then
        the message is not sent.
        """
        conn = self._up.get(target.node)
        if conn is not None and conn.peer_creation == target.creation:
            if conn.monitor_sends:
                must_drain = conn.monitor_send_term(owner, target, ref, message)
            else:
                conn.send_control(control.Monitor(owner, target, ref))
                must_drain = conn.send_term(target, message)
            return conn.drain() if must_drain else self._done
        encode_term(message)  # an unencodable message raises here, reachable or not
        return self._monitor_send_slow(owner, target, ref, message)

    async def _monitor_send_slow(self, owner: Pid, target: Pid, ref: Ref, message: Any) -> Any:
        failure = await self._monitor_slow(owner, target, ref)
        if failure is None:
            await self._send_slow(target, message)
        return failure

    async def _monitor_slow(
        self, owner: Pid, target: Pid | tuple[str, str], ref: Ref
    ) -> Atom | None:
        wire_target, node = _wire_target(target)
        conn = await self._connection(node)
        if conn is None:
            return NOCONNECTION
        if type(target) is Pid and conn.peer_creation != target.creation:
            return NOPROC
        conn.send_control(control.Monitor(owner, wire_target, ref))
        return None

    def demonitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Tell the peer a monitor is gone."""
        wire_target, node = _wire_target(target)
        conn = self._up.get(node)
        if conn is not None:
            conn.send_control(control.Demonitor(owner, wire_target, ref))

    async def exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Deliver an ``exit/2`` signal to a remote pid (dropped if unreachable)."""
        conn = await self._connection(target.node)
        if conn is not None and conn.peer_creation == target.creation:
            conn.send_control(control.Exit2(sender, target, encode_reason(reason)))

    def link_exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Our linked process ``sender`` ended: tell the remote ``target``."""
        conn = self._up.get(target.node)
        if conn is not None:
            conn.send_control(control.Exit(sender, target, encode_reason(reason)))

    def monitor_down(
        self, target: Pid | tuple[str, str], owner: Pid, ref: Ref, reason: Any
    ) -> None:
        """A process a remote ``owner`` monitored ended: send its DOWN."""
        conn = self._up.get(owner.node)
        if conn is not None:
            wire_target = _wire_target(target)[0]
            conn.send_control(control.MonitorExit(wire_target, owner, ref, encode_reason(reason)))

    def is_alive(self, pid: Pid) -> bool:
        """Not known dead: its node is connected and has not restarted since.

        Differs from Erlang: ``is_process_alive/1`` refuses remote pids; we
        answer from what this node knows without a round trip.
        """
        conn = self._up.get(pid.node)
        return conn is not None and conn.peer_creation == pid.creation

    async def spawn(
        self,
        node: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SpawnOptions,
    ) -> Pid:
        """Spawn ``function`` on ``node`` with the options' link and monitor (``spawn_opt``).

        Our half of a link or monitor is recorded when the reply is
        dispatched, not when the spawner resumes: the child's ``EXIT`` or
        ``DOWN`` may be the very next frame.
        """
        payload = encode_term((args, kwargs))  # an unencodable argument raises here
        conn = await self._connection(node)
        if conn is None:
            raise NodeUnreachable(node, f"cannot spawn {function!r} there")
        sender = options.sender
        # The monitor's ref doubles as the request's: the peer's DOWN names it.
        ref = options.monitor if options.monitor is not None else self._make_ref()
        entry = self._entry

        def record(result: Any) -> None:
            if type(result) is not Pid:
                return
            if options.link:
                entry.adopt_link(sender, result)
            if options.monitor is not None:
                entry.adopt_monitor(sender, options.monitor, result)

        fut = self._requests.add(node, ref, record)
        conn.send_control(
            control.SpawnRequest(
                ref=ref,
                sender=sender,
                function=function,
                args=payload,
                link=options.link,
                monitor=options.monitor is not None,
                trap_exits=options.trap_exits,
                name=options.name,
            )
        )
        try:
            ok, result = await asyncio.wait_for(fut, SPAWN_REPLY_TIMEOUT)
        finally:
            self._requests.discard(ref)
        if ok and type(result) is Pid:
            return result
        if type(result) is tuple and len(result) == 2 and result[0] is ALREADY_REGISTERED:
            raise NameAlreadyRegistered(
                f"cannot spawn {function!r} on {node} with name {options.name!r}: it is "
                f"registered there to {result[1]!r}",
                holder=result[1],
            )
        raise RemoteSpawnError(node, function, result)


def _wire_target(target: Pid | tuple[str, str]) -> tuple[Pid | str, str]:
    """A monitor target as sent (a pid, or a registered name) and its node."""
    if isinstance(target, Pid):
        return target, target.node
    return target[0], target[1]
