"""Control messages: what one node asks of another once the handshake is done.

Each message mirrors one of Erlang's distribution operations (the ``DOP_*``
control messages of the external term format), plus what our nodes need
for remote spawn and for the ``otpy-node`` command. They form one tagged
union of ``array_like``, frozen, ``gc=False`` msgspec Structs: a message is
a short msgpack array whose first element is the tag, decoded by one typed
``Decoder`` with no Python per field. The tag numbers are Erlang's operation
numbers where Erlang has the operation, so a reader of both can match them.

Payloads and reasons are terms (``codec.Term``: a shape and the value
still encoded as ``msgspec.Raw``): the header decodes typed and fast, the
payload only when the handler calls ``decode_term`` on it, and a term
produced by ``encode_term`` is embedded as it is. The fast path
:meth:`ControlEncoder.send_into` goes further: it encodes the header and
the term in one msgspec call, straight into the output buffer.

Frames: :meth:`ControlEncoder.encode_into` appends a whole frame (length
header and body) to a reused ``bytearray``; :meth:`ControlDecoder.decode`
takes one frame body as cut by ``framing.FrameReader``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any, Final

import msgspec

from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.codec import Term, encode_failure, make_encoder, to_tagged, to_wire
from otpylib_dist.protocol.errors import EncodeError, RemoteProtocolError
from otpylib_dist.protocol.framing import DEFAULT_MAX_FRAME, HEADER_SIZE, TICK_FRAME
from otpylib_dist.protocol.shapes import FLAT_SHAPES, element_types, tuple_shape

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_BYTES",
    "ControlDecoder",
    "ControlEncoder",
    "ControlMessage",
    "Demonitor",
    "Exit",
    "Exit2",
    "Fragment",
    "FragmentAck",
    "Link",
    "Monitor",
    "MonitorExit",
    "MonitorSend",
    "NodeRpc",
    "NodeRpcReply",
    "Peers",
    "RegSend",
    "Send",
    "SendRun",
    "SpawnReply",
    "SpawnRequest",
    "Unlink",
]


class _Control(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Base of all control messages (configuration only)."""


class Link(_Control, tag=1, frozen=True):
    """``link/1`` across nodes: ``from_`` links itself to ``to`` (DOP_LINK)."""

    from_: Pid
    to: Pid


class Send(_Control, tag=2, frozen=True):
    """A message to a process by pid (DOP_SEND). ``payload``: a term."""

    to: Pid
    payload: Term


class Exit(_Control, tag=3, frozen=True):
    """A link broke: ``from_`` ended or found ``to`` gone (DOP_EXIT).

    ``reason``: a term from ``encode_reason``.
    """

    from_: Pid
    to: Pid
    reason: Term


class Unlink(_Control, tag=4, frozen=True):
    """``unlink/1`` across nodes (DOP_UNLINK)."""

    from_: Pid
    to: Pid


class RegSend(_Control, tag=6, frozen=True):
    """A message to a registered name on the receiving node (DOP_REG_SEND).

    ``sender`` is None when the send came from outside any process.
    """

    sender: Pid | None
    name: str
    payload: Term


class Exit2(_Control, tag=8, frozen=True):
    """An ``exit/2`` signal from ``from_`` to ``to`` (DOP_EXIT2)."""

    from_: Pid
    to: Pid
    reason: Term


class Monitor(_Control, tag=19, frozen=True):
    """``monitor(process, target)``: ``owner`` watches ``target`` (DOP_MONITOR_P).

    ``target`` is a pid, or a name registered on the receiving node.
    """

    owner: Pid
    target: Pid | str
    ref: Ref


class Demonitor(_Control, tag=20, frozen=True):
    """``demonitor/1`` across nodes (DOP_DEMONITOR_P)."""

    owner: Pid
    target: Pid | str
    ref: Ref


class MonitorExit(_Control, tag=21, frozen=True):
    """The monitored ``target`` ended: deliver DOWN to ``owner`` (DOP_MONITOR_P_EXIT)."""

    target: Pid | str
    owner: Pid
    ref: Ref
    reason: Term


class SpawnRequest(_Control, tag=29, frozen=True):
    """Spawn ``function`` on the receiving node (DOP_SPAWN_REQUEST).

    Differs from Erlang: the function is named as ``"package.module:function"``
    and must be importable there; ``args`` is a term ``(args_tuple,
    kwargs_dict)``. ``link`` / ``monitor`` set up the relation with ``sender``
    atomically, as ``spawn_link`` / ``spawn_monitor`` do; ``name`` registers
    the new process.
    """

    ref: Ref
    sender: Pid
    function: str
    args: Term
    link: bool = False
    monitor: bool = False
    trap_exits: bool = False
    name: str | None = None


class SpawnReply(_Control, tag=31, frozen=True):
    """Answer to :class:`SpawnRequest` ``ref`` (DOP_SPAWN_REPLY).

    ``result`` is the new Pid when ``ok``, else the reason it failed.
    """

    ref: Ref
    ok: bool
    result: Term


class NodeRpc(_Control, tag=64, frozen=True):
    """A question to the receiving node itself (``ping``, ``nodes``, ``processes``,
    ``statistics``, ``stop``), answered by :class:`NodeRpcReply` with the same ref.

    Differs from Erlang, which asks the ``rex`` server with a REG_SEND.
    """

    ref: Ref
    op: str
    arg: Term


class NodeRpcReply(_Control, tag=65, frozen=True):
    """Answer to :class:`NodeRpc` ``ref``: ``result`` if ``ok``, else an explanation."""

    ref: Ref
    ok: bool
    result: Term


class Peers(_Control, tag=66, frozen=True):
    """The sender's listening port and the visible nodes it is connected to.

    Sent once, right after a connection comes up, to a peer whose handshake
    flags say it understands it (``Flags.PEERS``): the receiver learns where
    the sender and its peers listen, and connects to those it lacks (Erlang's
    ``connect_all``: a cluster meshes however it was first joined).
    ``nodes`` holds ``(name, host, port)``; a port of 0 means "not known".

    Differs from Erlang, where ``global`` exchanges node lists after connect.
    """

    port: int
    nodes: list[tuple[str, str, int]]


class SendRun(_Control, tag=67, frozen=True):
    """Several messages to one pid, all of one shape, in one frame: a *run*.

    ``items`` is a msgpack array of the messages' values, each of ``shape``
    (``shapes.py``), so the receiver decodes all of them with one typed
    msgspec call and appends them to the mailbox at once. The sender opens a
    run only for messages queued within one loop step and closes it before
    any other frame, so per-pair order of messages and signals holds. Sent
    only to a peer whose handshake flags include ``Flags.RUNS``.

    Differs from Erlang, which sends one distribution message per frame
    (but packs small ones into one TCP write, as we also do).
    """

    to: Pid | str  # a pid, or a name registered on the receiving node
    shape: bytes
    items: msgspec.Raw


class Fragment(_Control, tag=68, frozen=True):
    """A piece of one large frame body (``fragments.py``).

    ``seq`` numbers the message (from 1, per connection), ``total`` is its
    whole body's size (the same in every fragment), ``data`` the next
    bytes of it. The receiver decodes the joined body as one control
    message once ``total`` bytes arrived. Sent only to a peer whose
    handshake flags include ``Flags.FRAGMENTS``.

    Differs from Erlang, whose fragment header counts fragments down and
    carries the control message in the first one only.
    """

    seq: int
    total: int
    data: memoryview  # decoded as a view of the frame: no copy until reassembly


class FragmentAck(_Control, tag=69, frozen=True):
    """The receiver took ``count`` more fragments: the sender may send as many more.

    The window that keeps a large message from filling the socket buffers
    (``fragments.WINDOW``); Erlang has no equivalent.
    """

    count: int


class MonitorSend(_Control, tag=70, frozen=True):
    """:class:`Monitor` then :class:`Send` to the same pid, in one frame.

    ``owner`` monitors ``target`` (with ``ref``), then ``payload`` is
    delivered to it: what every remote ``gen_server.call`` starts with, one
    frame to encode, decode and dispatch instead of two. Sent only to a
    peer whose handshake flags include ``Flags.MONITOR_SEND``.

    Differs from Erlang, which sends DOP_MONITOR_P and then the message.
    """

    owner: Pid
    target: Pid
    ref: Ref
    payload: Term


#: Every control message a peer may send.
ControlMessage = (
    Link
    | Send
    | Exit
    | Unlink
    | RegSend
    | Exit2
    | Monitor
    | Demonitor
    | MonitorExit
    | SpawnRequest
    | SpawnReply
    | NodeRpc
    | NodeRpcReply
    | Peers
    | SendRun
    | Fragment
    | FragmentAck
    | MonitorSend
)


# Encode-only twins of Send and RegSend whose payload is a term not yet
# encoded (codec.to_wire output): same tag, same fields, same bytes.
class _SendTerm(_Control, tag=2, frozen=True):
    to: Pid
    payload: Any


class _MonitorSendTerm(_Control, tag=70, frozen=True):
    owner: Pid
    target: Pid
    ref: Ref
    payload: Any


class _RegSendTerm(_Control, tag=6, frozen=True):
    sender: Pid | None
    name: str
    payload: Any


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
        # target by identity first
        # (a sender loop passes the same object). Where the item starts is
        # where the last one ended (run_mark): nothing else writes to
        # ``out`` while a run is open. Written out: every opcode here is
        # paid per message of a burst.
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
        return self._term_into(_SendTerm, "Send", (to,), term, out)

    def monitor_send_into(
        self, owner: Pid, target: Pid, ref: Ref, term: Any, out: bytearray
    ) -> int:
        """Append ``MonitorSend(owner, target, ref, encode_term(term))`` as a frame, in one pass.

        Raises:
            EncodeError: as :meth:`send_into`.
        """
        return self._term_into(_MonitorSendTerm, "Send", (owner, target, ref), term, out)

    def reg_send_into(self, sender: Pid | None, name: str, term: Any, out: bytearray) -> int:
        """Append ``RegSend(sender, name, encode_term(term))`` as a frame, in one pass.

        Raises:
            EncodeError: as :meth:`send_into`.
        """
        return self._term_into(_RegSendTerm, "RegSend", (sender, name), term, out)

    def _term_into(
        self,
        kind: Callable[..., _Control],
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
_DECODE_ERRORS: Final = (msgspec.DecodeError, ValueError, TypeError, RecursionError)


class ControlDecoder:
    """Decodes control messages from frame bodies; build one per connection."""

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        decoder: msgspec.msgpack.Decoder[ControlMessage] = msgspec.msgpack.Decoder(ControlMessage)
        self._decode = decoder.decode

    def decode(self, frame: bytes | bytearray | memoryview) -> ControlMessage:
        """Decode one frame body (as cut by ``FrameReader``).

        Payload and reason fields stay encoded (``codec.Term``); pass them
        to ``codec.decode_term``.

        Raises:
            RemoteProtocolError: the frame is not a valid control message.
        """
        try:
            return self._decode(frame)
        except _DECODE_ERRORS as exc:
            raise RemoteProtocolError(f"malformed control message from peer: {exc}") from None
