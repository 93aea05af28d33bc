"""EPMD's wire format, both sides, as pure functions over bytes (no sockets).

EPMD (Erlang's port mapper) maps node short names to the ports their
distribution listeners use. A node registers with the mapper of its own
host (ALIVE2) and keeps that TCP connection open: the mapper drops the
registration when the connection closes. To reach ``short@host`` a node
asks the mapper on ``host`` (PORT_PLEASE2). The client
(``otpylib_dist.discovery.epmd``) and our mapper
(``otpylib_dist.discovery.epmd_server``) only move these bytes.

Wire summary (all integers big-endian). Every request is a 2-byte length and
the request bytes, whose first byte is the request code; replies are not
length-prefixed:

=================  ===========================================================
ALIVE2_REQ  120    port:2 node_type:1 protocol:1 highest:2 lowest:2
                   name_len:2 name extra_len:2 extra
ALIVE2_RESP 121    result:1 creation:2   (ALIVE2_X_RESP 118: creation:4)
PORT_PLEASE2 122   name
PORT2_RESP  119    result:1, then if result is 0: port:2 node_type:1
                   protocol:1 highest:2 lowest:2 name_len:2 name
                   extra_len:2 extra
NAMES_REQ   110    (nothing); reply: epmd_port:4 then text lines
                   ``name NAME at port PORT``, until the mapper closes
KILL_REQ    107    (nothing); reply ``OK`` (the mapper then stops) or ``NO``
=================  ===========================================================
"""

from __future__ import annotations

import enum
import logging
import re
import struct
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "EPMD_PORT",
    "HIGHEST_VERSION",
    "KILL_REQ",
    "LOWEST_VERSION",
    "MAX_NAME",
    "NAMES_REQ",
    "NEED_DATA",
    "NODE_TYPE_HIDDEN",
    "NODE_TYPE_NORMAL",
    "OTPYLIB_EXTRA",
    "PORT2_RESP",
    "PORT_PLEASE2_REQ",
    "PROTOCOL_TCP_IPV4",
    "Alive2Reply",
    "Alive2Request",
    "EpmdProtocolError",
    "EpmdRequest",
    "KillRequest",
    "NamesRequest",
    "NeedData",
    "NodeEntry",
    "PortNotFound",
    "PortPlease2Request",
    "decode_alive2_resp",
    "decode_kill_resp",
    "decode_names_resp",
    "decode_port2_resp",
    "decode_request",
    "encode_alive2_req",
    "encode_alive2_resp",
    "encode_kill_req",
    "encode_kill_resp",
    "encode_names_req",
    "encode_names_resp",
    "encode_port2_resp",
    "encode_port_please2_req",
]

#: The port a mapper listens on unless told otherwise (IANA-registered; the
#: environment variable ``ERL_EPMD_PORT`` changes it, as for Erlang).
EPMD_PORT: Final = 4369

#: Register a node (its connection then holds the registration): ``x``.
ALIVE2_REQ: Final = 120
#: Registration reply with a 16-bit creation (EPMD before OTP 23): ``y``.
ALIVE2_RESP: Final = 121
#: Registration reply with a 32-bit creation: ``v``.
ALIVE2_X_RESP: Final = 118
#: Ask for a node's port by short name: ``z``.
PORT_PLEASE2_REQ: Final = 122
#: Reply to PORT_PLEASE2_REQ: ``w``.
PORT2_RESP: Final = 119
#: List every registered name: ``n``.
NAMES_REQ: Final = 110
#: Ask the mapper to stop (``epmd -kill``): ``k``.
KILL_REQ: Final = 107

#: Node type of a visible node ('M').
NODE_TYPE_NORMAL: Final = 77
#: Node type of a hidden node ('H').
NODE_TYPE_HIDDEN: Final = 72
#: Transport protocol 0: TCP over IPv4.
PROTOCOL_TCP_IPV4: Final = 0
#: Distribution versions we announce. A mapper answers ALIVE2_X_RESP (32-bit
#: creation) when highest >= 6; they are not our own protocol's versions.
HIGHEST_VERSION: Final = 6
LOWEST_VERSION: Final = 5
#: Marks a registration as an otpylib node (the ``extra`` field).
OTPYLIB_EXTRA: Final = b"otpylib"
#: Longest name a mapper accepts (EPMD's MAXSYMLEN).
MAX_NAME: Final = 255


class NeedData(enum.Enum):
    """The type of ``NEED_DATA``."""

    NEED_DATA = "NEED_DATA"


#: Returned by decoders when the bytes so far are a valid prefix of a message.
NEED_DATA: Final = NeedData.NEED_DATA


class EpmdProtocolError(DistError, ValueError):
    """Raised when mapper bytes are malformed, or a request cannot be encoded.

    Seen by a client talking to a real mapper, it means something else
    listens on the port; seen by our mapper, the client is not speaking EPMD.
    """


@dataclass(frozen=True, slots=True)
class Alive2Reply:
    """The mapper's answer to a registration: ``result`` 0 means registered."""

    #: 0 on success; anything else is a refusal (usually: name taken).
    result: int
    #: The mapper's creation number for this incarnation of the name.
    creation: int


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """A registration: what ALIVE2_REQ carries and PORT2_RESP reports."""

    #: The registered short name.
    name: str
    #: Where the node's distribution listener is.
    port: int
    #: 77 for a visible node, 72 for a hidden one.
    node_type: int = NODE_TYPE_NORMAL
    #: 0 for TCP over IPv4.
    protocol: int = PROTOCOL_TCP_IPV4
    #: Range of Erlang distribution versions the node announced.
    highest_version: int = HIGHEST_VERSION
    lowest_version: int = LOWEST_VERSION
    #: Free-form bytes; ``b"otpylib"`` marks our nodes.
    extra: bytes = OTPYLIB_EXTRA


@dataclass(frozen=True, slots=True)
class PortNotFound:
    """PORT2_RESP with a non-zero result: no node of that name is registered."""

    #: The mapper's non-zero result code.
    result: int


@dataclass(frozen=True, slots=True)
class Alive2Request:
    """A node registering (ALIVE2_REQ), as the mapper decodes it."""

    entry: NodeEntry


@dataclass(frozen=True, slots=True)
class PortPlease2Request:
    """A client asking for ``name``'s port (PORT_PLEASE2_REQ)."""

    name: str


@dataclass(frozen=True, slots=True)
class NamesRequest:
    """A client asking for every registered name (NAMES_REQ)."""


@dataclass(frozen=True, slots=True)
class KillRequest:
    """A client asking the mapper to stop (KILL_REQ, ``epmd -kill``)."""


#: What ``decode_request`` returns for a complete request.
EpmdRequest: TypeAlias = Alive2Request | PortPlease2Request | NamesRequest | KillRequest


# ------------------------------------------------------------------ client


def _encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) > MAX_NAME or b"@" in raw:
        raise EpmdProtocolError(
            f"EPMD name {name!r} must be 1-{MAX_NAME} bytes without '@' (the short name)"
        )
    return raw


def _frame(request: bytes) -> bytes:
    return struct.pack(">H", len(request)) + request


_ALIVE2_FIXED: Final = ">HBBHHH"


def encode_alive2_req(
    name: str,
    port: int,
    *,
    node_type: int = NODE_TYPE_NORMAL,
    protocol: int = PROTOCOL_TCP_IPV4,
    highest_version: int = HIGHEST_VERSION,
    lowest_version: int = LOWEST_VERSION,
    extra: bytes = OTPYLIB_EXTRA,
) -> bytes:
    """Return the framed ALIVE2_REQ registering ``name`` (a short name) at ``port``."""
    raw = _encode_name(name)
    if not 0 < port < 65536:
        raise EpmdProtocolError(f"port {port} is not in 1..65535")
    body = bytes([ALIVE2_REQ]) + struct.pack(
        _ALIVE2_FIXED, port, node_type, protocol, highest_version, lowest_version, len(raw)
    )
    return _frame(body + raw + struct.pack(">H", len(extra)) + extra)


def encode_port_please2_req(name: str) -> bytes:
    """Return the framed PORT_PLEASE2_REQ asking for ``name``'s port."""
    return _frame(bytes([PORT_PLEASE2_REQ]) + _encode_name(name))


def encode_names_req() -> bytes:
    """Return the framed NAMES_REQ asking for every registered name."""
    return _frame(bytes([NAMES_REQ]))


def encode_kill_req() -> bytes:
    """Return the framed KILL_REQ asking the mapper to stop."""
    return _frame(bytes([KILL_REQ]))


def decode_alive2_resp(buf: bytes) -> Alive2Reply | Literal[NeedData.NEED_DATA]:
    """Decode ALIVE2_RESP or ALIVE2_X_RESP from the start of ``buf``.

    Raises:
        EpmdProtocolError: the first byte is neither reply code.
    """
    if not buf:
        return NEED_DATA
    code = buf[0]
    if code == ALIVE2_X_RESP:
        if len(buf) < 6:
            return NEED_DATA
        result, creation = struct.unpack_from(">BI", buf, 1)
    elif code == ALIVE2_RESP:
        if len(buf) < 4:
            return NEED_DATA
        result, creation = struct.unpack_from(">BH", buf, 1)
    else:
        raise EpmdProtocolError(f"expected an ALIVE2 reply (118 or 121), got code {code}")
    return Alive2Reply(result=result, creation=creation)


def _decode_entry(buf: bytes, at: int, what: str) -> tuple[NodeEntry, int] | NeedData:
    """Decode the ALIVE2 / PORT2 node fields starting at ``at``; also the end offset."""
    head = at + struct.calcsize(_ALIVE2_FIXED)
    if len(buf) < head:
        return NEED_DATA
    port, node_type, protocol, highest, lowest, name_len = struct.unpack_from(
        _ALIVE2_FIXED, buf, at
    )
    if len(buf) < head + name_len + 2:
        return NEED_DATA
    raw_name = bytes(buf[head : head + name_len])
    (extra_len,) = struct.unpack_from(">H", buf, head + name_len)
    extra_at = head + name_len + 2
    if len(buf) < extra_at + extra_len:
        return NEED_DATA
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EpmdProtocolError(f"{what} name {raw_name!r} is not UTF-8") from exc
    entry = NodeEntry(
        name=name,
        port=port,
        node_type=node_type,
        protocol=protocol,
        highest_version=highest,
        lowest_version=lowest,
        extra=bytes(buf[extra_at : extra_at + extra_len]),
    )
    return entry, extra_at + extra_len


def decode_port2_resp(buf: bytes) -> NodeEntry | PortNotFound | Literal[NeedData.NEED_DATA]:
    """Decode PORT2_RESP from the start of ``buf``.

    Raises:
        EpmdProtocolError: wrong reply code or a name that is not UTF-8.
    """
    if buf and buf[0] != PORT2_RESP:
        raise EpmdProtocolError(f"expected PORT2_RESP (119), got code {buf[0]}")
    if len(buf) < 2:
        return NEED_DATA
    if buf[1] != 0:
        return PortNotFound(result=buf[1])
    decoded = _decode_entry(buf, 2, "PORT2_RESP")
    if isinstance(decoded, NeedData):
        return NEED_DATA
    return decoded[0]


_NAMES_LINE: Final = re.compile(rb"^name (.+) at port (\d+)$")


def decode_names_resp(buf: bytes) -> tuple[int, dict[str, int]]:
    """Decode a complete NAMES reply (everything the mapper sent before closing).

    Returns:
        The mapper's own port and a mapping of registered short names to
        ports. Lines that do not match ``name NAME at port PORT`` are skipped.

    Raises:
        EpmdProtocolError: fewer than the 4 bytes of the mapper's port.
    """
    if len(buf) < 4:
        raise EpmdProtocolError(f"NAMES reply too short ({len(buf)} bytes, need 4)")
    (epmd_port,) = struct.unpack_from(">I", buf, 0)
    names: dict[str, int] = {}
    for line in buf[4:].split(b"\n"):
        match = _NAMES_LINE.match(line)
        if match is None:
            if line:
                logger.debug("EPMD NAMES: skipping line %r", line)
            continue
        names[match.group(1).decode("utf-8", "replace")] = int(match.group(2))
    return epmd_port, names


def decode_kill_resp(buf: bytes) -> bool | Literal[NeedData.NEED_DATA]:
    """Decode the answer to KILL_REQ: True for ``OK`` (stopping), False for ``NO``.

    Raises:
        EpmdProtocolError: anything but ``OK`` or ``NO``.
    """
    if len(buf) < 2:
        if buf and buf[:1] not in (b"O", b"N"):
            raise EpmdProtocolError(f"expected OK or NO after KILL_REQ, got {bytes(buf)!r}")
        return NEED_DATA
    if buf[:2] == b"OK":
        return True
    if buf[:2] == b"NO":
        return False
    raise EpmdProtocolError(f"expected OK or NO after KILL_REQ, got {bytes(buf[:2])!r}")


# ------------------------------------------------------------------ mapper


def decode_request(buf: bytes) -> tuple[EpmdRequest, int] | Literal[NeedData.NEED_DATA]:
    """Decode one framed request from the start of ``buf``; also the bytes it used.

    Raises:
        EpmdProtocolError: an empty or unknown request, or a malformed one
            (its fields do not fill its length exactly, a name that is empty,
            too long or not UTF-8).
    """
    if len(buf) < 2:
        return NEED_DATA
    (length,) = struct.unpack_from(">H", buf, 0)
    if length == 0:
        raise EpmdProtocolError("empty EPMD request (length 0)")
    if len(buf) < 2 + length:
        return NEED_DATA
    body = bytes(buf[2 : 2 + length])
    code = body[0]
    request: EpmdRequest
    if code == ALIVE2_REQ:
        decoded = _decode_entry(body, 1, "ALIVE2_REQ")
        if isinstance(decoded, NeedData) or decoded[1] != length:
            raise EpmdProtocolError(f"malformed ALIVE2_REQ ({length} bytes)")
        entry = decoded[0]
        _check_name(entry.name)
        request = Alive2Request(entry)
    elif code == PORT_PLEASE2_REQ:
        try:
            name = body[1:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EpmdProtocolError(f"PORT_PLEASE2_REQ name {body[1:]!r} is not UTF-8") from exc
        _check_name(name)
        request = PortPlease2Request(name)
    elif code == NAMES_REQ and length == 1:
        request = NamesRequest()
    elif code == KILL_REQ and length == 1:
        request = KillRequest()
    else:
        raise EpmdProtocolError(f"unknown EPMD request code {code} ({length} bytes)")
    return request, 2 + length


def _check_name(name: str) -> None:
    if not name or len(name.encode("utf-8")) > MAX_NAME:
        raise EpmdProtocolError(f"EPMD name {name!r} must be 1-{MAX_NAME} bytes")


def encode_alive2_resp(result: int, creation: int, *, extended: bool = True) -> bytes:
    """Return the reply to ALIVE2_REQ: ALIVE2_X_RESP (32-bit creation) or ALIVE2_RESP.

    ``extended`` is what a mapper answers to a node announcing highest
    version 6 or more; older nodes get the 16-bit form.
    """
    if extended:
        return struct.pack(">BBI", ALIVE2_X_RESP, result, creation & 0xFFFFFFFF)
    return struct.pack(">BBH", ALIVE2_RESP, result, creation & 0xFFFF)


def encode_port2_resp(entry: NodeEntry | None) -> bytes:
    """Return PORT2_RESP for ``entry``, or the not-found answer (result 1) for ``None``."""
    if entry is None:
        return bytes([PORT2_RESP, 1])
    raw = entry.name.encode("utf-8")
    return (
        bytes([PORT2_RESP, 0])
        + struct.pack(
            _ALIVE2_FIXED,
            entry.port,
            entry.node_type,
            entry.protocol,
            entry.highest_version,
            entry.lowest_version,
            len(raw),
        )
        + raw
        + struct.pack(">H", len(entry.extra))
        + entry.extra
    )


def encode_names_resp(epmd_port: int, names: dict[str, int]) -> bytes:
    """Return the whole NAMES reply: the mapper's port, then one line per name."""
    lines = "".join(f"name {name} at port {port}\n" for name, port in names.items())
    return struct.pack(">I", epmd_port) + lines.encode("utf-8")


def encode_kill_resp(accepted: bool) -> bytes:
    """Return the answer to KILL_REQ: ``OK`` when the mapper stops, else ``NO``."""
    return b"OK" if accepted else b"NO"
