"""Frames on the wire: a 4-byte big-endian length, then that many bytes.

A zero-length frame is a *tick*: it carries nothing and only proves the
peer is alive (see ``ticks.py``).

House rules:

- No I/O. :meth:`FrameReader.receive_data` only stores what the socket
  gave; :meth:`FrameReader.next_frame` and :meth:`FrameReader.frames` cut
  frames out of it. ``b""`` means the peer closed its side (EOF).
- The size limit is checked as soon as a 4-byte header is complete, before
  any of the body is kept, so an unauthenticated peer cannot make us buffer
  much (:data:`MAX_HANDSHAKE_FRAME`). Authentication raises it
  (:meth:`FrameReader.set_max_frame_size`).
- Frames are handed out as read-only ``memoryview`` slices of immutable
  ``bytes``: no copy per frame, and nothing we do later can change a frame
  someone still holds (msgspec ``Raw`` values keep pointing into it).
- Any error leaves the reader broken: every later call raises again.

Theory of operation (reading): chunks are appended to a list and counted.
Nothing is joined until enough bytes are buffered for the next frame (4
for a header, then header + body), so a large frame arriving in many 64
KiB chunks is copied once, not once per chunk. When enough is buffered,
the chunks are joined (a single chunk is used as is) and every complete
frame in it is sliced out in one loop; the unfinished tail stays as a view.

Writing: :func:`encode_frame` for one frame, :func:`append_frame` to add
frames to a reused ``bytearray`` (one socket write per batch), and
:func:`begin_frame` / :func:`end_frame` for encoders that write the body
into that buffer directly (``msgspec`` ``encode_into``).
"""

from __future__ import annotations

import enum
import logging
import struct
from typing import Final, Literal

from otpylib_dist.protocol.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "MAX_FRAME_LIMIT",
    "MAX_HANDSHAKE_FRAME",
    "NEED_DATA",
    "TICK",
    "TICK_FRAME",
    "Frame",
    "FrameMarker",
    "FrameReader",
    "encode_frame",
]

#: Bytes in a frame header (unsigned 32-bit big-endian body length).
HEADER_SIZE: Final = 4

#: Largest body a 4-byte header can describe.
MAX_FRAME_LIMIT: Final = (1 << 32) - 1

#: Frame limit before the peer is authenticated. The largest handshake
#: message (a Hello with a 255-byte node name and a 64-byte nonce) is under
#: 400 bytes; 4 KiB leaves room to grow while an unauthenticated peer can
#: make us buffer at most this much. It also rejects a TLS ClientHello or
#: an HTTP request after 4 bytes: their first bytes read as a length of
#: hundreds of megabytes.
MAX_HANDSHAKE_FRAME: Final = 4096

#: Frame limit once authenticated. 64 MiB bounds the memory one message
#: can take while leaving room for large binaries; Erlang has no limit,
#: which lets one bad peer exhaust memory.
DEFAULT_MAX_FRAME: Final = 64 << 20

#: A zero-length frame: what a tick looks like on the wire.
TICK_FRAME: Final = b"\0\0\0\0"

_HEADER = struct.Struct(">I")
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack


class FrameMarker(enum.Enum):
    """What :meth:`FrameReader.next_frame` returns when it has no payload."""

    TICK = "TICK"  # the peer sent a zero-length frame (a tick)
    NEED_DATA = "NEED_DATA"  # no complete frame buffered; feed more bytes
    CLOSED = "CLOSED"  # the peer closed cleanly at a frame boundary

    def __repr__(self) -> str:
        return self.value


TICK: Final = FrameMarker.TICK
NEED_DATA: Final = FrameMarker.NEED_DATA
CLOSED: Final = FrameMarker.CLOSED

#: A frame as handed out: a payload view or :data:`TICK`.
Frame = memoryview | Literal[FrameMarker.TICK]


class FrameReader:
    """Cuts a byte stream into frames; enforces the frame size limit.

    Args:
        max_frame_size: largest body accepted; a larger header raises
            :class:`FrameTooLarge` before its body is buffered. Use
            :data:`MAX_HANDSHAKE_FRAME` until the peer is authenticated.
    """

    __slots__ = ("_buffered", "_chunks", "_eof", "_error", "_max", "_need", "_pending")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        self._max = _check_limit(max_frame_size)
        self._chunks: list[bytes | memoryview] = []
        self._buffered = 0
        # Bytes needed before parsing can make progress: a header, or the
        # header plus the body it announced.
        self._need = HEADER_SIZE
        self._eof = False
        # _pending: an error found after good frames, raised by the next call.
        # _error: the error that broke the reader; later calls report misuse.
        self._pending: RemoteProtocolError | None = None
        self._error: RemoteProtocolError | None = None

    @property
    def max_frame_size(self) -> int:
        """The current frame size limit."""
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as frames."""
        return self._buffered

    @property
    def eof(self) -> bool:
        """Whether ``receive_data(b"")`` was called (the peer closed)."""
        return self._eof

    def set_max_frame_size(self, max_frame_size: int) -> None:
        """Change the limit, e.g. raise it once the peer is authenticated.

        Applies to the next header parsed; a frame whose header was already
        accepted stays accepted.
        """
        self._max = _check_limit(max_frame_size)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Store bytes from the socket; ``b""`` means the peer closed (EOF).

        Raises:
            LocalProtocolError: data after EOF, or the reader already failed.
        """
        if self._error is not None:
            raise LocalProtocolError(f"frame reader already failed: {self._error}")
        if self._eof:
            raise LocalProtocolError("receive_data() called after EOF (b'') was fed")
        if not data:
            self._eof = True
            return
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer; we keep ours immutable
        self._chunks.append(data)
        self._buffered += len(data)

    def next_frame(self) -> Frame | Literal[FrameMarker.NEED_DATA, FrameMarker.CLOSED]:
        """Return the next frame's payload, :data:`TICK`, or a marker.

        Returns :data:`NEED_DATA` when no complete frame is buffered and
        :data:`CLOSED` once the peer closed at a frame boundary. Parses one
        frame only, so a limit change made after it applies to the next.

        Raises:
            FrameTooLarge: the next header exceeds the limit.
            RemoteProtocolError: the peer closed in the middle of a frame.
        """
        found = self._parse(1)
        if found:
            return found[0]
        if self._eof and self._buffered == 0:
            return CLOSED
        return NEED_DATA

    def frames(self) -> list[Frame]:
        """Return every complete frame buffered, in order (possibly none).

        The fast path of the read loop: feed a large chunk, then take all
        its frames in one call. Frames complete before an error are returned
        first; the error is raised by the next call.

        Raises:
            FrameTooLarge: a header exceeds the limit.
            RemoteProtocolError: the peer closed in the middle of a frame.
        """
        return self._parse(-1)

    def take_buffered(self) -> bytes:
        """Remove and return every buffered byte not yet handed out.

        Used when another reader takes over the stream (after a handshake).
        """
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._need = HEADER_SIZE
        return data

    def _parse(self, max_count: int) -> list[Frame]:
        if self._error is not None:
            raise LocalProtocolError(f"frame reader already failed: {self._error}")
        if self._pending is not None:
            self._error, self._pending = self._pending, None
            raise self._error
        out: list[Frame] = []
        if self._buffered < self._need:
            if self._eof and self._buffered:
                self._fail_truncated()
            return out
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        view = memoryview(buf)  # read-only: every chunk is bytes or a view of bytes
        size_all = len(buf)
        pos = 0
        limit = self._max
        need = HEADER_SIZE
        error: RemoteProtocolError | None = None
        while size_all - pos >= HEADER_SIZE and max_count != 0:
            (size,) = _unpack_header(buf, pos)
            if size > limit:
                error = FrameTooLarge(size, limit)
                break
            end = pos + HEADER_SIZE + size
            if end > size_all:
                need = HEADER_SIZE + size
                break
            out.append(view[pos + HEADER_SIZE : end] if size else TICK)
            pos = end
            max_count -= 1
        rest = size_all - pos
        if rest:
            chunks[:] = [view[pos:]]
        else:
            chunks.clear()
        self._buffered = rest
        self._need = need
        if error is not None:
            if out:
                self._pending = error  # hand out the good frames; raise on the next call
                return out
            self._error = error
            raise error
        if not out and self._eof and rest:
            self._fail_truncated()
        return out

    def _fail_truncated(self) -> None:
        if self._buffered < HEADER_SIZE:
            detail = f"{self._buffered} of {HEADER_SIZE} header bytes"
        else:
            detail = f"{self._buffered} of {self._need} bytes"
        self._error = RemoteProtocolError(
            f"peer closed the connection in the middle of a frame ({detail} received)"
        )
        raise self._error


def _check_limit(max_frame_size: int) -> int:
    if not 0 <= max_frame_size <= MAX_FRAME_LIMIT:
        raise LocalProtocolError(
            f"max_frame_size must be between 0 and {MAX_FRAME_LIMIT}, got {max_frame_size}"
        )
    return max_frame_size


def encode_frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Return ``payload`` with its length header: one frame, ready to write.

    Raises:
        LocalProtocolError: the payload is too large for a 4-byte header.
    """
    size = len(payload)
    if size > MAX_FRAME_LIMIT:
        raise LocalProtocolError(f"a frame body is at most {MAX_FRAME_LIMIT} bytes, got {size}")
    return _pack_header(size) + payload
