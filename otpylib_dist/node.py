"""DistributedBackend: the local runtime plus a node that talks to other nodes.

Theory of operation
-------------------
The node is an ``AsyncIOBackend`` whose ``RemoteRouter`` (``router.py``)
carries operations on remote pids out, and whose ``_dispatch`` carries
control messages from peers in. In between sit the connections
(``connection.py``): at most one established connection per peer node.

Connection life cycle (per peer node)::

    (none) --connect()/auto-connect--> connecting --handshake ok--> up
       ^                                   |                         |
       +------- refused / timeout ---------+                         |
       +-------------- socket closed / tick timeout / disconnect ----+

- *Up* means the handshake finished: the peer is in ``nodes()``,
  ``(nodeup, node)`` has been delivered to ``monitor_nodes`` subscribers, and
  only then are the peer's control messages dispatched.
- *Down* fires every link and monitor across the connection with
  ``noconnection`` (``AsyncIOBackend._node_lost``), fails pending remote
  spawns, and then delivers ``nodedown`` to ``monitor_node`` /
  ``monitor_nodes`` subscribers, after the last message from that peer.
- Simultaneous connects (both nodes dial at once) are settled by
  ``protocol.handshake.simultaneous_winner``: the losing attempt is refused
  with ``simultaneous_lost`` and its dialer waits for the winning one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from otpylib.runtime.atoms import NODEDOWN, NODEUP, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.backends.base import DEFAULT_SHUTDOWN_TIMEOUT, ProcessFunction
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, Ref
from otpylib_dist import control_handlers
from otpylib_dist.busy_wait import BusyWait
from otpylib_dist.connection import Connection, Role
from otpylib_dist.cookie import load_cookie
from otpylib_dist.discovery.base import Discovery, DiscoveryEvent, NodeAppeared
from otpylib_dist.errors import NodeUnreachable, RemoteSpawnError
from otpylib_dist.names import make_node_name, split_node_name
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import encode_term
from otpylib_dist.protocol.errors import RefusalReason
from otpylib_dist.protocol.handshake import simultaneous_winner
from otpylib_dist.router import NodeRouter
from otpylib_dist.statistics import NodeStatistics, PeerStatistics

if TYPE_CHECKING:
    from otpylib_dist.tls import TlsConfig

logger = logging.getLogger(__name__)

__all__ = ["DistributedBackend"]

#: How long ``connect`` waits for a whole connection setup (TCP, TLS and the
#: handshake). Erlang's ``net_setuptime`` defaults to 7 s; same here.
DEFAULT_SETUP_TIME: Final = 7.0

#: How long a remote spawn waits for the peer's answer. The peer answers
#: right after spawning, so this only bites when the peer is stuck.
SPAWN_REPLY_TIMEOUT: Final = 10.0

DISCONNECT: Final = atom.ensure("disconnect")
CONNECTION_CLOSED: Final = atom.ensure("connection_closed")


class DistributedBackend(AsyncIOBackend):
    """A runtime that is also a node of a cluster.

    Offers the whole local runtime API; pids of other nodes work wherever a
    pid does (send, link, monitor, exit, ``is_alive``), ``(name, node)`` is a
    registered send, and ``spawn(..., node=other)`` starts a process there.

    Args:
        name: ``"alpha@127.0.0.1"``; the host part is where this node listens
            and is reached (``"alpha"`` alone means ``alpha@127.0.0.1``).
        cookie: the shared secret; default ``OTPY_COOKIE`` or ``~/.otpylib.cookie``.
        port: TCP port to listen on (0: any free port; see ``port`` after
            ``initialize()``).
        net_ticktime: seconds of silence after which a peer is declared down
            (``net_tick_timeout``), as Erlang's ``net_ticktime``.
        discovery: how to find other nodes (mDNS, static list, EPMD, DNS).
        tls: a ``TlsConfig`` for mutual TLS on every connection.
        auto_connect: connect to every node discovery reports (full mesh).
        hidden: do not appear in peers' ``nodes()`` (tools such as the CLI).
        listen_host: address to bind (default: the host part of ``name``).
        setup_time: deadline for one connection setup, in seconds.
        busy_wait: seconds to keep the event loop polling after network
            traffic instead of sleeping (BEAM's scheduler busy wait; see
            ``busy_wait.py``). Off (0) by default; ``DEFAULT_BUSY_WAIT``
            cuts a cross-process round trip several fold on a machine with
            idle cores, and hurts on one without.
    """

    def __init__(
        self,
        name: str,
        *,
        cookie: str | None = None,
        port: int = 0,
        net_ticktime: float = 60.0,
        discovery: Discovery | None = None,
        tls: TlsConfig | None = None,
        auto_connect: bool = False,
        hidden: bool = False,
        listen_host: str | None = None,
        setup_time: float = DEFAULT_SETUP_TIME,
        busy_wait: float = 0.0,
    ) -> None:
        super().__init__()
        full = make_node_name(name)
        _, host = split_node_name(full)
        if net_ticktime < 1.0:
            raise ValueError(f"net_ticktime must be at least 1 second, got {net_ticktime}")
        self._wanted_name = full
        self._host = host
        self._listen_host = listen_host if listen_host is not None else host
        self._wanted_port = port
        self._cookie = load_cookie(cookie)
        self.net_ticktime = float(net_ticktime)
        self._discovery = discovery
        self._tls = tls
        self._auto_connect = auto_connect
        self.hidden = hidden
        self.setup_time = setup_time
        self.busy_wait = BusyWait(busy_wait)
        self._port = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[str, Connection] = {}
        self._handshaking: set[Connection] = set()
        self._connecting: dict[str, asyncio.Future[bool]] = {}
        self._up_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._node_monitors: dict[str, dict[Pid, int]] = {}
        self._nodes_monitors: set[Pid] = set()
        self._calls: dict[Ref, tuple[str, asyncio.Future[Any]]] = {}
        # Remote spawns with a link or monitor, by request ref: recorded when
        # the reply is dispatched (see _answer_call), not when the spawner
        # resumes, or an EXIT/DOWN read in the same chunk would find no link.
        self._spawn_relations: dict[Ref, tuple[Pid, str]] = {}
        self._addresses: dict[str, tuple[str, int]] = {}
        self._failures: dict[str, str] = {}
        self._refusals: dict[str, str] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._node_shutdown: asyncio.Task[None] | None = None
        self.on_stop_request: Callable[[], None] | None = None
        # Observability counters (read by node_statistics()).
        self._nodeups = 0
        self._nodedowns: dict[str, int] = {}
        self._refusal_counts: dict[str, int] = {}  # handshake refusals, by reason (connection.py)

    # ------------------------------------------------------------ identity

    @property
    def port(self) -> int:
        """The TCP port this node listens on (valid after ``initialize()``)."""
        return self._port

    @property
    def host(self) -> str:
        """The host part of the node name: where peers reach this node."""
        return self._host

    @property
    def creation(self) -> int:
        """This incarnation's creation number (new at every start)."""
        return self._creation

    @property
    def cookie(self) -> str:
        """The cookie this node authenticates with (never logged or sent)."""
        return self._cookie

    # ------------------------------------------------------------ life cycle

    async def initialize(self) -> None:
        """Start the runtime, listen for peers and announce this node.

        Raises:
            OSError: the port cannot be bound (the message names host:port).
        """
        # A creation is any non-zero 32-bit number not used by the last
        # incarnation; random is enough (Erlang asks EPMD for the next one).
        self._set_identity(self._wanted_name, secrets.randbits(32) or 1)
        await super().initialize()
        self._router = NodeRouter(self)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Connection(
                    self, Role.ACCEPTOR, tls=self._tls.server if self._tls else None
                ),
                host=self._listen_host,
                port=self._wanted_port,
                reuse_address=True,
            )
        except OSError as exc:
            self._closed = True
            raise OSError(
                exc.errno,
                f"node {self._node_name} cannot listen on {self._listen_host}:"
                f"{self._wanted_port}: {exc.strerror}; choose another --port or stop "
                "the process using it",
            ) from exc
        self._port = self._server.sockets[0].getsockname()[1]
        self.busy_wait.start()
        logger.info(
            "node %s listening on %s:%d",
            self._node_name,
            self._listen_host,
            self._port,
            extra={"event": "listening", "address": f"{self._listen_host}:{self._port}"},
        )
        if self._discovery is not None:
            self._discovery.subscribe(self._on_discovery_event)
            await self._discovery.start(self._node_name, self._host, self._port)

    async def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """End every process, tell peers (links fire there), close connections.

        Peers see each link and monitor fire with the processes' own exit
        reasons (usually ``shutdown``), then ``nodedown`` with reason
        ``connection_closed``; mDNS peers get a goodbye. Called from inside
        a process of this node, it returns at once and the node stops
        afterwards (as the local runtime's ``shutdown``); from outside, it
        returns when the node is fully stopped. Safe to call twice.
        """
        task = self._node_shutdown
        if task is None:
            self._stopping = True
            # Outside any process (empty context), so it is not ended along
            # with the process that asked for it.
            task = self._node_shutdown = asyncio.get_running_loop().create_task(
                self._stop_node(timeout), context=contextvars.Context()
            )
        caller = current_process.get()
        if caller is not None and caller.runtime is self:
            await asyncio.sleep(0)
            return
        await asyncio.shield(task)

    async def _stop_node(self, timeout: float) -> None:
        await super().shutdown(timeout)
        if self._discovery is not None:
            try:
                await self._discovery.stop()
            except Exception:
                logger.exception("discovery did not stop cleanly")
        if self._server is not None:
            self._server.close()
        conns = list(self._connections.values()) + list(self._handshaking)
        for conn in conns:
            conn.close(DISCONNECT)
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=timeout)
        for task in list(self._background):
            task.cancel()
        await self.busy_wait.stop()
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------- connecting

    def nodes(self, *, hidden: bool = False) -> list[str]:
        """Nodes connected now (``nodes()``); with ``hidden=True`` also hidden ones."""
        return [n for n, c in self._connections.items() if hidden or not c.peer_hidden]

    async def connect(self, node: str, host: str | None = None, port: int | None = None) -> bool:
        """Connect to ``node`` unless connected (``net_kernel:connect_node/1``).

        The address is ``host``/``port`` when given, else what the configured
        discovery resolves. Returns whether the node is connected afterwards;
        failures are logged with their cause, never raised (as Erlang's
        ``connect_node`` returns ``false``).
        """
        split_node_name(node)
        if node == self._node_name:
            return True
        if node in self._connections:
            return True
        if self._closed or self._stopping:
            return False
        attempt = self._connecting.get(node)
        if attempt is None:
            attempt = asyncio.get_running_loop().create_future()
            self._connecting[node] = attempt
            self._spawn_background(self._connect(node, host, port, attempt))
        return await asyncio.shield(attempt)

    async def _connect(
        self, node: str, host: str | None, port: int | None, attempt: asyncio.Future[bool]
    ) -> None:
        # Report this attempt only: a timeout now must not come with an older refusal.
        self._refusals.pop(node, None)
        self._failures.pop(node, None)
        ok = False
        try:
            ok = await asyncio.wait_for(self._dial(node, host, port), self.setup_time)
        except TimeoutError:
            self._failures[node] = f"no connection within {self.setup_time:.1f} s"
            logger.warning(
                "connection to %s timed out after %.1f s",
                node,
                self.setup_time,
                extra={"event": "connect_failed", "peer": node, "reason": "timeout"},
            )
        except OSError as exc:
            why = str(exc.strerror or exc) or type(exc).__name__
            if self._tls is not None and isinstance(exc, ssl.SSLError | ConnectionResetError):
                why = f"TLS handshake failed: {why}"
            self._failures[node] = why
            logger.warning(
                "cannot connect to %s: %s",
                node,
                why,
                extra={"event": "connect_failed", "peer": node, "reason": why},
            )
        except Exception as exc:
            self._failures[node] = f"{type(exc).__name__}: {exc}"
            logger.exception("connecting to %s failed", node)
        finally:
            if self._connecting.get(node) is attempt:
                del self._connecting[node]
            if not attempt.done():
                attempt.set_result(ok or node in self._connections)

    async def _dial(self, node: str, host: str | None, port: int | None) -> bool:
        if host is None or port is None:
            address = await self._resolve(node)
            if address is None:
                self._failures[node] = "no address known"
                logger.warning(
                    "cannot connect to %s: no address known (give host and port, or "
                    "configure discovery)",
                    node,
                    extra={"event": "connect_failed", "peer": node, "reason": "no_address"},
                )
                return False
            host, port = host or address[0], port or address[1]
        else:
            self._addresses[node] = (host, port)
        loop = asyncio.get_running_loop()
        up = loop.create_future()
        self._up_waiters.setdefault(node, []).append(up)
        try:
            _, conn = await loop.create_connection(
                lambda: Connection(
                    self,
                    Role.INITIATOR,
                    expected_peer=node,
                    tls=self._tls.client if self._tls else None,
                    server_hostname=split_node_name(node)[1],
                ),
                host,
                port,
            )
            # Wait for this connection, or for the peer's own attempt that won
            # a simultaneous connect, to come up; or for this one to fail.
            await asyncio.wait([up, conn.closed], return_when=asyncio.FIRST_COMPLETED)
            if node in self._connections:
                return True
            if conn.refusal == "simultaneous_lost" or (
                conn.refusal == "duplicate_name" and self._connected_or_connecting(node)
            ):
                # The other side's attempt is the one that lives on.
                await asyncio.wait_for(asyncio.shield(up), self.setup_time)
                return node in self._connections
            if conn.refusal is not None:
                self._refusals[node] = conn.refusal
            self._failures[node] = conn.failure or (
                "the peer closed the connection during the handshake (does it require "
                "TLS? see its log for why)"
            )
            return False
        finally:
            waiters = self._up_waiters.get(node)
            if waiters is not None and up in waiters:
                waiters.remove(up)
                if not waiters:
                    del self._up_waiters[node]

    def add_address(self, node: str, host: str, port: int) -> None:
        """Remember where ``node`` listens, for auto-connect without discovery.

        ``connect(node, host, port)`` remembers its address the same way.
        """
        split_node_name(node)
        self._addresses[node] = (host, int(port))

    def connect_failure(self, node: str) -> str | None:
        """Why the last attempt to connect to ``node`` failed (for messages), if it did."""
        return self._failures.get(node)

    def connect_refusal(self, node: str) -> str | None:
        """The handshake refusal that ended the last failed attempt on ``node``, if any.

        One of ``bad_cookie``, ``not_allowed``, ``duplicate_name``,
        ``version_mismatch``, ``simultaneous_lost``, ``setup_timeout``,
        ``protocol_error`` or ``tls``: for tools that advise on what to fix.
        """
        return self._refusals.get(node)

    async def _resolve(self, node: str) -> tuple[str, int] | None:
        known = self._addresses.get(node)
        if known is not None:
            return known
        if self._discovery is None:
            return None
        return await self._discovery.resolve(node)

    async def disconnect(self, node: str) -> bool:
        """Close the connection to ``node`` (``disconnect_node/1``).

        Links and monitors across it fire with ``noconnection``; subscribers
        see ``nodedown`` with reason ``disconnect``. Returns whether there was
        a connection.
        """
        conn = self._connections.get(node)
        if conn is None:
            return False
        conn.close(DISCONNECT)
        await conn.closed
        return True

    def _on_discovery_event(self, event: DiscoveryEvent) -> None:
        if (
            self._auto_connect
            and isinstance(event, NodeAppeared)
            and event.name != self._node_name
            and event.name not in self._connections
            and not self._stopping
        ):
            self._spawn_background(self.connect(event.name, event.host, event.port))

    # ------------------------------------------- callbacks from connections

    def _check_incoming(self, peer: str, creation: int = -1) -> RefusalReason | None:
        """Decide on a peer's Hello: ``None`` to go on, else a refusal reason.

        When both sides are dialing each other at once, the node with the
        greater name keeps its own attempt and refuses the other's with
        ``simultaneous_lost`` (the loser then waits for the winner's attempt).
        A Hello from a node already connected is refused with
        ``duplicate_name`` (a benign race while a mesh forms); one with a new
        creation is let through if the old connection has gone silent (a
        restarted node), else refused (two live nodes under one name).
        """
        if self._stopping or self._closed:
            return "not_allowed"
        if peer == self._node_name:
            logger.warning("refusing a node that claims our own name %s", peer)
            return "duplicate_name"
        existing = self._connections.get(peer)
        if existing is not None:
            if existing.peer_creation == creation:
                return "duplicate_name"
            # A new creation under a connected name: either the peer restarted
            # and its old connection has not timed out yet, or a second node
            # runs under that name. A live peer is heard from at least every
            # net_ticktime/4 (ticks); one silent for half of net_ticktime is
            # taken for dead, and the new connection replaces it once
            # authenticated (_connection_up), as Erlang lets a restarted node in.
            silent = asyncio.get_running_loop().time() - existing.last_heard
            if silent < self.net_ticktime / 2:
                logger.warning(
                    "refusing a second node named %s (creation %d): the connected one "
                    "(creation %d) is alive",
                    peer,
                    creation,
                    existing.peer_creation,
                )
                return "duplicate_name"
        if peer in self._connecting and simultaneous_winner(self._node_name, peer):
            return "simultaneous_lost"
        return None

    def _connected_or_connecting(self, peer: str | None) -> bool:
        """Whether a connection to ``peer`` is up or another handshake with it is under way."""
        if peer is None:
            return False
        if peer in self._connections:
            return True
        return any(c.handshake_peer == peer and c.role is Role.ACCEPTOR for c in self._handshaking)

    def _connection_up(self, conn: Connection) -> bool:
        """A handshake finished. Returns False if a connection to that node already exists."""
        peer = conn.peer_name
        if peer is None or self._stopping:
            return False
        existing = self._connections.get(peer)
        if existing is not None:
            if existing.peer_creation == conn.peer_creation:
                return False
            logger.warning(
                "node %s restarted (creation %d -> %d); dropping the connection to the old one",
                peer,
                existing.peer_creation,
                conn.peer_creation,
            )
            self._connection_down(existing, CONNECTION_CLOSED)
            existing.close(CONNECTION_CLOSED)
        self._connections[peer] = conn
        self._failures.pop(peer, None)
        self._refusals.pop(peer, None)
        self._nodeups += 1
        # A hidden node (an `otpy-node ping` and friends) is a tool passing by: debug.
        logger.log(
            logging.DEBUG if conn.peer_hidden else logging.INFO,
            "nodeup %s (via %s)",
            peer,
            conn.address,
            extra={"event": "nodeup", "peer": peer, "address": conn.address},
        )
        if not conn.peer_hidden:
            for pid in list(self._nodes_monitors):
                self._remote_deliver(pid, (NODEUP, peer))
        for up in self._up_waiters.pop(peer, []):
            if not up.done():
                up.set_result(None)
        return True

    def _connection_down(self, conn: Connection, reason: Any) -> None:
        """A connection ended; for an up connection, fire everything across it."""
        self._handshaking.discard(conn)
        peer = conn.peer_name
        if peer is None or self._connections.get(peer) is not conn:
            return
        del self._connections[peer]
        self._nodedowns[str(reason)] = self._nodedowns.get(str(reason), 0) + 1
        logger.log(
            logging.DEBUG if conn.peer_hidden else logging.INFO,
            "nodedown %s: %s",
            peer,
            reason,
            extra={"event": "nodedown", "peer": peer, "reason": str(reason)},
        )
        self._node_lost(peer)
        for ref, (node, fut) in list(self._calls.items()):
            if node == peer and not fut.done():
                fut.set_exception(NodeUnreachable(peer, f"connection lost ({reason})"))
                del self._calls[ref]
        for pid in self._node_monitors.pop(peer, {}):
            self._remote_deliver(pid, (NODEDOWN, peer))
        if not conn.peer_hidden:
            for pid in list(self._nodes_monitors):
                self._remote_deliver(pid, (NODEDOWN, peer, {"reason": reason}))

    def peer_statistics(self) -> list[PeerStatistics]:
        """A snapshot of every connection, up or handshaking, hidden peers included."""
        conns = [*self._connections.values(), *self._handshaking]
        return [c.statistics() for c in conns]

    def node_statistics(self) -> NodeStatistics:
        """Counts of nodeups, nodedowns by reason and handshake refusals by reason."""
        return NodeStatistics(
            nodeups=self._nodeups,
            nodedowns=dict(self._nodedowns),
            refusals=dict(self._refusal_counts),
        )

    def _dispatch(self, conn: Connection, msg: control.ControlMessage) -> None:
        """Act on one control message from ``conn``'s peer (no awaits)."""
        control_handlers.dispatch(self, conn, msg)

    # ------------------------------------------------------ node monitoring

    async def monitor_node(self, node: str, flag: bool = True) -> None:
        """Deliver ``(nodedown, node)`` to the caller when ``node`` goes down.

        As ``erlang:monitor_node/2``: tries to connect first, and delivers
        ``nodedown`` at once if that fails. Each call with ``flag=True`` adds
        one notification; ``flag=False`` removes one.
        """
        pid = self._caller("monitor_node").pid
        if not flag:
            mons = self._node_monitors.get(node)
            if mons and pid in mons:
                mons[pid] -= 1
                if mons[pid] <= 0:
                    del mons[pid]
            return
        if not await self.connect(node):
            self._remote_deliver(pid, (NODEDOWN, node))
            return
        mons = self._node_monitors.setdefault(node, {})
        mons[pid] = mons.get(pid, 0) + 1

    async def monitor_nodes(self, flag: bool = True) -> None:
        """Subscribe the caller to ``(nodeup, node)`` and ``(nodedown, node, info)``.

        As ``net_kernel:monitor_nodes/2`` with ``nodedown_reason``: ``info``
        is ``{"reason": reason}`` with reason ``connection_closed``,
        ``net_tick_timeout``, ``disconnect``, ...
        """
        pid = self._caller("monitor_nodes").pid
        if flag:
            self._nodes_monitors.add(pid)
        else:
            self._nodes_monitors.discard(pid)

    # --------------------------------------------------------- remote spawn

    async def _spawn_remote(
        self,
        node: str,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        name: str | None,
        trap_exits: bool,
        relation: str | None,
    ) -> tuple[Pid, Ref | None]:
        reference = _function_reference(fn)
        sender = self._sender_pid()
        payload = encode_term((tuple(args or ()), dict(kwargs or {})))
        if not await self.connect(node):
            raise NodeUnreachable(node, f"cannot spawn {reference!r} there")
        conn = self._connections[node]
        ref = self.make_ref()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[ref] = (node, fut)
        if relation is not None:
            self._spawn_relations[ref] = (sender, relation)
        conn.send_control(
            control.SpawnRequest(
                ref=ref,
                sender=sender,
                function=reference,
                args=payload,
                link=relation == "link",
                monitor=relation == "monitor",
                trap_exits=trap_exits,
                name=name,
            )
        )
        try:
            ok, result = await asyncio.wait_for(fut, SPAWN_REPLY_TIMEOUT)
        finally:
            self._calls.pop(ref, None)
            self._spawn_relations.pop(ref, None)
        if not ok:
            raise RemoteSpawnError(node, reference, result)
        pid: Pid = result
        return pid, (ref if relation == "monitor" else None)

    async def rpc(self, node: str, op: str, arg: Any = None, timeout: float = 10.0) -> Any:
        """Ask ``node`` itself something (``ping``, ``nodes``, ``processes``,
        ``statistics``, ``stop``): what the ``otpy-node`` subcommands use.

        Raises:
            NodeUnreachable: no connection could be made, or it was lost.
            TimeoutError: no answer within ``timeout``.
        """
        if not await self.connect(node):
            raise NodeUnreachable(node, "no connection could be made")
        conn = self._connections[node]
        ref = self.make_ref()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[ref] = (node, fut)
        conn.send_control(control.NodeRpc(ref=ref, op=op, arg=encode_term(arg)))
        try:
            ok, result = await asyncio.wait_for(fut, timeout)
        finally:
            self._calls.pop(ref, None)
        if not ok:
            raise RuntimeError(f"node {node} could not answer {op!r}: {result}")
        return result

    async def ping(self, node: str) -> bool:
        """``net_adm:ping/1``: True (pong) when ``node`` answers, else False (pang)."""
        try:
            return bool(await self.rpc(node, "ping", timeout=self.setup_time) == "pong")
        except (NodeUnreachable, TimeoutError, RuntimeError):
            return False

    def _answer_call(self, ref: Ref, ok: bool, result: Any) -> None:
        relation = self._spawn_relations.pop(ref, None)
        if relation is not None and ok and type(result) is Pid:
            # Our side of a remote spawn_link/spawn_monitor, in this same
            # dispatch step: the child's EXIT or DOWN may be the next frame.
            sender, kind = relation
            if kind == "link":
                self._add_remote_link(sender, result)
            else:
                self._add_remote_monitor(sender, ref, result)
        entry = self._calls.get(ref)
        if entry is not None and not entry[1].done():
            entry[1].set_result((ok, result))


def _function_reference(fn: ProcessFunction) -> str:
    """``"module:qualname"`` for a module-level function, or the string given."""
    if isinstance(fn, str):
        return fn
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "__main__":
        raise TypeError(
            f"cannot spawn {fn!r} on another node: pass 'package.module:function' for a "
            "module-level function importable on that node"
        )
    return f"{module}:{qualname}"
