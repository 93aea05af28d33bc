"""One connection to one peer node: moves bytes, holds no protocol logic.

House rules (after h11 and Trio's ``StrictFIFOLock`` lesson):

- The protocol lives in ``protocol/`` (handshake core, framing, control
  codec, ticker). This module feeds them bytes and writes what they return.
- Every interaction with a core happens in one step with no ``await`` in
  between; the only awaits are in ``drain`` (backpressure).
- Reads: asyncio hands us whatever the socket had; every complete frame in
  it is decoded and dispatched to the node in the same step, in order.
- Writes: control messages queued during one loop iteration are appended to
  one buffer and written with one ``transport.write`` (coalescing); a
  sender awaits ``drain`` only while the buffer is over the high-water mark
  or the transport has paused us (the ``FlowControlMixin`` pattern).
- Every way a connection ends maps to exactly one reason, passed to the
  node: ``connection_closed`` (peer closed or socket error),
  ``net_tick_timeout`` (peer silent), ``disconnect`` (we closed it),
  ``protocol_error`` (peer sent something illegal), ``setup_timeout`` or a
  handshake refusal (never up, so no nodedown).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

from otpylib.runtime.atoms import Atom, atom
from otpylib.runtime.data import Pid
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term
from otpylib_dist.protocol.control import RegSend, Send
from otpylib_dist.protocol.errors import (
    AtomLimitReached,
    HandshakeRefused,
    ProtocolError,
    RemoteProtocolError,
)
from otpylib_dist.protocol.framing import (
    DEFAULT_MAX_FRAME,
    TICK,
    TICK_FRAME,
    FrameReader,
)
from otpylib_dist.protocol.handshake import NEED_DATA, Established, Flags, Handshake, Hello
from otpylib_dist.protocol.handshake import Role as CoreRole
from otpylib_dist.protocol.ticks import TickAction, Ticker
from otpylib_dist.protocol.tls_layer import TlsLayer
from otpylib_dist.refusal_log import log_refusal
from otpylib_dist.tick_guard import GuardedLink, bytes_waiting, guard

if TYPE_CHECKING:
    from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = ["Connection", "Role"]

#: Bytes queued before a sender must await ``drain``. 1 MiB keeps a fast
#: sender busy for several write calls while bounding memory per peer.
HIGH_WATER: Final = 1 << 20
#: The transport's own write-buffer limits (kernel buffer full -> pause).
TRANSPORT_HIGH_WATER: Final = 4 << 20
TRANSPORT_LOW_WATER: Final = 1 << 20

CONNECTION_CLOSED: Final = atom.ensure("connection_closed")
NET_TICK_TIMEOUT: Final = atom.ensure("net_tick_timeout")
PROTOCOL_ERROR: Final = atom.ensure("protocol_error")
SETUP_TIMEOUT: Final = atom.ensure("setup_timeout")
#: Marks a payload that could not be decoded (``None`` is a valid payload).
_UNDECODABLE: Final = object()


class Role(enum.Enum):
    """Which side dialed: named after Erlang's dist_util entry points."""

    INITIATOR = "we_started"
    ACCEPTOR = "other_started"


class Connection(asyncio.Protocol):
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
        node: DistributedBackend,
        role: Role,
        expected_peer: str | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.node = node
        self.role = role
        self._busy = node.busy_wait
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
        self.refusal: str | None = None
        self.failure: str | None = None
        self.address = "?"
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        #: Loop time of the last bytes from the peer (a restarted peer's old
        #: connection goes silent; see DistributedBackend._check_incoming).
        self.last_heard = self._loop.time()
        self._transport: asyncio.Transport | None = None
        self._handshake: Handshake | None = None
        self._reader: FrameReader | None = None
        self._encoder = control.ControlEncoder()
        self._decoder = control.ControlDecoder()
        self._up = False
        self._out = bytearray()
        self._flush_handle: asyncio.Handle | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_reason: Any = None
        self._setup_timer: asyncio.TimerHandle | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._ticker: Ticker | None = None
        self._bytes_in = 0
        self._bytes_out = 0
        #: Held around every transport.write: the tick guard thread writes
        #: between frames only (see tick_guard.py).
        self._wlock = threading.RLock()
        self._guard: GuardedLink | None = None

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
        self.node._handshaking.add(self)
        self._setup_timer = self._loop.call_later(self.node.setup_time, self._setup_timeout)
        self._transport = transport
        transport.set_write_buffer_limits(high=TRANSPORT_HIGH_WATER, low=TRANSPORT_LOW_WATER)
        if self._tls is not None:
            # The cookie handshake starts once TLS is up (see _tls_data).
            self._write_wire(self._tls.start())
            return
        self._begin()

    def _begin(self) -> None:
        """Start the cookie handshake (on a connected and, with TLS, secured stream)."""
        node = self.node
        self._handshake = Handshake(
            role=CoreRole.INITIATOR if self.role is Role.INITIATOR else CoreRole.ACCEPTOR,
            name=node.node_name,
            creation=node.creation,
            cookie=node.cookie,
            nonce=_nonce(),
            now=time.monotonic(),
            hidden=node.hidden,
            expected_peer=self.expected_peer,
            setup_time=node.setup_time,
        )
        self._write_raw(self._handshake.start())

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
            )
            # The TLS session is dead: frames queued this step cannot go out.
            self._out.clear()
            self._tls_broken = True
            self._write_wire(tls.data_to_send())
            self.close(PROTOCOL_ERROR)
            return None
        self._write_wire(tls.data_to_send())
        if tls.established and not was_up:
            self._begin()
        return plain or None

    def _setup_timeout(self) -> None:
        if not self._up:
            log_refusal(
                logger,
                self.address,
                "handshake with %s (%s) did not finish in %.1f s; closing",
                self.expected_peer or "incoming peer",
                self.address,
                self.node.setup_time,
            )
            self.refusal = "setup_timeout"
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
                    refusal = self.node._check_incoming(event.name, event.creation)
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
                        )
                        self._write_raw(hs.refuse(refusal))
                        self.close(PROTOCOL_ERROR)
                        return
                    self._write_raw(hs.accept(time.monotonic()))
                elif isinstance(event, Established):
                    self._write_raw(hs.data_to_send())
                    self._established(event)
                    break
            self._write_raw(hs.data_to_send())
        except HandshakeRefused as exc:
            self.refusal = str(exc.reason)
            self.failure = str(exc)
            peer = self.expected_peer or hs.peer_name
            benign = exc.reason == "simultaneous_lost" or (
                # Both sides dialed while the mesh formed; one connection won.
                exc.reason == "duplicate_name" and self.node._connected_or_connecting(peer)
            )
            log_refusal(
                logger,
                self.address,
                "handshake with %s (%s) refused: %s",
                peer or "incoming peer",
                self.address,
                exc,
                level=logging.INFO if benign else logging.WARNING,
            )
            self._write_raw(hs.data_to_send())
            self.close(PROTOCOL_ERROR)
            return
        except ProtocolError as exc:
            self.failure = str(exc)
            log_refusal(logger, self.address, "handshake with %s failed: %s", self.address, exc)
            self.close(PROTOCOL_ERROR)
            return
        if self._up:
            rest = hs.trailing_data()
            if rest:
                self._steady_data(rest)

    def _established(self, event: Established) -> None:
        self.peer_name = event.peer_name
        self.peer_creation = event.peer_creation
        self.peer_hidden = bool(event.peer_flags & Flags.HIDDEN)
        if self._setup_timer is not None:
            self._setup_timer.cancel()
        self.node._handshaking.discard(self)
        if not self.node._connection_up(self):
            logger.info("dropping a second connection to %s", self.peer_name)
            self.peer_name = None
            self.close(PROTOCOL_ERROR)
            return
        self._up = True
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

    def _steady_data(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        decode = self._decoder.decode
        node = self.node
        dispatch = node._dispatch
        try:
            reader.receive_data(data)
            for frame in reader.frames():
                if frame is TICK:
                    continue
                msg = decode(frame)
                # The two message kinds that carry nearly all traffic are
                # handled inline; everything else goes through the table.
                if type(msg) is Send:
                    payload = self._payload(msg)
                    if payload is not _UNDECODABLE:
                        node._remote_deliver(msg.to, payload)
                elif type(msg) is RegSend:
                    payload = self._payload(msg)
                    if payload is not _UNDECODABLE:
                        node._remote_deliver_named(msg.name, payload)
                else:
                    dispatch(self, msg)
        except RemoteProtocolError as exc:
            logger.warning(
                "closing connection to %s: it sent something illegal: %s", self.peer_name, exc
            )
            self.close(PROTOCOL_ERROR)

    def _payload(self, msg: Send | RegSend) -> Any:
        """Decode a message's payload; log and drop one this node cannot decode.

        The frame around it was valid, so the stream is intact and the
        connection stays up: typically the sender used a ``msgspec.Struct``
        this node has not registered.
        """
        try:
            return decode_term(msg.payload)
        except RemoteProtocolError as exc:
            target = msg.to if isinstance(msg, Send) else msg.name
            log_refusal(
                logger,
                self.peer_name or self.address,
                "dropped a message from %s to %s: %s%s",
                self.peer_name,
                target,
                exc,
                ""
                if isinstance(exc, AtomLimitReached)
                else " (register the same struct types on every node)",
                level=logging.ERROR,
            )
            return _UNDECODABLE

    def send_control(self, msg: Any) -> None:
        """Queue one control message; it leaves with this loop step's batch.

        Signals (link, monitor, ...) wait for the end of the step rather than
        being written at once: they are usually followed by a message in the
        same step (a gen_server call is a monitor then a send), and both then
        leave in one write.
        """
        if self._transport is None or self._close_reason is not None:
            return
        self._encoder.encode_into(msg, self._out)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def send_term(self, to: Pid, term: Any) -> bool:
        """Queue a message to the remote ``to``, encoded in one pass (the send fast path).

        Returns :attr:`must_drain` (saves the sender a second call).

        Raises:
            EncodeError: ``term`` cannot be sent (nothing is queued).
        """
        if self._transport is None or self._close_reason is not None:
            return False
        self._encoder.send_into(to, term, self._out)
        return self._queued()

    def reg_send_term(self, sender: Pid | None, name: str, term: Any) -> bool:
        """Queue a message to ``name`` on the peer, encoded in one pass; as :meth:`send_term`."""
        if self._transport is None or self._close_reason is not None:
            return False
        self._encoder.reg_send_into(sender, name, term, self._out)
        return self._queued()

    def _queued(self) -> bool:
        """A message was appended to the buffer: write or batch it; return must_drain."""
        if self._flush_handle is None:
            self._write_first()
        return self._paused or len(self._out) > HIGH_WATER

    @property
    def must_drain(self) -> bool:
        """Whether a sender should ``await drain()`` before queueing more."""
        return self._paused or len(self._out) > HIGH_WATER

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what we queued."""
        if len(self._out) > HIGH_WATER:
            self._flush()
        if not self._paused or self._transport is None:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _write_first(self) -> None:
        """Write what is queued now and open a batch for the rest of this loop step.

        The first message of a loop step leaves at once (latency: a reply
        does not wait for another loop iteration); messages queued after it
        in the same step are coalesced into one write by :meth:`_flush`.
        """
        self._flush()
        self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._out and self._transport is not None:
            self._write_raw(bytes(self._out))
            self._out.clear()
            self._busy.poke()

    def _write_raw(self, data: bytes) -> None:
        """Write protocol bytes (encrypted first when the connection uses TLS)."""
        if self._transport is not None and data and not self._tls_broken:
            self._bytes_out += len(data)
            if self._tls is not None:
                self._tls.send(data)
                data = self._tls.data_to_send()
            with self._wlock:
                self._transport.write(data)

    def _write_wire(self, data: bytes) -> None:
        """Write bytes as they are (TLS records)."""
        if self._transport is not None and data:
            with self._wlock:
                self._transport.write(data)

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate, or ``None`` without TLS."""
        return self._tls.peer_certificate() if self._tls is not None else None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # ----------------------------------------------------------------- ticks

    def _start_ticking(self) -> None:
        """Start the tick checks; plain TCP connections also get the stall guard thread."""
        self._ticker = Ticker(self.node.net_ticktime)
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
                self.node.net_ticktime,
            )
            self.close(NET_TICK_TIMEOUT)
            return
        if action is TickAction.SEND_TICK:
            self._write_raw(TICK_FRAME)
        self._schedule_tick()

    # ----------------------------------------------------------------- close

    def close(self, reason: Atom | Any) -> None:
        """Close with ``reason`` (first reason wins); queued bytes are written first."""
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
        self._out.clear()
        self._wake_drainers()
        self.node._handshaking.discard(self)
        if self._up:
            self.node._connection_down(self, reason)
        if not self.closed.done():
            self.closed.set_result(None)

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


def _nonce() -> bytes:
    import secrets

    return secrets.token_bytes(32)
