"""The control message encoder: frames into a reused buffer, runs of messages, large frames.

One :class:`ControlEncoder` per connection appends whole frames (length
header and body) to the connection's output ``bytearray``. Its fast paths
encode a message's header and its term in one msgspec call
(:meth:`ControlEncoder.send_into`), and append consecutive messages of one
shape to one target to a run frame (``SendRun``, :meth:`~ControlEncoder.send_run_into`).
It marks a frame over the split size ``big``, for the connection to send
in fragments (``fragments.py``). Sans-I/O: it only writes to buffers.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any, Final

import msgspec

from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.codec import encode_failure, make_encoder, to_tagged, to_wire
from otpylib_dist.protocol.control import (
    ControlMessage,
    MonitorSendTerm,
    RegSendTerm,
    SendRun,
    SendTerm,
)
from otpylib_dist.protocol.errors import EncodeError
from otpylib_dist.protocol.framing import DEFAULT_MAX_FRAME, HEADER_SIZE, TICK_FRAME
from otpylib_dist.protocol.shapes import FLAT_SHAPES, element_types, tuple_shape

logger = logging.getLogger(__name__)

__all__ = ["RUN_BYTES", "ControlEncoder"]

#: Bytes after which a run closes (its frame body; the message that crosses
#: the mark is the run's last): a longer burst goes as several runs, so the
#: receiver decodes and delivers the first of them while the rest are still
#: on the way, and the first message of a burst waits for about this much.
RUN_BYTES: Final = 64 << 10
_pack_header_into = struct.Struct(">I").pack_into
_pack_count_into = struct.Struct(">I").pack_into
#: A SendRun's start: msgpack fixarray of 4 fields, then its tag (67, a fixint).
_RUN_HEAD: Final = bytes((0x94, 67))
assert SendRun.__struct_config__.tag == 67
#: msgpack array32 marker and a count to fill in (items are appended after it).
_ARRAY32: Final = b"\xdd\x00\x00\x00\x00"


class ControlEncoder:
    """Encodes control messages; build one per connection.

    Args:
        max_frame_size: largest frame body the peer accepts; a larger
            message raises :class:`EncodeError` at the sender instead of
            making the peer drop the connection.

    Attributes:
        big: where, in the buffer just written to, a frame starts whose body
            is over the split size (:meth:`split_above`), else -1. The
            connection takes it out (:meth:`take_big`) and sends it in
            fragments; it is always the last frame of that buffer.
        run_to, run_types, run_mark, run_end, run_count: the open run (see
            :meth:`send_run_into`): its target, its items' element types
            (``None``: no run is open), where its next item starts, the
            buffer length it must not pass, and its items so far. Public
            for one reader: the connection's send fast path
            (``Outgoing.send_message``) appends an item that matches with
            :attr:`encode_raw_into`, then advances ``run_mark`` and
            ``run_count`` as :meth:`send_run_into` does.
        encode_raw_into: msgspec's ``encode_into``; ``(obj, out, -1)``
            appends ``obj``'s msgpack to ``out``.
    """

    __slots__ = (
        "_big_head",
        "_encode",
        "_encode_into",
        "_max",
        "_run_count_at",
        "_run_items",
        "_run_shape",
        "_run_start",
        "_split",
        "big",
        "encode_raw_into",
        "run_count",
        "run_end",
        "run_mark",
        "run_to",
        "run_types",
    )

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        encoder = make_encoder()
        self._encode = encoder.encode
        self._encode_into = self.encode_raw_into = encoder.encode_into
        self._max = max_frame_size
        self._split = max_frame_size
        self.big = -1
        self._big_head: bytes | None = None
        # The open run (see SendRun): where its frame starts in the buffer
        # (-1: none), where its item count goes, its target, its items'
        # element types (None: no run open), its count, and the buffer
        # length past which its frame would exceed the limit.
        self._run_start = -1
        self._run_count_at = 0
        self.run_to: Pid | str | None = None
        self.run_types: tuple[type, ...] | None = None
        self._run_shape = b""
        self.run_count = 0
        self.run_end = 0
        # Where the open run's next item starts; items of runs closed so far.
        self.run_mark = 0
        self._run_items = 0

    # ---------------------------------------------------------------- runs

    def send_run_into(self, to: Pid | str, term: Any, out: bytearray) -> int:
        """Append ``term`` to a run of messages to ``to`` (a pid or a registered name).

        Returns the length of ``out`` after it (true), or 0 (nothing
        appended) when ``term`` has no cached flat shape: the caller sends
        it as a plain Send (which closes the run); -1 when it was appended
        as a frame too large for one (``big``: the caller sends it in
        fragments, :meth:`take_big`). A message of another
        target or shape closes the open run and opens a new one. The fast
        path of a burst of sends: what it skips per message is the frame
        header, the control struct and the target pid, which the run
        carries once.

        Raises:
            EncodeError: ``term`` cannot be sent; ``out`` and the run are as
                before (the other messages of the run are kept).
        """
        # The check that the item fits the open run is its element types
        # against the run's, one tuple compare (no shape lookup), and the
        # target by identity first (a sender loop passes the same object).
        # Where the item starts is where the last one ended (run_mark):
        # nothing else writes to ``out`` while a run is open. Written out:
        # the connection appends a burst's items itself when the target is
        # the run's own object (Outgoing.send_message), but a target that
        # is only equal (a pid decoded from each request) comes here for
        # every message of its burst.
        if type(term) is not tuple:
            return 0
        # shapes.element_types, inlined for the usual message (a 4-tuple
        # such as (tag, pid, n, data)): one call less per message.
        if len(term) == 4:
            a, b, c, d = term
            types: tuple[type, ...] = (type(a), type(b), type(c), type(d))
        else:
            types = element_types(term)
        run_to = self.run_to
        if types != self.run_types or (run_to is not to and run_to != to):
            shape = FLAT_SHAPES.get(types)
            if shape is None:
                return 0
            if self.run_types is not None and shape == self._run_shape and run_to == to:
                self.run_types = types  # other types of the same shape (a bool for an int)
            else:
                self.close_run(out)
                self._open_run(to, types, shape, out)
        try:
            self._encode_into(term, out, -1)
        except BaseException as exc:
            # Undo this item only: the run keeps the messages it has.
            del out[self.run_mark :]
            self._close_or_drop_run(out)
            if isinstance(exc, OverflowError):
                return 0  # an int beyond 64 bits: the tagged form (a plain Send)
            if isinstance(exc, TypeError | ValueError):
                raise encode_failure(exc) from None
            raise
        end = len(out)
        if end > self.run_end:
            return self._run_full(out, end)
        self.run_mark = end
        self.run_count += 1
        return end

    def _run_full(self, out: bytearray, end: int) -> int:
        """The item just appended took the open run past :data:`RUN_BYTES`.

        Up to the split size (fragments) or the frame limit it stays, and the
        run closes behind it: the next message opens a new run, and no item
        is encoded or copied twice. An item large on its own goes alone in
        fragments (:meth:`_big_run`). Otherwise it leaves the run (returns
        0): the caller's plain Send carries it, or refuses it with the size
        message.
        """
        if end - self._run_start - HEADER_SIZE <= self._split:
            self.run_count += 1
            self.close_run(out)
            return end
        # The item's size in a run of its own: the run's head, then the item.
        mark = self.run_mark
        alone = self._run_count_at + 4 - self._run_start - HEADER_SIZE + end - mark
        if self._split < alone <= self._max:
            return self._big_run(out, mark)
        del out[mark:]
        self._close_or_drop_run(out)
        return 0

    def _big_run(self, out: bytearray, mark: int) -> int:
        """Mark the large item at ``mark`` ``big``: it leaves in fragments, as a run of its own.

        The run before it closes with the items it has (their senders'
        frames must not wait in another sender's fragments); the item's own
        run head is built apart (``_big_head``), so the item's bytes are
        sent from where they were encoded: no copy, no second encoding.
        """
        if not self.run_count:  # alone in its run already: the whole frame goes
            self.big = self._run_start
            self.run_count = 1
            self.close_run(out)
            return -1
        to, types, shape = self.run_to, self.run_types, self._run_shape
        assert to is not None and types is not None
        self.close_run(out, mark)
        head = bytearray()
        self._open_run(to, types, shape, head)
        self._run_start = -1
        self.run_types = None
        _pack_count_into(head, self._run_count_at, 1)
        self._run_items += 1
        self.big = mark
        self._big_head = bytes(head[HEADER_SIZE:])  # the body's start (no length header)
        return -1

    def split_above(self, size: int, max_message: int) -> None:
        """Mark frames over ``size`` bytes as ``big`` and accept up to ``max_message``.

        Called once the peer said it reads fragments: a larger message is
        then sent in pieces rather than refused.
        """
        self._split = size
        self._max = max_message

    def take_big(self, out: bytearray) -> tuple[list[memoryview], bytearray]:
        """Split ``out`` at its ``big`` frame: the frame's body and the frames before it.

        Returns the body as views of ``out`` (no copy of a large message)
        and a new buffer holding the frames before it: the caller must use
        that buffer from now on and never grow ``out`` again.
        """
        start, self.big = self.big, -1
        head, self._big_head = self._big_head, None
        view = memoryview(out)
        before = bytearray(view[:start])
        if head is None:
            return [view[start + HEADER_SIZE :]], before
        return [memoryview(head), view[start:]], before

    def _over_split(self, out: bytearray, start: int, size: int, name: str) -> None:
        """A frame of ``size`` bytes at ``start`` is over the split size: refuse it or mark it."""
        if size > self._max:
            del out[start:]
            raise EncodeError(
                f"a {name} message of {size} bytes exceeds the limit of {self._max} bytes; "
                "send large data in parts, or raise max_message_size on both nodes"
            )
        self.big = start

    def _open_run(
        self, to: Pid | str, types: tuple[type, ...], shape: bytes, out: bytearray
    ) -> None:
        self._run_start = start = len(out)
        out += TICK_FRAME  # the frame's length header, filled in by close_run
        out += _RUN_HEAD  # fixarray of 4 fields, then the tag
        self._encode_into(to, out, -1)
        self._encode_into(shape, out, -1)
        self._run_count_at = len(out) + 1
        out += _ARRAY32  # the items' count, filled in by close_run
        self.run_to, self.run_types, self.run_count = to, types, 0
        self._run_shape = shape
        self.run_mark = len(out)
        self.run_end = start + HEADER_SIZE + min(self._max, RUN_BYTES)

    def _close_or_drop_run(self, out: bytearray) -> None:
        """After a failed item: close a run that has items, drop one that has none."""
        if self.run_count:
            self.close_run(out)
        else:
            del out[self._run_start :]
            self._run_start = -1
            self.run_types = None

    def discard_run(self) -> None:
        """Forget the open run: its buffer was thrown away (the connection died)."""
        if self._run_start >= 0:
            self._run_items += self.run_count
        self._run_start = -1
        self.run_types = None

    def close_run(self, out: bytearray, end: int = -1) -> None:
        """Finish the open run in ``out`` (its count and length); call before writing ``out``.

        Every other ``*_into`` method of this encoder calls it first, so a
        run never straddles another frame. ``end``: where the run ends, when
        bytes after it in ``out`` are not part of it (default: ``out``'s end).
        """
        start = self._run_start
        if start < 0:
            return
        self._run_start = -1
        self.run_types = None  # no item matches a closed run
        if end < 0:
            end = len(out)
        if self.run_count == 0:
            del out[start:end]
            return
        self._run_items += self.run_count
        _pack_count_into(out, self._run_count_at, self.run_count)
        _pack_header_into(out, start, end - start - HEADER_SIZE)

    @property
    def run_messages(self) -> int:
        """Messages queued in runs so far (counted here, not per message by the connection)."""
        return self._run_items + (self.run_count if self._run_start >= 0 else 0)

    def encode(self, msg: ControlMessage) -> bytes:
        """Return the frame body of ``msg`` (no length header)."""
        return self._encode(msg)

    def encode_into(self, msg: ControlMessage, out: bytearray) -> int:
        """Append ``msg`` as a whole frame to ``out``; return the bytes appended.

        Raises:
            EncodeError: the message exceeds the frame limit (``out`` unchanged).
        """
        if self._run_start >= 0:
            self.close_run(out)
        start = len(out)
        out += TICK_FRAME  # placeholder for the length header
        try:
            self._encode_into(msg, out, -1)
        except BaseException:
            del out[start:]
            raise
        return self._finish(out, start, type(msg).__name__)

    def send_into(self, to: Pid, term: Any, out: bytearray) -> int:
        """Append ``Send(to, encode_term(term))`` as a frame, in one encoding pass.

        The fast path of a remote send; returns the bytes appended.

        Raises:
            EncodeError: ``term`` cannot be sent, or the message exceeds the
                frame limit. ``out`` is left unchanged.
        """
        return self._term_into(SendTerm, "Send", (to,), term, out)

    def monitor_send_into(
        self, owner: Pid, target: Pid, ref: Ref, term: Any, out: bytearray
    ) -> int:
        """Append ``MonitorSend(owner, target, ref, encode_term(term))`` as a frame, in one pass.

        Raises:
            EncodeError: as :meth:`send_into`.
        """
        return self._term_into(MonitorSendTerm, "Send", (owner, target, ref), term, out)

    def reg_send_into(self, sender: Pid | None, name: str, term: Any, out: bytearray) -> int:
        """Append ``RegSend(sender, name, encode_term(term))`` as a frame, in one pass.

        Raises:
            EncodeError: as :meth:`send_into`.
        """
        return self._term_into(RegSendTerm, "RegSend", (sender, name), term, out)

    def _term_into(
        self,
        kind: Callable[..., msgspec.Struct],
        name: str,
        head: tuple[Any, ...],
        term: Any,
        out: bytearray,
    ) -> int:
        # Written out inline: every Python call saved here is saved per message.
        if self._run_start >= 0:
            self.close_run(out)
        start = len(out)
        out += TICK_FRAME  # placeholder for the length header
        try:
            if type(term) is tuple:  # the common case: one cached shape lookup
                types = element_types(term)
                shape = FLAT_SHAPES.get(types) or tuple_shape(term, types)
                wire = (shape, term) if shape is not None else to_tagged(term)
            else:
                wire = to_wire(term)
            try:
                self._encode_into(kind(*head, wire), out, -1)
            except OverflowError:  # an int beyond 64 bits: the tagged form carries it
                del out[start + HEADER_SIZE :]
                self._encode_into(kind(*head, to_tagged(term)), out, -1)
        except (TypeError, ValueError, OverflowError) as exc:
            del out[start:]
            raise encode_failure(exc) from None
        except BaseException:
            del out[start:]
            raise
        size = len(out) - start - HEADER_SIZE
        if size > self._split:
            self._over_split(out, start, size, name)  # raises EncodeError over the limit
        _pack_header_into(out, start, size)
        return size + HEADER_SIZE

    def _finish(self, out: bytearray, start: int, name: str) -> int:
        size = len(out) - start - HEADER_SIZE
        if size > self._split:
            self._over_split(out, start, size, name)
        _pack_header_into(out, start, size)
        return size + HEADER_SIZE
