"""The sans-I/O distribution protocol: bytes in, events and bytes out.

No sockets, no event loop, no clock and no randomness in here: the caller
(``otpylib_dist.connection``) moves the bytes and passes in the time and
the nonces, so every behaviour is testable with plain function calls.
Import-linter checks that nothing here imports asyncio, sockets or the node.

Layout (lower layers first; each module imports only those above it)::

    errors.py     ProtocolError (Local / Remote), FrameTooLarge, HandshakeRefused, EncodeError
    framing.py    4-byte length-prefixed frames; FrameReader; TICK
    registry.py   msgspec.Struct types allowed on the wire, by name
    shapes.py     shape signatures: typed msgspec decoding of common terms
    codec.py      the term codec: encode_term / decode_term / encode_reason
    control.py    control messages (SEND, LINK, EXIT, MONITOR, ...) and their codec
    handshake_wire.py  handshake messages (Hello, Challenge, ...), limits, the cookie proof
    handshake.py  the handshake state machine; simultaneous-connect tie-break
    ticks.py      the tick decision (send a tick / peer silent)
    tls_layer.py  TLS as a MemoryBIO layer
    epmd_wire.py  the port mapper's wire format (EPMD's), both sides
    dns_wire.py   DNS SRV query / answer codec (for discovery on Kubernetes)

The package exports only what users meet (the errors and ``register_struct``);
the rest is imported from its module by the layers that need it.
"""

from otpylib_dist.protocol.errors import (
    EncodeError,
    FrameTooLarge,
    HandshakeRefused,
    LocalProtocolError,
    ProtocolError,
    RefusalReason,
    RemoteProtocolError,
)
from otpylib_dist.protocol.registry import register_struct

__all__ = [
    "EncodeError",
    "FrameTooLarge",
    "HandshakeRefused",
    "LocalProtocolError",
    "ProtocolError",
    "RefusalReason",
    "RemoteProtocolError",
    "register_struct",
]
