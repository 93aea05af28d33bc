"""One connection to one peer node: moves bytes, holds no protocol logic.

House rules (after h11 and Trio's ``StrictFIFOLock`` lesson):

- The protocol lives in ``protocol/`` (handshake core, framing, control
  codec, ticker). This module feeds them bytes and writes what they return.
- Every interaction with a core happens in one step with no ``await`` in
  between; the only awaits are in ``drain`` (backpressure).
- Reads live in ``incoming.py`` (the ``Incoming`` mixin): asyncio hands
  us whatever the socket had; every complete frame in it is decoded and
  delivered or dispatched in the same step, in order.
- Writes live in ``outgoing.py`` (the ``Outgoing`` mixin): one buffer per
  loop step written with one ``transport.write``, run frames, fragments
  for large messages, ``drain`` for backpressure.
- Every way a connection ends maps to exactly one reason, passed to the
  owner: ``connection_closed`` (peer closed or socket error),
  ``net_tick_timeout`` (peer silent), ``disconnect`` (we closed it),
  ``protocol_error`` (peer sent something illegal), ``setup_timeout`` or a
  handshake refusal (never up, so no nodedown).
- A connection never reaches into the node: it reports to its *owner*
  (the connection table, ``connections.py``) through the small
  ``ConnectionOwner`` Protocol below, and delivers the messages it reads
  through the runtime's ``RuntimeEntry``.
- One setup timer per connection, re-armed at the handshake's own deadline
  after every step (``Handshake.deadline``): the deadline is per step, as
  dist_util's setup timer, so a slow but live peer gets through and a stuck
  one fails at the step where it stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from otpylib.runtime.atoms import Atom, atom
from otpylib.runtime.backends.base import RuntimeEntry
from otpylib_dist.busy_wait import BusyWait
from otpylib_dist.incoming import PROTOCOL_ERROR, Incoming
from otpylib_dist.outgoing import Outgoing
from otpylib_dist.protocol import control
from otpylib_dist.protocol.errors import (
    HandshakeRefused,
    ProtocolError,
    RefusalReason,
)
from otpylib_dist.protocol.fragments import (
    DEFAULT_MAX_MESSAGE,
    FRAGMENT_ABOVE,
    Reassembly,
)
from otpylib_dist.protocol.framing import (
    DEFAULT_MAX_FRAME,
    TICK_FRAME,
    FrameReader,
)
from otpylib_dist.protocol.handshake import (
    DEFAULT_SETUP_TIME,
    NEED_DATA,
    Established,
    Flags,
    Handshake,
    Hello,
    Role,
)
from otpylib_dist.protocol.ticks import DEFAULT_NET_TICKTIME, TickAction, Ticker
from otpylib_dist.protocol.tls_layer import TlsLayer
from otpylib_dist.refusal_log import log_refusal
from otpylib_dist.statistics import PeerStatistics
from otpylib_dist.tick_guard import GuardedLink, bytes_waiting, guard

logger = logging.getLogger(__name__)

__all__ = [
    "CONNECTION_CLOSED",
    "DISCONNECT",
    "NET_TICK_TIMEOUT",
    "PROTOCOL_ERROR",
    "SETUP_TIMEOUT",
    "Connection",
    "ConnectionOwner",
    "ConnectionSettings",
    "Role",
]

#: The transport's own write-buffer limits (kernel buffer full -> pause).
TRANSPORT_HIGH_WATER: Final = 4 << 20
TRANSPORT_LOW_WATER: Final = 1 << 20

# How a connection ends: exactly one of these per connection (the nodedown
# reasons of net_kernel, plus the two that end a connection never up).
#: The peer closed the connection, or the socket failed.
CONNECTION_CLOSED: Final = atom.ensure("connection_closed")
#: We closed it (``disconnect``, node shutdown).
DISCONNECT: Final = atom.ensure("disconnect")
#: The peer was silent for net_ticktime.
NET_TICK_TIMEOUT: Final = atom.ensure("net_tick_timeout")
#: A handshake step did not finish by its deadline.
SETUP_TIMEOUT: Final = atom.ensure("setup_timeout")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What every connection of one node needs to know about it.

    Attributes:
        name: our node name; creation: our incarnation; cookie: the secret.
        hidden: we are a hidden node (tools).
        setup_time: seconds per handshake step (and for TCP/TLS set-up).
        net_ticktime: a peer silent this long is down.
        busy_wait: the node's busy-wait poker (``busy_wait.py``).
        listen_port: where this node accepts connections (told to peers).
        connect_all: connect to the nodes peers tell us of (Erlang's default).
        max_message_size: largest message sent or reassembled (``fragments.py``).
    """

    name: str
    creation: int
    cookie: str
    hidden: bool = False
    setup_time: float = DEFAULT_SETUP_TIME
    net_ticktime: float = DEFAULT_NET_TICKTIME
    busy_wait: BusyWait = field(default_factory=lambda: BusyWait(0.0))
    listen_port: int = 0
    connect_all: bool = True
    max_message_size: int = DEFAULT_MAX_MESSAGE


class ConnectionOwner(Protocol):
    """What a connection reports to, and asks of, whoever owns it (the connection table).

    All calls are synchronous and made from the connection's callbacks.
    """

    settings: ConnectionSettings
    entry: RuntimeEntry

    def handshake_started(self, conn: Connection) -> None:
        """A socket is connected and the handshake begins."""

    def admit(self, conn: Connection, peer: str, creation: int) -> RefusalReason | None:
        """Decide on a peer's Hello: ``None`` to go on, else the refusal to send."""

    def is_connected(self, peer: str | None) -> bool:
        """Whether a connection to ``peer`` is up: a dial then stops before proving itself."""

    def is_benign_refusal(self, peer: str | None, reason: RefusalReason) -> bool:
        """Whether a refusal of our attempt is a race another connection won (log at info)."""

    def connection_up(self, conn: Connection) -> bool:
        """The handshake finished; ``False`` means a connection to that node already exists."""

    def connection_ended(self, conn: Connection, reason: Any) -> None:
        """The connection is gone (up or not) with ``reason``."""

    def dispatch(self, conn: Connection, msg: control.ControlMessage) -> None:
        """Act on one control message other than Send/RegSend (no awaits)."""


class Connection(Incoming, Outgoing, asyncio.Protocol):
    """An asyncio protocol for one node-to-node connection.

    Attributes:
        role: who dialed.
        expected_peer: for an initiator, the node we meant to reach.
        peer_name, peer_creation, peer_hidden: known once the handshake is done.
        refusal: the handshake refusal reason, if it was refused.
        closed: a future resolved when the connection is gone.
        address: the peer's ``host:port`` (for logs).
    """

    def __init__(
        self,
        owner: ConnectionOwner,
        role: Role,
        expected_peer: str | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self._owner = owner
        self._settings = owner.settings
        self._entry = owner.entry
        self.role = role
        self._busy = owner.settings.busy_wait
        self._tls_broken = False
        self._tls = (
            TlsLayer(tls, server_side=role is Role.ACCEPTOR, server_hostname=server_hostname)
            if tls is not None
            else None
        )
        self.expected_peer = expected_peer
        self.peer_name: str | None = None
        self.peer_creation = -1
        self.peer_hidden = False
        #: The peer's capability flags (``protocol.handshake.Flags``), once up.
        self.peer_flags = 0
        self.refusal: str | None = None
        self.failure: str | None = None
        self.address = "?"
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        #: Loop time of the last bytes from the peer (a restarted peer's old
        #: connection goes silent; see ConnectionTable.admit).
        self.last_heard = self._loop.time()
        #: The peer's address as ``host:port`` (for logs and failure records).
        self._transport: asyncio.Transport | None = None
        self._handshake: Handshake | None = None
        self._reader: FrameReader | None = None
        self._decoder = control.ControlDecoder()
        #: The large message coming in (fragments), once both ends set Flags.FRAGMENTS.
        self._reassembly: Reassembly | None = None
        self._up = False
        self._close_reason: Any = None
        self._setup_timer: asyncio.TimerHandle | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._ticker: Ticker | None = None
        self._bytes_in = 0
        # Observability counters (read by statistics(); plain ints).
        self._messages_in = 0
        self._ticks_missed = 0
        self._up_since = 0.0
        self._guard: GuardedLink | None = None
        self._init_outgoing()

    # ------------------------------------------------------------ handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.address = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._owner.handshake_started(self)
        # TCP is up; TLS and the first handshake step get one setup time.
        self._arm_setup_timer(time.monotonic() + self._settings.setup_time)
        self._transport = transport
        transport.set_write_buffer_limits(high=TRANSPORT_HIGH_WATER, low=TRANSPORT_LOW_WATER)
        if self._tls is not None:
            # The cookie handshake starts once TLS is up (see _tls_data).
            self._write_wire(self._tls.start())
            return
        self._begin()

    def _begin(self) -> None:
        """Start the cookie handshake (on a connected and, with TLS, secured stream)."""
        settings = self._settings
        self._handshake = hs = Handshake(
            role=self.role,
            name=settings.name,
            creation=settings.creation,
            cookie=settings.cookie,
            nonce=secrets.token_bytes(32),
            now=time.monotonic(),
            hidden=settings.hidden,
            expected_peer=self.expected_peer,
            setup_time=settings.setup_time,
            flags=Flags.PEERS | Flags.RUNS | Flags.FRAGMENTS | Flags.MONITOR_SEND,
        )
        self._write_raw(hs.start())
        self._arm_setup_timer(hs.deadline)

    def _tls_data(self, tls: TlsLayer, data: bytes) -> bytes | None:
        """Decrypt ``data``; ``None`` when there is nothing (more) to act on."""
        was_up = tls.established
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:
            why = str(exc) or type(exc).__name__
            self.refusal = "tls"
            self.failure = f"TLS handshake failed: {why}" if not was_up else f"TLS error: {why}"
            log_refusal(
                logger,
                self.address,
                "closing the connection with %s (%s): %s",
                self.expected_peer or "incoming peer",
                self.address,
                self.failure,
                extra=self._fields("tls_failed", "tls"),
            )
            # The TLS session is dead: frames queued this step cannot go out.
            self._out.clear()
            self._encoder.discard_run()
            self._tls_broken = True
            self._write_wire(tls.data_to_send())
            self.close(PROTOCOL_ERROR)
            return None
        self._write_wire(tls.data_to_send())
        if tls.established and not was_up:
            self._begin()
        return plain or None

    def _arm_setup_timer(self, deadline: float) -> None:
        """(Re)start the one setup timer so that it fires at ``deadline`` (monotonic)."""
        if self._setup_timer is not None:
            self._setup_timer.cancel()
        delay = max(0.0, deadline - time.monotonic())
        self._setup_timer = self._loop.call_later(delay, self._setup_timeout)

    def _setup_timeout(self) -> None:
        """The setup timer fired: fail the step that is late, or re-arm if it moved."""
        self._setup_timer = None
        if self._up or self._transport is None:
            return
        hs = self._handshake
        if hs is not None:
            try:
                hs.check_timeout(time.monotonic())
            except HandshakeRefused:
                pass
            else:
                self._arm_setup_timer(hs.deadline)  # a step completed meanwhile
                return
        log_refusal(
            logger,
            self.address,
            "handshake with %s (%s) did not finish a step within %.1f s; closing",
            self.expected_peer or "incoming peer",
            self.address,
            self._settings.setup_time,
            extra=self._fields("handshake_refused", "setup_timeout"),
        )
        self.refusal = "setup_timeout"
        self.failure = f"no progress for {self._settings.setup_time:g} s during the handshake"
        self.close(SETUP_TIMEOUT)

    def _handshake_data(self, data: bytes) -> None:
        hs = self._handshake
        assert hs is not None
        try:
            hs.receive_data(data)
            while not self._up and self._transport is not None:
                event = hs.next_event(time.monotonic())
                if event is NEED_DATA:
                    break
                if isinstance(event, Hello):
                    refusal = self._owner.admit(self, event.name, event.creation)
                    if refusal is not None:
                        self.refusal = refusal
                        log_refusal(
                            logger,
                            self.address,
                            "refusing %s from %s: %s",
                            event.name,
                            self.address,
                            refusal,
                            level=logging.INFO,
                            extra={
                                "event": "handshake_refused",
                                "peer": event.name,
                                "reason": refusal,
                                "address": self.address,
                            },
                        )
                        # Written, then closed gracefully: the dialer reads
                        # the reason (an abort could drop the Refused frame).
                        self._write_raw(hs.refuse(refusal))
                        self.close(DISCONNECT)
                        return
                    self._write_raw(hs.accept(time.monotonic()))
                elif isinstance(event, Established):
                    self._write_raw(hs.data_to_send())
                    self._established(event)
                    break
            if (
                not self._up
                and self.role is Role.INITIATOR
                and self._owner.is_connected(self.expected_peer)
            ):
                # Our answer to the peer's challenge would make it replace its
                # connection to us; but one came up meanwhile (the peer's own
                # dial won): stop here, silently, and keep that one.
                self.refusal = "duplicate_name"
                self.close(DISCONNECT)
                return
            self._write_raw(hs.data_to_send())
        except HandshakeRefused as exc:
            self.refusal = str(exc.reason)
            self.failure = str(exc)
            if exc.reason == "not_allowed" and not exc.by_peer:
                # We refused: the node that answered is not the one we dialed.
                self.refusal = "wrong_node"
                self.failure = exc.detail
            peer = self.expected_peer or hs.peer_name
            benign = self._owner.is_benign_refusal(peer, exc.reason)
            log_refusal(
                logger,
                self.address,
                "handshake with %s (%s) refused: %s",
                peer or "incoming peer",
                self.address,
                exc,
                level=logging.INFO if benign else logging.WARNING,
                extra={
                    "event": "handshake_refused",
                    "peer": peer,
                    "reason": str(exc.reason),
                    "address": self.address,
                },
            )
            # A refusal we make is written and the connection closed
            # gracefully, so the peer reads why (an abort could drop it).
            self._write_raw(hs.data_to_send())
            self.close(DISCONNECT if not exc.by_peer else PROTOCOL_ERROR)
            return
        except ProtocolError as exc:
            self.failure = str(exc)
            log_refusal(
                logger,
                self.address,
                "handshake with %s failed: %s",
                self.address,
                exc,
                extra=self._fields("handshake_failed", "protocol_error"),
            )
            self.close(PROTOCOL_ERROR)
            return
        if self._up:
            rest = hs.trailing_data()
            if rest:
                self._steady_data(rest)
        elif self._transport is not None:
            self._arm_setup_timer(hs.deadline)

    def _established(self, event: Established) -> None:
        self.peer_name = event.peer_name
        self.peer_creation = event.peer_creation
        self.peer_hidden = event.peer_hidden
        self.peer_flags = event.peer_flags
        self._runs = self._runs_now = bool(event.peer_flags & Flags.RUNS)
        self.monitor_sends = bool(event.peer_flags & Flags.MONITOR_SEND)
        if event.peer_flags & Flags.FRAGMENTS:
            limit = self._settings.max_message_size
            self._encoder.split_above(FRAGMENT_ABOVE, limit)
            self._reassembly = Reassembly(limit)
        if self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        if not self._owner.connection_up(self):
            logger.info("dropping a second connection to %s", self.peer_name)
            self.peer_name = None
            self.close(PROTOCOL_ERROR)
            return
        self._up = True
        self._up_since = self._loop.time()
        self._reader = FrameReader(DEFAULT_MAX_FRAME)
        self._start_ticking()

    # --------------------------------------------------------- steady state

    def data_received(self, data: bytes) -> None:
        self._bytes_in += len(data)
        self.last_heard = self._loop.time()
        self._busy.poke()
        if self._tls is not None:
            plain = self._tls_data(self._tls, data)
            if plain is None:
                return
            data = plain
        if self._up:
            self._steady_data(data)
        else:
            self._handshake_data(data)

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate, or ``None`` without TLS."""
        return self._tls.peer_certificate() if self._tls is not None else None

    # ----------------------------------------------------------------- ticks

    def _start_ticking(self) -> None:
        """Start the tick checks; plain TCP connections also get the stall guard thread."""
        self._ticker = Ticker(self._settings.net_ticktime)
        if self._tls is None and self._transport is not None:
            self._guard = guard(
                self._transport, self._wlock, self._ticker.interval, self.peer_name or "?"
            )
        self._schedule_tick()

    def _stop_ticking(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def _schedule_tick(self) -> None:
        assert self._ticker is not None
        self._tick_timer = self._loop.call_later(self._ticker.interval, self._tick)

    def _tick(self) -> None:
        ticker = self._ticker
        if ticker is None or self._transport is None:
            return
        if self._guard is not None:
            self._guard.loop_seen = time.monotonic()
        action = ticker.check(self._bytes_in, self._bytes_out, queue_empty=not self._out)
        if ticker.silent_checks >= 2:  # a live peer writes every other check at least
            self._ticks_missed += 1
        if action is TickAction.PEER_SILENT:
            waiting = bytes_waiting(self._transport.get_extra_info("socket"))
            if waiting:
                # The peer's bytes are in the kernel: it is alive, we were late.
                logger.info(
                    "node %s looked silent but %d bytes wait to be read; keeping it",
                    self.peer_name,
                    waiting,
                )
                ticker.heard()
                self._schedule_tick()
                return
            logger.warning(
                "node %s sent nothing for %.0f s (net_ticktime); declaring it down",
                self.peer_name,
                self._settings.net_ticktime,
                extra=self._fields("peer_silent", "net_tick_timeout"),
            )
            self.close(NET_TICK_TIMEOUT)
            return
        if action is TickAction.SEND_TICK:
            self._write_raw(TICK_FRAME)
        self._schedule_tick()

    # ----------------------------------------------------------------- close

    def close(self, reason: Atom | Any) -> None:
        """Close with ``reason`` (first reason wins); queued bytes are written first.

        Except what waits for the peer's acknowledgements: the rest of a large
        message going out in fragments, and the frames held behind it, are
        dropped with the connection (its senders' links and monitors across
        it fire ``noconnection`` as for any lost connection).
        """
        if self._close_reason is None:
            self._close_reason = reason
        if self._transport is not None:
            self._flush()
            if reason is NET_TICK_TIMEOUT or reason is PROTOCOL_ERROR:
                self._transport.abort()
            else:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed.done():
            return
        reason = self._close_reason if self._close_reason is not None else CONNECTION_CLOSED
        self._transport = None
        self._stop_ticking()
        for timer in (self._setup_timer, self._tick_timer, self._flush_handle):
            if timer is not None:
                timer.cancel()
        self._flush_handle = None  # no batch open: sends take the checked path
        self._out.clear()
        self._encoder.discard_run()
        self._outbox.clear()
        self._wake_drainers()
        self._owner.connection_ended(self, reason)
        if not self.closed.done():
            self.closed.set_result(None)

    def _fields(self, event: str, reason: str) -> dict[str, Any]:
        """Structured log fields for a record about this connection (``logformat.py``)."""
        return {
            "event": event,
            "peer": self.handshake_peer,
            "reason": reason,
            "address": self.address,
        }

    def statistics(self) -> PeerStatistics:
        """A snapshot of this connection's counters (``stats``, ``top``, metrics)."""
        now = self._loop.time()
        return PeerStatistics(
            peer=self.handshake_peer or "?",
            state="up" if self._up else "handshaking",
            hidden=self.peer_hidden,
            address=self.address,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            messages_in=self._messages_in,
            messages_out=self._messages_out + self._encoder.run_messages,
            ticks_missed=self._ticks_missed,
            seconds_since_heard=now - self.last_heard,
            connected_seconds=now - self._up_since if self._up else 0.0,
        )

    @property
    def was_up(self) -> bool:
        """The handshake finished (now or before the connection ended)."""
        return self._up

    @property
    def bytes_in(self) -> int:
        """Bytes read from the peer so far (for statistics)."""
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        """Bytes written to the peer so far (for statistics)."""
        return self._bytes_out

    @property
    def handshake_peer(self) -> str | None:
        """The node at the other end, as far as known (before and after the handshake)."""
        if self.peer_name is not None:
            return self.peer_name
        hs = self._handshake
        return self.expected_peer or (hs.peer_name if hs is not None else None)

    def __repr__(self) -> str:
        state = "up" if self._up else "handshaking"
        return f"<Connection {self.role.name} {self.peer_name or self.expected_peer} {state}>"
