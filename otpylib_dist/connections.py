"""The connection table: net_kernel's job of deciding which connections exist.

Theory of operation
-------------------
At most one connection per peer node is *up*. The table holds, per peer:

- ``up``: the established connection (the peer is in ``nodes()``);
- ``connecting``: our own dial in progress (one future all callers share);
- handshaking connections (dialed or accepted, not yet up);
- the last address and the last failure (a ``ConnectFailure`` record).

Admission (``admit``, on a peer's Hello) and the simultaneous-connect
tie-break live here, as in net_kernel: when both nodes dial at once, the
node with the greater name keeps its own attempt and refuses the other's
with ``simultaneous_lost``; the loser waits for the winner's attempt. A
Hello from a node already connected is let through when it comes from the
same incarnation (the peer lost the connection before we noticed, as after
a one-sided partition) or from a new one whose old connection has gone
silent (a restarted node): the new connection replaces the old once
authenticated, links and monitors across the old one firing
``noconnection`` first. The dialer confirms at the challenge that it still
has no connection to us (Erlang's ``alive`` status exchange), so a dial
racing a connection that just came up stops there. A live twin under the
same name (another creation, not silent) is refused with ``duplicate_name``.

Connection life cycle (per peer node)::

    (none) --connect()/accept--> handshaking --handshake ok--> up
       ^                             |                          |
       +---- refused / timeout ------+                          |
       +------------ socket closed / tick timeout / disconnect -+

*Up* fires ``nodeup`` for ``monitor_nodes`` subscribers before the peer's
first control message is dispatched. *Down* fires every link and monitor
across the connection with ``noconnection`` (``RuntimeEntry.node_lost``),
fails pending requests to that node, then delivers ``nodedown`` after the
last message from that peer.

The table is the ``ConnectionOwner`` of every connection: connections
report to it and never reach into the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from otpylib.runtime.atoms import NOCONNECTION
from otpylib.runtime.backends.base import RuntimeEntry
from otpylib_dist.connection import (
    CONNECTION_CLOSED,
    DISCONNECT,
    Connection,
    ConnectionSettings,
)
from otpylib_dist.errors import CONNECT_FAILURE_REASONS, ConnectFailure, ConnectFailureReason
from otpylib_dist.names import split_node_name
from otpylib_dist.node_monitors import NodeMonitors
from otpylib_dist.protocol import control
from otpylib_dist.protocol.errors import RefusalReason
from otpylib_dist.protocol.handshake import Flags, Role, simultaneous_winner
from otpylib_dist.refusal_log import log_refusal
from otpylib_dist.remote_requests import PendingRequests
from otpylib_dist.statistics import NodeStatistics, PeerStatistics

if TYPE_CHECKING:
    from otpylib_dist.tls import TlsConfig

logger = logging.getLogger(__name__)

__all__ = ["ConnectionTable"]

#: Nodes taken from one Peers message: a peer cannot make us dial without
#: bound (and a cluster larger than this meshes in more than one step).
_MAX_PEERS_TOLD = 1024

#: Finds a node's address (the configured discovery); ``None``: unknown.
Resolver = Callable[[str], Awaitable[tuple[str, int] | None]]
#: Runs one control message (the control handlers).
Dispatcher = Callable[[Connection, control.ControlMessage], None]


class ConnectionTable:
    """Every connection of one node, and the rules that decide which may exist.

    Attributes:
        settings: what each connection needs to know about this node.
        entry: the runtime's entry points (connections deliver through it).
        up: node name -> its established connection.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        entry: RuntimeEntry,
        *,
        monitors: NodeMonitors,
        requests: PendingRequests,
        dispatcher: Dispatcher,
        resolve: Resolver,
        tls: TlsConfig | None = None,
        up: dict[str, Connection] | None = None,
    ) -> None:
        self.settings = settings
        self.entry = entry
        self._monitors = monitors
        self._requests = requests
        self._dispatcher = dispatcher
        self._resolve = resolve
        self._tls = tls
        #: The connections that are up, by node. ``up``: the dict to keep
        #: them in, shared with the router (its ``channels``, which the
        #: runtime reads on every remote send).
        self.up: dict[str, Connection] = {} if up is None else up
        #: Connections whose handshake is under way (dialed or accepted).
        self._handshaking: set[Connection] = set()
        #: Our own dials in progress, by node: every caller awaits the same one.
        self._connecting: dict[str, asyncio.Future[bool]] = {}
        #: Futures resolved when a node comes up (a dial waiting for a winner).
        self._up_waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: Where each node was last reached or announced.
        self.addresses: dict[str, tuple[str, int]] = {}
        #: Why the last attempt on each node failed (cleared on success).
        self._failures: dict[str, ConnectFailure] = {}
        self._background: set[asyncio.Task[Any]] = set()
        #: No new connections: the node is stopping.
        self.stopping = False
        # Observability counters (node_statistics(): metrics, stats).
        self._nodeups = 0
        self._nodedowns: dict[str, int] = {}
        self._refusal_counts: dict[str, int] = {}  # handshake refusals, by reason
        #: The last connect failure logged per node (repeats go to debug).
        self._last_logged: dict[str, str] = {}

    # ------------------------------------------------------------ queries

    def nodes(self, *, hidden: bool = False) -> list[str]:
        """Nodes connected now; with ``hidden=True`` also hidden ones."""
        return [n for n, c in self.up.items() if hidden or not c.peer_hidden]

    def failure(self, node: str) -> ConnectFailure | None:
        """Why the last attempt to connect to ``node`` failed, if it did."""
        return self._failures.get(node)

    def peer_statistics(self) -> list[PeerStatistics]:
        """A snapshot of every connection, up or handshaking, hidden peers included."""
        return [c.statistics() for c in [*self.up.values(), *self._handshaking]]

    def node_statistics(self) -> NodeStatistics:
        """Counts of nodeups, nodedowns and handshake refusals by reason, and spin sessions."""
        busy = self.settings.busy_wait
        return NodeStatistics(
            nodeups=self._nodeups,
            nodedowns=dict(self._nodedowns),
            refusals=dict(self._refusal_counts),
            spin_sessions=busy.sessions,
            spin_sessions_starved=busy.starved_sessions,
        )

    def is_idle(self) -> bool:
        """Nothing in flight: no handshakes, dials or waiters (for leak tests)."""
        return not (self._handshaking or self._connecting or self._up_waiters)

    # ------------------------------------------------------------ dialing

    def acceptor(self) -> Connection:
        """A connection for an incoming socket (the listening server's protocol factory)."""
        return Connection(self, Role.ACCEPTOR, tls=self._tls.server if self._tls else None)

    async def connect(self, node: str, host: str | None = None, port: int | None = None) -> bool:
        """Connect to ``node`` unless connected; whether it is connected afterwards.

        Concurrent callers share one attempt. Failures are recorded
        (:meth:`failure`) and logged, never raised.
        """
        if node in self.up:
            return True
        if self.stopping:
            return False
        attempt = self._connecting.get(node)
        if attempt is None:
            attempt = asyncio.get_running_loop().create_future()
            self._connecting[node] = attempt
            self._in_background(self._connect(node, host, port, attempt))
        return await asyncio.shield(attempt)

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the table keeps (close_all cancels what is left)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fail(
        self, node: str, reason: ConnectFailureReason, detail: str, address: str | None
    ) -> None:
        self._failures[node] = ConnectFailure(node, reason, detail, address)

    def _failure_level(self, node: str, reason: str) -> int:
        """WARNING the first time ``node`` fails for ``reason``, DEBUG while it repeats.

        A caller retrying (``otpy-node --connect`` waits for a node to come
        up) would otherwise log the same line at every attempt.
        """
        if self._last_logged.get(node) == reason:
            return logging.DEBUG
        if len(self._last_logged) >= _MAX_PEERS_TOLD:
            self._last_logged.clear()
        self._last_logged[node] = reason
        return logging.WARNING

    async def _connect(
        self, node: str, host: str | None, port: int | None, attempt: asyncio.Future[bool]
    ) -> None:
        # Report this attempt only: a timeout now must not come with an older refusal.
        self._failures.pop(node, None)
        ok = False
        try:
            ok = await self._dial(node, host, port)
        except Exception as exc:  # a bug: keep the node running, say what happened
            self._fail(node, "error", f"{type(exc).__name__}: {exc}", None)
            logger.exception("connecting to %s failed", node)
        finally:
            if self._connecting.get(node) is attempt:
                del self._connecting[node]
            if not attempt.done():
                attempt.set_result(ok or node in self.up)

    async def _address(
        self, node: str, host: str | None, port: int | None
    ) -> tuple[str, int] | None:
        if host is not None and port is not None:
            self.addresses[node] = (host, port)
            return host, port
        known = self.addresses.get(node) or await self._resolve(node)
        if known is None:
            return None
        return host or known[0], port or known[1]

    async def _dial(self, node: str, host: str | None, port: int | None) -> bool:
        address = await self._address(node, host, port)
        if address is None:
            self._fail(
                node,
                "no_address",
                "no address known (give host and port, or configure discovery)",
                None,
            )
            logger.log(
                self._failure_level(node, "no_address"),
                "cannot connect to %s: no address known",
                node,
                extra={"event": "connect_failed", "peer": node, "reason": "no_address"},
            )
            return False
        where = f"{address[0]}:{address[1]}"
        loop = asyncio.get_running_loop()
        up = loop.create_future()
        self._up_waiters.setdefault(node, []).append(up)
        try:
            try:
                # The TCP connect is the one phase before a Connection exists;
                # from connection_made on, the connection's own timer rules.
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: Connection(
                            self,
                            Role.INITIATOR,
                            expected_peer=node,
                            tls=self._tls.client if self._tls else None,
                            server_hostname=split_node_name(node)[1],
                        ),
                        address[0],
                        address[1],
                    ),
                    self.settings.setup_time,
                )
            except TimeoutError:
                detail = f"no connection within {self.settings.setup_time:.1f} s"
                self._fail(node, "timeout", detail, where)
                logger.log(
                    self._failure_level(node, "timeout"),
                    "connection to %s (%s) timed out: %s",
                    node,
                    where,
                    detail,
                    extra={"event": "connect_failed", "peer": node, "reason": "timeout"},
                )
                return False
            except OSError as exc:
                os_reason, why = _os_failure(exc, tls=self._tls is not None)
                self._fail(node, os_reason, why, where)
                logger.log(
                    self._failure_level(node, os_reason),
                    "cannot connect to %s (%s): %s",
                    node,
                    where,
                    exc,
                    extra={"event": "connect_failed", "peer": node, "reason": os_reason},
                )
                return False
            # This connection, or the peer's own attempt that won a
            # simultaneous connect, comes up; or this one fails.
            await asyncio.wait([up, conn.closed], return_when=asyncio.FIRST_COMPLETED)
            if node in self.up:
                return True
            refusal = conn.refusal
            if refusal == "simultaneous_lost" or (
                refusal == "duplicate_name" and self._connected_or_connecting(node)
            ):
                # The other side's attempt is the one that lives on; it may
                # not have reached us yet, so wait up to one setup time.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(up), self.settings.setup_time)
                if node in self.up:
                    return True
            reason: ConnectFailureReason
            detail = conn.failure or (
                "the peer closed the connection during the handshake (its log says why)"
            )
            if refusal == "setup_timeout":
                # A step missed its deadline: to the caller, no connection in time.
                reason = "timeout"
                detail = f"no connection within {self.settings.setup_time:.1f} s"
            elif refusal is not None and refusal in CONNECT_FAILURE_REASONS:
                reason = refusal  # type: ignore[assignment]
            else:
                reason = "closed"
            self._fail(node, reason, detail, where)
            return False
        finally:
            waiters = self._up_waiters.get(node)
            if waiters is not None and up in waiters:
                waiters.remove(up)
                if not waiters:
                    del self._up_waiters[node]

    async def disconnect(self, node: str) -> bool:
        """Close the connection to ``node``; whether there was one."""
        conn = self.up.get(node)
        if conn is None:
            return False
        conn.close(DISCONNECT)
        await conn.closed
        return True

    async def close_all(self, timeout: float) -> None:
        """Close every connection (node shutdown) and wait up to ``timeout`` for them."""
        self.stopping = True
        conns = list(self.up.values()) + list(self._handshaking)
        for conn in conns:
            conn.close(DISCONNECT)
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=timeout)
        for task in list(self._background):
            task.cancel()

    # ------------------------------------------- the ConnectionOwner side

    def handshake_started(self, conn: Connection) -> None:
        """A socket is connected; its handshake begins."""
        self._handshaking.add(conn)

    def admit(self, conn: Connection, peer: str, creation: int) -> RefusalReason | None:
        """Decide on a peer's Hello: ``None`` to go on, else a refusal reason."""
        if self.stopping:
            return "not_allowed"
        # A Hello comes before authentication: anyone can send one naming any
        # node, so these lines go through the rate-limited, non-blocking log.
        if peer == self.settings.name:
            log_refusal(logger, conn.address, "refusing a node that claims our own name %s", peer)
            return "duplicate_name"
        existing = self.up.get(peer)
        if existing is not None:
            if existing.peer_creation == creation:
                # The same incarnation dials again, so it has no connection to
                # us: ours is stale (it noticed a partition we did not). Go on;
                # the dialer checks again when it answers our challenge
                # (is_connected), and the new connection replaces the old one
                # once authenticated: Erlang's "alive" exchange.
                return None
            # A new creation under a connected name: either the peer restarted
            # and its old connection has not timed out yet, or a second node
            # runs under that name. A live peer is heard from at least every
            # net_ticktime/4 (ticks); one silent for half of net_ticktime is
            # taken for dead, and the new connection replaces it once
            # authenticated (connection_up), as Erlang lets a restarted node in.
            silent = asyncio.get_running_loop().time() - existing.last_heard
            if silent < self.settings.net_ticktime / 2:
                log_refusal(
                    logger,
                    conn.address,
                    "refusing a second node named %s (creation %d): the connected one "
                    "(creation %d) is alive",
                    peer,
                    creation,
                    existing.peer_creation,
                )
                return "duplicate_name"
        if peer in self._connecting and simultaneous_winner(self.settings.name, peer):
            return "simultaneous_lost"
        return None

    def is_connected(self, peer: str | None) -> bool:
        """Whether a connection to ``peer`` is up (a dial then stops at the challenge)."""
        return peer is not None and peer in self.up

    def is_benign_refusal(self, peer: str | None, reason: RefusalReason) -> bool:
        """A refusal that only means another connection to ``peer`` won a race."""
        return reason == "simultaneous_lost" or (
            reason == "duplicate_name" and self._connected_or_connecting(peer)
        )

    def _connected_or_connecting(self, peer: str | None) -> bool:
        """Whether a connection to ``peer`` is up or another handshake with it is under way."""
        if peer is None:
            return False
        if peer in self.up:
            return True
        return any(c.handshake_peer == peer and c.role is Role.ACCEPTOR for c in self._handshaking)

    def connection_up(self, conn: Connection) -> bool:
        """A handshake finished. ``False`` if a connection to that node already exists."""
        self._handshaking.discard(conn)
        peer = conn.peer_name
        if peer is None or self.stopping:
            return False
        existing = self.up.get(peer)
        if existing is not None:
            if existing.peer_creation == conn.peer_creation:
                if conn.role is Role.INITIATOR:
                    return False  # we dialed while connected: keep the one we have
                logger.warning(
                    "node %s connected again; its old connection is stale (it saw the link "
                    "fail before we did): replacing it",
                    peer,
                )
            else:
                logger.warning(
                    "node %s restarted (creation %d -> %d); dropping the connection to the old one",
                    peer,
                    existing.peer_creation,
                    conn.peer_creation,
                )
            # Links and monitors across the old connection fire noconnection,
            # and subscribers see nodedown, before the new one is up.
            self.connection_ended(existing, CONNECTION_CLOSED)
            existing.close(CONNECTION_CLOSED)
        self.up[peer] = conn
        self._failures.pop(peer, None)
        self._last_logged.pop(peer, None)
        self._nodeups += 1
        # A hidden node (an `otpy-node ping` and friends) is a tool passing by: debug.
        logger.log(
            logging.DEBUG if conn.peer_hidden else logging.INFO,
            "nodeup %s (via %s)",
            peer,
            conn.address,
            extra={"event": "nodeup", "peer": peer, "address": conn.address},
        )
        self._monitors.nodeup(peer, visible=not conn.peer_hidden)
        for up in self._up_waiters.pop(peer, []):
            if not up.done():
                up.set_result(None)
        self._tell_peers(conn)
        return True

    # ---------------------------------------------------------- connect_all

    def _tell_peers(self, conn: Connection) -> None:
        """Tell a new visible peer where we listen and which visible nodes we know."""
        if self.settings.hidden or conn.peer_hidden or not conn.peer_flags & Flags.PEERS:
            return
        known = [
            (name, *self.addresses.get(name, ("", 0)))
            for name, other in self.up.items()
            if other is not conn and not other.peer_hidden
        ]
        conn.send_control(control.Peers(self.settings.listen_port, known))

    def peers_received(self, conn: Connection, msg: control.Peers) -> None:
        """A peer told us where it listens and which nodes it knows: connect to the rest.

        Addresses are learned (where we had none); with ``connect_all`` the
        nodes not connected yet are dialed in the background. The
        simultaneous-connect tie-break keeps one connection per pair when
        two nodes learn of each other at once.
        """
        peer = conn.peer_name
        if peer is None:
            return
        host = conn.address.rpartition(":")[0].strip("[]")
        if msg.port and host and peer not in self.addresses:
            self.addresses[peer] = (host, msg.port)
        for name, other_host, port in msg.nodes[:_MAX_PEERS_TOLD]:
            if name == self.settings.name or name == peer:
                continue
            if port and other_host and name not in self.addresses:
                self.addresses[name] = (other_host, port)
            if self.settings.connect_all and name not in self.up and not self.stopping:
                self._in_background(self.connect(name))

    def connection_ended(self, conn: Connection, reason: Any) -> None:
        """A connection ended; for the up one, fire everything across it."""
        self._handshaking.discard(conn)
        if not conn.was_up and conn.refusal is not None:
            counts = self._refusal_counts
            counts[conn.refusal] = counts.get(conn.refusal, 0) + 1
        peer = conn.peer_name
        if peer is None or self.up.get(peer) is not conn:
            return
        del self.up[peer]
        self._nodedowns[str(reason)] = self._nodedowns.get(str(reason), 0) + 1
        logger.log(
            logging.DEBUG if conn.peer_hidden else logging.INFO,
            "nodedown %s: %s",
            peer,
            reason,
            extra={"event": "nodedown", "peer": peer, "reason": str(reason)},
        )
        self.entry.node_lost(peer, NOCONNECTION)
        self._requests.fail_node(peer, reason)
        self._monitors.nodedown(peer, reason, visible=not conn.peer_hidden)

    @property
    def dispatch(self) -> Dispatcher:
        """Acts on one control message from a connection's peer (no awaits).

        The dispatcher itself, not a method calling it: a connection binds it
        once and calls it with no frame of the table's in between.
        """
        return self._dispatcher


def _os_failure(exc: OSError, *, tls: bool) -> tuple[ConnectFailureReason, str]:
    """Sort an OS error on connect into a failure reason, by errno and type (not by text)."""
    detail = str(exc.strerror or exc) or type(exc).__name__
    if tls and isinstance(exc, ssl.SSLError | ConnectionResetError):
        return "tls", f"TLS handshake failed: {detail}"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused", detail
    return "unreachable", detail
