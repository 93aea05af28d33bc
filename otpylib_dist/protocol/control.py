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
produced by ``encode_term`` is embedded as it is. The encoder
(``control_encoder.py``) goes further on the fast path: it encodes the
header and the term in one msgspec call, straight into the output buffer.

Frames: ``ControlEncoder.encode_into`` appends a whole frame (length header
and body) to a reused ``bytearray``; :meth:`ControlDecoder.decode` takes one
frame body as cut by ``framing.FrameReader``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.codec import Term
from otpylib_dist.protocol.errors import RemoteProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "ControlDecoder",
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
    "MonitorSendTerm",
    "NodeRpc",
    "NodeRpcReply",
    "Peers",
    "RegSend",
    "RegSendTerm",
    "Send",
    "SendRun",
    "SendTerm",
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


# Encode-only twins of Send, MonitorSend and RegSend whose payload is a term
# not yet encoded (codec.to_wire output): same tag, same fields, same bytes.
# For the encoder (control_encoder.py); never decoded.
class SendTerm(_Control, tag=2, frozen=True):
    to: Pid
    payload: Any


class MonitorSendTerm(_Control, tag=70, frozen=True):
    owner: Pid
    target: Pid
    ref: Ref
    payload: Any


class RegSendTerm(_Control, tag=6, frozen=True):
    sender: Pid | None
    name: str
    payload: Any


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
