"""What the handshake puts on the wire: its messages, limits and proofs.

The messages are frozen, ``array_like``, tagged msgspec Structs; their
field limits are declared as ``msgspec.Meta`` constraints, so a malformed
Hello is refused by the decoder before any of our code looks at it. They
are also the events a :class:`~otpylib_dist.protocol.handshake.Handshake`
returns (:class:`Hello` to an acceptor, :class:`Established` to both).
The state machine that uses them lives in ``handshake.py``.
"""

from __future__ import annotations

import enum
import hmac
import logging
from typing import Annotated, Final

import msgspec

from otpylib_dist.protocol.errors import RefusalReason, RemoteProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPTOR_LABEL",
    "INITIATOR_LABEL",
    "MAX_NAME_LENGTH",
    "MAX_NONCE_BYTES",
    "MAX_VERSION",
    "MIN_NONCE_BYTES",
    "MIN_VERSION",
    "PROOF_BYTES",
    "Challenge",
    "ChallengeAck",
    "ChallengeReply",
    "Established",
    "Flags",
    "HandshakeEvent",
    "Hello",
    "Refused",
    "WireMessage",
    "decode_wire",
    "encode_wire",
    "explain_foreign",
    "proof",
]

#: Protocol versions this code speaks. The Hello layout must stay readable
#: by every version, since it is how two versions find a common one.
MIN_VERSION: Final = 1
MAX_VERSION: Final = 1

#: Nonce sizes accepted: 128 bits is the least that makes a repeat
#: negligible; 64 bytes bounds what a peer can make us hash.
MIN_NONCE_BYTES: Final = 16
MAX_NONCE_BYTES: Final = 64
#: Node names are atoms in Erlang, limited to 255 characters.
MAX_NAME_LENGTH: Final = 255
#: HMAC-SHA256 output size.
PROOF_BYTES: Final = 32

#: Domain separation for the proofs: a digest made here is useless anywhere
#: else, and one side's proof never passes for the other's.
PROOF_DOMAIN: Final = b"otpylib-dist handshake proof v1\0"
INITIATOR_LABEL: Final = b"initiator\0"
ACCEPTOR_LABEL: Final = b"acceptor\0"

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
_Nonce = Annotated[bytes, msgspec.Meta(min_length=MIN_NONCE_BYTES, max_length=MAX_NONCE_BYTES)]
_Proof = Annotated[bytes, msgspec.Meta(min_length=PROOF_BYTES, max_length=PROOF_BYTES)]
_Version = Annotated[int, msgspec.Meta(ge=1, le=0xFFFF)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]


class Flags(enum.IntFlag):
    """Capability flags exchanged in the handshake (unknown bits are ignored)."""

    HIDDEN = 1  # a hidden node: not listed by nodes(), not told of other nodes
    PEERS = 2  # understands the Peers control message (connect_all)
    RUNS = 4  # understands SendRun frames (several messages to one pid in one frame)
    FRAGMENTS = 8  # sends and reads large messages in Fragment frames, acknowledged
    MONITOR_SEND = 16  # reads MonitorSend (a monitor and a message in one frame)


class _Wire(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Base of handshake messages (configuration only)."""


class Hello(_Wire, tag="otpy.hello", frozen=True):
    """Initiator -> acceptor: who we are, which versions we speak, our nonce.

    Also the event the acceptor's I/O layer decides on.
    """

    min_version: _Version
    max_version: _Version
    name: _Name
    creation: _Count
    flags: _Count
    nonce: _Nonce


class Challenge(_Wire, tag="otpy.challenge", frozen=True):
    """Acceptor -> initiator: the chosen version, who we are, our nonce."""

    version: _Version
    name: _Name
    creation: _Count
    flags: _Count
    nonce: _Nonce


class ChallengeReply(_Wire, tag="otpy.reply", frozen=True):
    """Initiator -> acceptor: the initiator's proof."""

    proof: _Proof

    def __repr__(self) -> str:
        return "ChallengeReply(proof=<hidden>)"


class ChallengeAck(_Wire, tag="otpy.ack", frozen=True):
    """Acceptor -> initiator: the acceptor's proof."""

    proof: _Proof

    def __repr__(self) -> str:
        return "ChallengeAck(proof=<hidden>)"


class Refused(_Wire, tag="otpy.refused", frozen=True):
    """Either side: the handshake is refused, and why."""

    reason: RefusalReason


class Established(msgspec.Struct, frozen=True, gc=False):
    """Event: both sides proved the cookie; the connection is up.

    Attributes:
        peer_name: the peer's node name.
        peer_creation: the peer's creation (tells its restarts apart).
        peer_flags: the peer's :class:`Flags`.
        version: the protocol version both sides speak from now on.
    """

    peer_name: str
    peer_creation: int
    peer_flags: int
    version: int

    @property
    def peer_hidden(self) -> bool:
        """Whether the peer is a hidden node."""
        return bool(self.peer_flags & Flags.HIDDEN)


#: What ``Handshake.next_event`` returns besides ``NEED_DATA``.
HandshakeEvent = Hello | Established
#: Every handshake message on the wire.
WireMessage = Hello | Challenge | ChallengeReply | ChallengeAck | Refused
decode_wire = msgspec.msgpack.Decoder(WireMessage).decode
encode_wire = msgspec.msgpack.Encoder().encode


def proof(cookie: bytes, label: bytes, hello_body: bytes, challenge_body: bytes) -> bytes:
    """HMAC-SHA256 proof of the cookie over the exact Hello and Challenge bodies.

    ``label`` is :data:`INITIATOR_LABEL` or :data:`ACCEPTOR_LABEL`. Each
    body is length-prefixed, so no two transcripts hash alike.
    """
    mac = hmac.new(cookie, PROOF_DOMAIN, "sha256")
    mac.update(label)
    for part in (hello_body, challenge_body):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()


def explain_foreign(first_bytes: bytes, exc: RemoteProtocolError) -> RemoteProtocolError:
    """Say what a peer that does not speak our protocol seems to speak.

    Called with the first bytes received when the first frame is not a
    valid handshake message.
    """
    first = first_bytes
    if first[:1] in (b"\x15", b"\x16") and first[1:2] == b"\x03":
        return RemoteProtocolError(
            "peer speaks TLS, but this connection is plain TCP; enable TLS on both "
            "nodes or on neither"
        )
    if first[:4] in _HTTP_STARTS:
        return RemoteProtocolError(
            f"peer sent what looks like HTTP ({first[:4]!r}...); this port speaks the "
            "otpylib distribution protocol, not HTTP"
        )
    return RemoteProtocolError(
        f"peer does not speak the otpylib distribution protocol ({exc}; first bytes "
        f"{first.hex(' ')}); check that the address belongs to an otpylib node"
    )


# First four bytes of HTTP/1 requests (by method), an HTTP/2 preface, an HTTP response.
_HTTP_STARTS: Final = frozenset(
    b"GET |POST|PUT |HEAD|DELE|OPTI|PATC|CONN|TRAC|PRI |HTTP".split(b"|")
)
