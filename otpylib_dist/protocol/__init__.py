"""The sans-I/O distribution protocol: bytes in, events and bytes out.

No sockets, no event loop, no clock and no randomness in here: the caller
(``otpylib_dist.connection``) moves the bytes and passes in the time and
the nonces, so every behaviour is testable with plain function calls.

Layout (lower layers first; each module imports only those above it)::

    errors.py     ProtocolError (Local / Remote), FrameTooLarge, HandshakeRefused, EncodeError
    framing.py    4-byte length-prefixed frames; FrameReader; TICK; write helpers
    registry.py   msgspec.Struct types allowed on the wire, by name
    shapes.py     shape signatures: typed msgspec decoding of common terms
    codec.py      the term codec: encode_term / decode_term / encode_reason
    control.py    control messages (SEND, LINK, EXIT, MONITOR, ...) and their codec
    handshake_wire.py  handshake messages (Hello, Challenge, ...), limits, the cookie proof
    handshake.py  the handshake state machine; simultaneous-connect tie-break
    ticks.py      the tick decision (send a tick / peer silent)
    epmd_wire.py  the port mapper's wire format (EPMD's), both sides
    dns_wire.py   DNS SRV query / answer codec (for discovery on Kubernetes)
"""

from otpylib_dist.protocol.codec import (
    RemoteException,
    Term,
    decode_term,
    encode_reason,
    encode_term,
)
from otpylib_dist.protocol.control import ControlDecoder, ControlEncoder, ControlMessage
from otpylib_dist.protocol.errors import (
    EncodeError,
    FrameTooLarge,
    HandshakeRefused,
    LocalProtocolError,
    ProtocolError,
    RefusalReason,
    RemoteProtocolError,
)
from otpylib_dist.protocol.framing import (
    DEFAULT_MAX_FRAME,
    MAX_HANDSHAKE_FRAME,
    NEED_DATA,
    TICK,
    TICK_FRAME,
    FrameReader,
    encode_frame,
)
from otpylib_dist.protocol.handshake import (
    Established,
    Handshake,
    Hello,
    Role,
    State,
    simultaneous_winner,
)
from otpylib_dist.protocol.registry import register_struct
from otpylib_dist.protocol.ticks import TickAction, Ticker

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAX_HANDSHAKE_FRAME",
    "NEED_DATA",
    "TICK",
    "TICK_FRAME",
    "ControlDecoder",
    "ControlEncoder",
    "ControlMessage",
    "EncodeError",
    "Established",
    "FrameReader",
    "FrameTooLarge",
    "Handshake",
    "HandshakeRefused",
    "Hello",
    "LocalProtocolError",
    "ProtocolError",
    "RefusalReason",
    "RemoteException",
    "RemoteProtocolError",
    "Role",
    "State",
    "Term",
    "TickAction",
    "Ticker",
    "decode_term",
    "encode_frame",
    "encode_reason",
    "encode_term",
    "register_struct",
    "simultaneous_winner",
]
