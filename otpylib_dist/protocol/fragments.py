"""Large messages in fragments, so that one does not hold up the others.

One frame per message means a 64 MiB message occupies the connection for
its whole transfer: a small message sent just after it, by anyone, waits
that long (head-of-line blocking). Between two nodes that both set
``Flags.FRAGMENTS`` in the handshake, a frame whose body is over
:data:`FRAGMENT_ABOVE` bytes goes out instead as :class:`~control.Fragment`
frames of at most :data:`FRAGMENT_SIZE` bytes, and frames of other senders
are written between them. Erlang 22+ fragments large distribution messages
for the same reason.

This module holds both ends, with no I/O: :class:`Outbox` (the sender's
queue of large messages and of the frames that must wait behind them) and
:class:`Reassembly` (the receiver's one message being put back together).

Rules the outbox keeps:

- **Per-sender order.** Erlang orders the signals from one process to
  another. A frame is *keyed* by the process that sent it (its pid; code
  outside any process and the node's own replies have keys of their own,
  see ``outgoing.py``); while a key has a large message going out, every
  later frame of that key waits behind it, in order, and is written right
  after its last fragment. Frames of other keys go at once.
- **One large message at a time** leaves, in the order they were queued;
  a receiver therefore reassembles one message at a time, which bounds its
  memory by one message (:data:`DEFAULT_MAX_MESSAGE`).
- **A window.** At most :data:`WINDOW` fragments are written and not yet
  acknowledged (``FragmentAck``, sent by the receiver as it takes them).
  Without it the kernel's socket buffers (megabytes on loopback) fill with
  fragments and a small message waits behind all of them; with it, behind
  at most ``WINDOW * FRAGMENT_SIZE`` bytes.

Differs from Erlang: Erlang interleaves the fragments of several large
messages and has no acknowledgements (its small messages wait behind
whatever fills the socket buffers); we send one large message at a time
and pace it by acknowledgements.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final

from otpylib_dist.protocol.control import Fragment
from otpylib_dist.protocol.errors import RemoteProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "FRAGMENT_ABOVE",
    "FRAGMENT_SIZE",
    "TOO_LARGE",
    "WINDOW",
    "Outbox",
    "Reassembly",
]

#: Bytes of a message body per fragment. 64 KiB: a small message waits
#: behind a few of them (tens of microseconds each on loopback), while the
#: per-fragment cost (one frame, one acknowledgement) stays under 1 % of
#: copying the bytes.
FRAGMENT_SIZE: Final = 64 << 10
#: Frames with a body larger than this are fragmented (smaller ones go whole:
#: writing 256 KiB takes about as long as the window lets a small message wait).
FRAGMENT_ABOVE: Final = 256 << 10
#: Fragments written and not yet acknowledged, at most.
WINDOW: Final = 4
#: Largest message (frame body) a node sends or reassembles unless told
#: otherwise (``max_message_size``). Bounds the memory one peer's message
#: can take on the receiver; Erlang has no limit.
DEFAULT_MAX_MESSAGE: Final = 256 << 20


class _Stream:
    """One large message going out: its body, how far it got, who waits behind it."""

    __slots__ = ("held", "keys", "pieces", "remaining", "seq", "total")

    def __init__(self, seq: int, pieces: list[memoryview], key: Hashable) -> None:
        self.seq = seq
        #: The body, in pieces not yet sent (views: the encoder's buffer, no copy).
        self.pieces = pieces
        self.total = self.remaining = sum(len(p) for p in pieces)
        #: Frames (whole, with headers) that must be written after this message.
        self.held = bytearray()
        #: Keys whose frames wait behind this stream.
        self.keys = [key]


class Outbox:
    """The sender's side: large messages going out in fragments, and what waits behind them.

    Args:
        encode_into: appends one control message as a whole frame to a
            buffer (``ControlEncoder.encode_into``); used for the fragments.
    """

    __slots__ = ("_behind", "_encode_into", "_next_seq", "_unacked", "streams")

    def __init__(self, encode_into: Callable[[Any, bytearray], int]) -> None:
        self._encode_into = encode_into
        #: Large messages not yet wholly written, oldest (the one going out) first.
        self.streams: deque[_Stream] = deque()
        #: For each key with a frame waiting: the stream its next frames go behind.
        self._behind: dict[Hashable, _Stream] = {}
        self._next_seq = 1
        self._unacked = 0

    def held_for(self, key: Hashable) -> bytearray | None:
        """The buffer a frame keyed ``key`` must go to, or ``None``: it may go at once."""
        stream = self._behind.get(key)
        return stream.held if stream is not None else None

    def add(self, key: Hashable, pieces: list[memoryview]) -> None:
        """Queue a large frame body (in ``pieces``) from ``key``; its later frames wait."""
        stream = _Stream(self._next_seq, pieces, key)
        self._next_seq += 1
        self.streams.append(stream)
        self._behind[key] = stream

    @property
    def pending(self) -> int:
        """Bytes queued here and not yet handed to :meth:`pump` (bodies and held frames)."""
        return sum(s.remaining + len(s.held) for s in self.streams)

    def replace_held(self, old: bytearray, new: bytearray) -> None:
        """Swap a held buffer for another (the encoder moved a large frame out of it)."""
        for stream in self.streams:
            if stream.held is old:
                stream.held = new
                return

    def holds(self, key: Hashable) -> bool:
        """Whether frames keyed ``key`` wait behind a large message."""
        return key in self._behind

    def pump(self, out: bytearray) -> bool:
        """Append to ``out`` the fragments the window allows; return whether any were.

        When a message's last fragment is appended, the frames held behind it
        follow it, and the next large message starts.
        """
        streams = self.streams
        wrote = False
        while streams and self._unacked < WINDOW:
            stream = streams[0]
            piece = stream.pieces[0]
            if len(piece) > FRAGMENT_SIZE:
                chunk, stream.pieces[0] = piece[:FRAGMENT_SIZE], piece[FRAGMENT_SIZE:]
            else:
                chunk = stream.pieces.pop(0)  # a fragment ends where a piece does
            self._encode_into(Fragment(stream.seq, stream.total, chunk), out)
            self._unacked += 1
            stream.remaining -= len(chunk)
            wrote = True
            if not stream.pieces:
                streams.popleft()
                out += stream.held
                for key in stream.keys:
                    if self._behind.get(key) is stream:
                        del self._behind[key]
        return wrote

    def acked(self, count: int) -> None:
        """The peer took ``count`` more fragments (more than we sent is ignored)."""
        self._unacked = max(0, self._unacked - count)

    def clear(self) -> None:
        """Forget everything (the connection is gone)."""
        self.streams.clear()
        self._behind.clear()
        self._unacked = 0


#: What :meth:`Reassembly.add` returns for the first fragment of a message
#: over the size limit (the caller logs it; the rest of it is skipped).
TOO_LARGE: Final = b""


class Reassembly:
    """The receiver's side: puts one fragmented message back together at a time.

    Args:
        max_message: largest message accepted; a larger one is skipped (its
            fragments are still taken and acknowledged) and reported once.

    Memory: at most ``max_message`` bytes per connection, since the sender
    sends one large message at a time; a fragment of another message before
    the current one is complete is a protocol error.
    """

    __slots__ = ("_buffer", "_max", "_received", "_seq", "_skip", "_total")

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._max = max_message
        self._seq = 0  # 0: no message in progress
        self._total = 0
        self._received = 0
        self._skip = False
        #: The body so far, copied out of the frames: a fragment's view would
        #: keep its whole receive chunk alive (a peer could pin megabytes
        #: with one-byte fragments), and one buffer needs no join at the end.
        self._buffer = bytearray()

    @property
    def in_progress(self) -> int:
        """Bytes of the message being reassembled held so far."""
        return 0 if self._skip else self._received

    def add(self, msg: Fragment) -> bytes | bytearray | None:
        """Take one fragment; return the whole frame body once it is complete.

        Returns ``None`` while the message is incomplete, and
        :data:`TOO_LARGE` (empty) on the first fragment of a message over the
        limit.

        Raises:
            RemoteProtocolError: the fragments do not add up (a fragment of
                another message in between, more bytes than announced, an
                empty or zero-sized fragment).
        """
        seq, total, data = msg.seq, msg.total, msg.data
        if not data or seq <= 0 or total <= 0:
            raise RemoteProtocolError(f"malformed fragment (seq {seq}, total {total})")
        first = self._seq == 0
        if first:
            self._seq, self._total, self._received = seq, total, 0
            self._skip = total > self._max
        elif seq != self._seq or total != self._total:
            raise RemoteProtocolError(
                f"a fragment of message {seq} arrived while message {self._seq} "
                f"({self._received} of {self._total} bytes) was incomplete"
            )
        self._received += len(data)
        if self._received > total:
            raise RemoteProtocolError(
                f"fragments of message {seq} add up to more than the {total} bytes announced"
            )
        if self._received == total:
            self._seq = 0  # complete: the next fragment starts a new message
        if self._skip:
            return TOO_LARGE if first else None
        self._buffer += data
        if self._seq:
            return None
        body, self._buffer = self._buffer, bytearray()
        return body

    @property
    def limit(self) -> int:
        """The size limit for one message."""
        return self._max
