"""Node: a runtime that is also a node of a cluster (wiring only).

A ``Node`` is an ``AsyncIOBackend`` whose ``RemoteRouter`` (``router.py``)
carries operations on remote pids out, and whose control handlers
(``control_handlers.py``) carry peers' signals in through the runtime's
``RuntimeEntry``. The connection table (``connections.py``) decides which
connections exist; node monitors (``node_monitors.py``) and pending requests
(``remote_requests.py``) hold their own state. This module builds them,
listens, and offers the node-level API (``nodes``, ``connect``, ``rpc``, ...).

Arrows point down: nothing below imports this module.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otpylib.runtime.atoms import NODEDOWN
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.backends.base import DEFAULT_SHUTDOWN_TIMEOUT
from otpylib.runtime.errors import RuntimeStateError
from otpylib_dist import node_rpc
from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT, BusyWait
from otpylib_dist.connection import ConnectionSettings
from otpylib_dist.connections import ConnectionTable
from otpylib_dist.control_handlers import ControlHandlers, SpawnPolicy
from otpylib_dist.cookie import load_cookie
from otpylib_dist.discovery.base import Discovery, DiscoveryEvent, NodeAppeared
from otpylib_dist.errors import ConnectFailure, NodeUnreachable, RpcError
from otpylib_dist.names import make_node_name, split_node_name
from otpylib_dist.node_monitors import NodeMonitors
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import encode_term
from otpylib_dist.protocol.errors import REFUSAL_REASONS
from otpylib_dist.protocol.fragments import DEFAULT_MAX_MESSAGE, FRAGMENT_ABOVE
from otpylib_dist.protocol.handshake import DEFAULT_SETUP_TIME
from otpylib_dist.protocol.ticks import DEFAULT_NET_TICKTIME
from otpylib_dist.remote_requests import PendingRequests
from otpylib_dist.router import NodeRouter
from otpylib_dist.statistics import NodeStatistics, PeerStatistics

if TYPE_CHECKING:
    from otpylib_dist.tls import TlsConfig

logger = logging.getLogger(__name__)

__all__ = ["DistributedBackend", "Node", "this_node"]


class Node(AsyncIOBackend):
    """A runtime that is also a node of a cluster.

    Offers the whole local runtime API; pids of other nodes work wherever a
    pid does (send, link, monitor, exit, ``is_alive``), ``(name, node)`` is a
    registered send, and ``spawn(..., node=other)`` starts a process there.
    Use it as ``async with Node("a@127.0.0.1") as node:``, or call
    ``initialize()`` and ``shutdown()``. Process code reaches its node with
    :func:`this_node`.

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
        setup_time: deadline for each step of a connection setup, in seconds
            (Erlang's ``net_setuptime``, 7 s).
        busy_wait: seconds to keep the event loop polling after network
            traffic instead of sleeping (BEAM's scheduler busy wait; see
            ``busy_wait.py``), every time; ``0`` never. ``None`` (default):
            ``DEFAULT_BUSY_WAIT``, adaptive: it backs off by itself while the
            machine's CPUs are busy, so it is safe on a crowded host.
        spawn_allow: module prefixes peers may spawn functions from (None:
            any importable async function; see ``SpawnPolicy``).
        connect_all: connect to every visible node a peer is connected to,
            so a cluster becomes a full mesh however it was joined (Erlang's
            ``connect_all``, on by default).
        max_message_size: largest message (encoded) this node sends or
            accepts, in bytes (default 256 MiB). Messages over 256 KiB travel
            in fragments, so they do not hold up small ones; a larger message
            raises ``EncodeError`` at its sender, and one arriving is dropped
            with a log line. Set the same value on every node.
    """

    def __init__(
        self,
        name: str,
        *,
        cookie: str | None = None,
        port: int = 0,
        net_ticktime: float = DEFAULT_NET_TICKTIME,
        discovery: Discovery | None = None,
        tls: TlsConfig | None = None,
        auto_connect: bool = False,
        hidden: bool = False,
        listen_host: str | None = None,
        setup_time: float = DEFAULT_SETUP_TIME,
        busy_wait: float | None = None,
        spawn_allow: tuple[str, ...] | None = None,
        connect_all: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        super().__init__()
        full = make_node_name(name)
        _, host = split_node_name(full)
        if net_ticktime < 1.0:
            raise ValueError(f"net_ticktime must be at least 1 second, got {net_ticktime}")
        if max_message_size < FRAGMENT_ABOVE:
            raise ValueError(
                f"max_message_size must be at least {FRAGMENT_ABOVE} bytes, got {max_message_size}"
            )
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
        self.busy_wait = (
            BusyWait(DEFAULT_BUSY_WAIT, adaptive=True) if busy_wait is None else BusyWait(busy_wait)
        )
        self._spawn_policy = SpawnPolicy(spawn_allow)
        self.connect_all = connect_all
        self.max_message_size = max_message_size
        self._port = 0
        self._server: asyncio.Server | None = None
        self._table: ConnectionTable | None = None
        self._node_monitors: NodeMonitors | None = None
        self._requests = PendingRequests()
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._node_shutdown: asyncio.Task[None] | None = None
        #: Called (instead of a shutdown) when a peer asks this node to stop
        #: (``otpy-node stop``): the daemon sets it to end its main loop.
        self.on_stop_request: Callable[[], None] | None = None

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

    @property
    def spawn_policy(self) -> SpawnPolicy:
        """What peers may run here (remote spawn, ``otpy-node rpc``)."""
        return self._spawn_policy

    @property
    def connections(self) -> ConnectionTable:
        """The connection table (valid after ``initialize()``)."""
        if self._table is None:
            raise RuntimeStateError("the node is not initialized; call 'await node.initialize()'")
        return self._table

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
        settings = ConnectionSettings(
            name=self._node_name,
            creation=self._creation,
            cookie=self._cookie,
            hidden=self.hidden,
            setup_time=self.setup_time,
            net_ticktime=self.net_ticktime,
            busy_wait=self.busy_wait,
            connect_all=self.connect_all and not self.hidden,
            max_message_size=self.max_message_size,
        )
        # The seam: the router goes in, the runtime's entry points come out.
        router = NodeRouter(self._requests, self.make_ref)
        entry = self.attach_router(router)
        self._node_monitors = NodeMonitors(entry)
        handlers = ControlHandlers(
            self._node_name,
            entry,
            self._requests,
            lambda op, arg: node_rpc.answer(self, op, arg),
            self._spawn_policy,
            on_peers=lambda conn, msg: table.peers_received(conn, msg),
        )
        self._table = table = ConnectionTable(
            settings,
            entry,
            monitors=self._node_monitors,
            requests=self._requests,
            dispatcher=handlers,
            resolve=self._resolve,
            tls=self._tls,
            up=router.channels,
        )
        router.bind(table, entry)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                table.acceptor, host=self._listen_host, port=self._wanted_port, reuse_address=True
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
        table.settings = dataclasses.replace(settings, listen_port=self._port)
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
            if self._table is not None:
                self._table.stopping = True  # no new connections from now on
            # Outside any process (empty context), so it is not ended along
            # with the process that asked for it.
            task = self._node_shutdown = asyncio.get_running_loop().create_task(
                self._stop_node(timeout), context=contextvars.Context()
            )
        await self._await_stop(task)

    async def _stop_node(self, timeout: float) -> None:
        await super().shutdown(timeout)
        if self._discovery is not None:
            try:
                await self._discovery.stop()
            except Exception:
                logger.exception("discovery did not stop cleanly")
        if self._server is not None:
            self._server.close()
        if self._table is not None:
            await self._table.close_all(timeout)
        for task in list(self._background):
            task.cancel()
        await self.busy_wait.stop()
        if self._server is not None:
            await self._server.wait_closed()

    def request_stop(self) -> None:
        """Stop this node soon: what ``otpy-node stop`` asks (``init:stop/0``).

        Runs ``on_stop_request`` when the daemon set one, else starts the
        shutdown; either way after the current step, so an answer already
        queued leaves first.
        """
        if self.on_stop_request is not None:
            asyncio.get_running_loop().call_soon(self.on_stop_request)
        else:
            self._spawn_background(self.shutdown())

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------- connecting

    def nodes(self, *, hidden: bool = False) -> list[str]:
        """Nodes connected now (``nodes()``); with ``hidden=True`` also hidden ones."""
        return self._table.nodes(hidden=hidden) if self._table is not None else []

    async def connect(self, node: str, host: str | None = None, port: int | None = None) -> bool:
        """Connect to ``node`` unless connected (``net_kernel:connect_node/1``).

        The address is ``host``/``port`` when given, else what the configured
        discovery resolves. Returns whether the node is connected afterwards;
        failures are logged with their cause, never raised (as Erlang's
        ``connect_node`` returns ``false``): :meth:`last_connect_failure`
        says why.

        Raises:
            RuntimeStateError: the node is not initialized (a ``False`` here
                would come with no failure to explain it).
        """
        split_node_name(node)
        if node == self._node_name:
            return True
        table = self.connections
        if self._closed or self._stopping:
            return False
        return await table.connect(node, host, port)

    def add_address(self, node: str, host: str, port: int) -> None:
        """Remember where ``node`` listens, for auto-connect without discovery.

        ``connect(node, host, port)`` remembers its address the same way.
        """
        split_node_name(node)
        self.connections.addresses[node] = (host, int(port))

    def last_connect_failure(self, node: str) -> ConnectFailure | None:
        """Why the last attempt to connect to ``node`` failed, as data, if it did."""
        return self._table.failure(node) if self._table is not None else None

    def connect_failure(self, node: str) -> str | None:
        """Why the last attempt to connect to ``node`` failed (a sentence), if it did."""
        failure = self.last_connect_failure(node)
        return failure.detail if failure is not None else None

    def connect_refusal(self, node: str) -> str | None:
        """The handshake refusal that ended the last failed attempt on ``node``, if any.

        One of ``bad_cookie``, ``not_allowed``, ``duplicate_name``,
        ``version_mismatch``, ``simultaneous_lost``, ``setup_timeout``,
        ``protocol_error`` or ``tls``; ``None`` for other failures (see
        :meth:`last_connect_failure` for every reason).
        """
        failure = self.last_connect_failure(node)
        if failure is None:
            return None
        if failure.reason == "wrong_node":
            return "not_allowed"  # our own refusal of a node that is not the one dialed
        if failure.reason in REFUSAL_REASONS or failure.reason == "tls":
            return failure.reason
        return None

    async def _resolve(self, node: str) -> tuple[str, int] | None:
        if self._discovery is None:
            return None
        return await self._discovery.resolve(node)

    async def disconnect(self, node: str) -> bool:
        """Close the connection to ``node`` (``disconnect_node/1``).

        Links and monitors across it fire with ``noconnection``; subscribers
        see ``nodedown`` with reason ``disconnect``. Returns whether there was
        a connection.
        """
        return self._table is not None and await self._table.disconnect(node)

    def _on_discovery_event(self, event: DiscoveryEvent) -> None:
        if (
            self._auto_connect
            and isinstance(event, NodeAppeared)
            and event.name != self._node_name
            and event.name not in self.nodes(hidden=True)
            and not self._stopping
        ):
            self._spawn_background(self.connect(event.name, event.host, event.port))

    # ---------------------------------------------------------- statistics

    def peer_statistics(self) -> list[PeerStatistics]:
        """A snapshot of every connection, up or handshaking, hidden peers included."""
        return self._table.peer_statistics() if self._table is not None else []

    def node_statistics(self) -> NodeStatistics:
        """Counts of nodeups, nodedowns and handshake refusals by reason, and spin sessions."""
        if self._table is None:
            return NodeStatistics(nodeups=0, nodedowns={}, refusals={})
        return self._table.node_statistics()

    # ------------------------------------------------------ node monitoring

    async def monitor_node(self, node: str, flag: bool = True) -> None:
        """Deliver ``(nodedown, node)`` to the caller when ``node`` goes down.

        As ``erlang:monitor_node/2``: tries to connect first, and delivers
        ``nodedown`` at once if that fails. Each call with ``flag=True`` adds
        one notification; ``flag=False`` removes one.
        """
        proc = self._caller("monitor_node")
        monitors = self._node_monitors
        assert monitors is not None
        if not flag:
            monitors.remove_node(node, proc.pid)
            return
        if not await self.connect(node):
            self._messages += 1
            proc.deliver((NODEDOWN, node))
            return
        monitors.add_node(node, proc.pid)

    async def monitor_nodes(self, flag: bool = True) -> None:
        """Subscribe the caller to ``(nodeup, node)`` and ``(nodedown, node, info)``.

        As ``net_kernel:monitor_nodes/2`` with ``nodedown_reason``: ``info``
        is ``{"reason": reason}`` with reason ``connection_closed``,
        ``net_tick_timeout``, ``disconnect``, ... The subscription ends with
        the process.
        """
        pid = self._caller("monitor_nodes").pid
        assert self._node_monitors is not None
        self._node_monitors.subscribe(pid, flag)

    # ---------------------------------------------------------------- rpc

    async def rpc(self, node: str, op: str, arg: Any = None, timeout: float = 10.0) -> Any:
        """Ask ``node`` itself something (``ping``, ``nodes``, ``processes``,
        ``statistics``, ``stop``): what the ``otpy-node`` subcommands use.

        Raises:
            NodeUnreachable: no connection could be made, or it was lost.
            RpcError: the node answered with an error (``.reason`` says why).
            TimeoutError: no answer within ``timeout``.
        """
        if not await self.connect(node):
            raise NodeUnreachable(node, "no connection could be made")
        conn = self.connections.up[node]
        ref = self.make_ref()
        fut = self._requests.add(node, ref)
        conn.send_control(control.NodeRpc(ref=ref, op=op, arg=encode_term(arg)))
        try:
            ok, result = await asyncio.wait_for(fut, timeout)
        finally:
            self._requests.discard(ref)
        if not ok:
            raise RpcError(node, op, result)
        return result

    async def ping(self, node: str) -> bool:
        """``net_adm:ping/1``: True (pong) when ``node`` answers, else False (pang)."""
        try:
            return bool(await self.rpc(node, "ping", timeout=self.setup_time) == "pong")
        except (NodeUnreachable, TimeoutError, RpcError):
            return False


#: The name this class had before ``Node``; kept so existing code runs.
DistributedBackend = Node


def this_node() -> Node:
    """The node running the calling process: node operations without an isinstance check.

    Raises:
        NotInProcessError: called from outside a process.
        TypeError: the process runs on a plain runtime, not a node.
    """
    from otpylib import process

    rt = process.runtime()
    if not isinstance(rt, Node):
        raise TypeError(
            "this process runs on a local runtime, not a node; start it on an "
            "otpylib_dist.Node to use node operations"
        )
    return rt
