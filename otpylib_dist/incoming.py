"""The reading half of a connection: frames in, delivered in order, in the step they arrive.

Mixed into ``Connection`` (``connection.py``), which owns the transport,
the handshake and the close; once the connection is up, each chunk the
socket gives goes to :meth:`Incoming._steady_data`: every complete frame in
it is decoded and handled before the next chunk, in order.

House rules (the connection module's, for reads):

- The message kinds that carry nearly all traffic (``Send``, ``SendRun``,
  ``RegSend``, ``MonitorSend``) are delivered here, through the runtime's
  ``RuntimeEntry``; every other control message goes to the owner's
  ``dispatch`` (``control_handlers.py``), which checks that the peer speaks
  only for its own pids.
- A payload is decoded only for a live destination, and one that does not
  decode drops only its own message (a log line, rate-limited): the
  connection stays up. A frame that is not a valid control message closes
  it (``protocol_error``).
- Fragments are reassembled one large message at a time
  (``protocol/fragments.py``) and acknowledged at the end of the read that
  took them, which opens the peer's window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from otpylib.runtime.atoms import AtomLimitExceeded, atom
from otpylib.runtime.backends.base import RuntimeEntry
from otpylib.runtime.data import Pid
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import Term, decode_term
from otpylib_dist.protocol.control import (
    Fragment,
    FragmentAck,
    MonitorSend,
    RegSend,
    Send,
    SendRun,
)
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import AtomLimitReached, RemoteProtocolError
from otpylib_dist.protocol.fragments import Outbox, Reassembly
from otpylib_dist.protocol.framing import TICK, FrameReader
from otpylib_dist.protocol.shapes import run_decoder_for
from otpylib_dist.refusal_log import log_refusal

if TYPE_CHECKING:
    from otpylib_dist.connection import Connection, ConnectionOwner

logger = logging.getLogger(__name__)

__all__ = ["PROTOCOL_ERROR", "Incoming"]

#: The peer sent something illegal (or was refused in the handshake).
PROTOCOL_ERROR: Final = atom.ensure("protocol_error")
#: What a failed decode of peer bytes raises (msgspec and its hooks).
_DECODE_ERRORS: Final = (msgspec.DecodeError, ValueError, TypeError, RecursionError)
#: Splits a run's items into their raw bytes (the one-by-one path).
_RAW_LIST: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])


class Incoming:
    """Frames in for one connection (a mixin of ``Connection``).

    The connection's own state and methods this uses are declared here for
    the type checker.
    """

    _decoder: control.ControlDecoder
    _encoder: ControlEncoder
    _entry: RuntimeEntry
    _flush_handle: asyncio.Handle | None
    _messages_in: int
    _out: bytearray
    _outbox: Outbox
    _owner: ConnectionOwner
    _reader: FrameReader | None
    _reassembly: Reassembly | None
    address: str
    peer_name: str | None
    close: Callable[[Any], None]
    _fields: Callable[[str, str], dict[str, Any]]
    _flush: Callable[[], None]
    _write_first: Callable[[], None]

    def _steady_data(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        decode = self._decoder.decode
        entry = self._entry
        dispatch = self._owner.dispatch
        me = cast("Connection", self)  # the owner's methods take the connection
        received = 0
        fragments = 0  # taken in this read: acknowledged at its end
        acked = False
        try:
            reader.receive_data(data)
            for frame in reader.frames():
                if frame is TICK:
                    continue
                msg = decode(frame)
                if type(msg) is Fragment:
                    # A piece of a large message: handled as a whole once complete.
                    fragments += 1
                    whole = self._reassembled(msg)
                    if whole is None:
                        continue
                    msg = whole
                # The two message kinds that carry nearly all traffic are
                # handled inline; everything else goes through the table.
                if type(msg) is Send:
                    received += 1
                    # The payload is decoded only for a live destination:
                    # a message to a dead pid costs no decoding (and
                    # creates no atoms).
                    try:
                        entry.deliver_encoded(msg.to, msg.payload, decode_term)
                    except RemoteProtocolError as exc:
                        self._dropped(msg.to, exc)
                elif type(msg) is SendRun:
                    received += self._deliver_run(entry, msg)
                elif type(msg) is RegSend:
                    received += 1
                    # As for Send: decoded only when someone holds the name.
                    try:
                        entry.deliver_named_encoded(msg.name, msg.payload, decode_term)
                    except RemoteProtocolError as exc:
                        self._dropped(msg.name, exc)
                elif type(msg) is MonitorSend:
                    # The monitor half is checked and set up by the table (as
                    # a Monitor), then the message is delivered as a Send.
                    dispatch(me, msg)
                    received += 1
                    try:
                        entry.deliver_encoded(msg.target, msg.payload, decode_term)
                    except RemoteProtocolError as exc:
                        self._dropped(msg.target, exc)
                elif type(msg) is FragmentAck:
                    self._outbox.acked(msg.count)
                    acked = True
                else:
                    dispatch(me, msg)
            if fragments:
                self._acknowledge(fragments)
            if acked and self._outbox.streams:
                self._flush()  # the window opened: the next fragments leave now
        except RemoteProtocolError as exc:
            logger.warning(
                "closing connection to %s: it sent something illegal: %s",
                self.peer_name,
                exc,
                extra=self._fields("protocol_error", "protocol_error"),
            )
            self.close(PROTOCOL_ERROR)
        finally:
            self._messages_in += received

    def _reassembled(self, msg: Fragment) -> control.ControlMessage | None:
        """Take one fragment; the whole message once its last one is in, else ``None``."""
        reassembly = self._reassembly
        if reassembly is None:
            raise RemoteProtocolError("a Fragment from a peer that did not say it sends them")
        body = reassembly.add(msg)
        if body is None:
            return None
        if not body:  # fragments.TOO_LARGE: the first fragment of a message over the limit
            log_refusal(
                logger,
                self.peer_name or self.address,
                "dropping a message of %d bytes from %s: over max_message_size (%d bytes); "
                "set the same max_message_size on every node",
                msg.total,
                self.peer_name,
                reassembly.limit,
                level=logging.ERROR,
                extra=self._fields("message_dropped", "too_large"),
            )
            return None
        whole = self._decoder.decode(body)
        if type(whole) is Fragment:
            raise RemoteProtocolError("a fragmented message made of fragments")
        return whole

    def _acknowledge(self, count: int) -> None:
        """Tell the peer how many fragments this read took (its window opens)."""
        self._encoder.encode_into(FragmentAck(count), self._out)
        if self._flush_handle is None:
            self._write_first()

    def _deliver_run(self, entry: RuntimeEntry, msg: SendRun) -> int:
        """Deliver a run of messages; how many. A bad item drops only itself.

        The fast path decodes the whole run with one typed msgspec call. If
        that fails (an item this node cannot decode: an unregistered struct,
        an atom past the limit), the items are decoded one by one and each
        bad one is dropped with a log line, as a lone message would be.
        """
        try:
            return entry.deliver_run(msg.to, msg.items, run_decoder_for(msg.shape).decode)
        except (RemoteProtocolError, AtomLimitExceeded, *_DECODE_ERRORS):
            pass
        good: list[Any] = []
        try:
            raws = _RAW_LIST.decode(msg.items)
        except _DECODE_ERRORS as exc:
            raise RemoteProtocolError(f"malformed run of messages: {exc}") from None
        for raw in raws:
            try:
                good.append(decode_term(Term(msg.shape, raw)))
            except RemoteProtocolError as exc:
                self._dropped(msg.to, exc)
        return entry.deliver_run(msg.to, good, list)

    def _dropped(self, target: Pid | str, exc: RemoteProtocolError) -> None:
        """Log a message to ``target`` (a pid or a name) dropped: its payload did not decode."""
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
            extra=self._fields("message_dropped", "undecodable"),
        )
