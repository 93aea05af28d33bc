"""DNS wire format for SRV lookups, as pure functions over bytes (no sockets).

What ``otpylib_dist.discovery.dns`` sends and reads: a query for one SRV
name, and the SRV and A records of the answer (RFC 1035; RFC 2782 for SRV;
RFC 6891 for the EDNS(0) record that allows answers over 512 bytes). The
standard library can only look up addresses, hence this small codec.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from dataclasses import dataclass
from typing import Final

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_IN",
    "TYPE_A",
    "TYPE_SRV",
    "DnsProtocolError",
    "DnsResponse",
    "SrvRecord",
    "decode_response",
    "encode_name",
    "encode_query",
]

#: Record type of an IPv4 address.
TYPE_A: Final = 1
#: Record type of a service location (RFC 2782).
TYPE_SRV: Final = 33
_TYPE_OPT: Final = 41
#: The Internet class, the only one we ask for.
CLASS_IN: Final = 1

#: UDP payload size we advertise with EDNS(0): the DNS Flag Day 2020 value,
#: which avoids IP fragmentation on any path; bigger answers come over TCP.
_EDNS_PAYLOAD: Final = 1232
#: Largest UDP datagram we accept (EDNS allows servers up to 64 KiB).
_MAX_UDP: Final = 65535
#: Pointer hops allowed while decoding one name: more means a loop.
_MAX_POINTER_HOPS: Final = 64

_HEADER: Final = struct.Struct(">HHHHHH")
_RR_FIXED: Final = struct.Struct(">HHIH")
_FLAG_QR: Final = 0x8000
_FLAG_TC: Final = 0x0200
_FLAG_RD: Final = 0x0100


class DnsProtocolError(DistError, ValueError):
    """Raised for a malformed DNS message, or a name that cannot be encoded."""


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV record: a service instance at ``target:port`` (RFC 2782)."""

    #: Lower is preferred.
    priority: int
    #: Share among records of equal priority.
    weight: int
    #: Where the instance listens.
    port: int
    #: Host name of the instance, lower case, without the trailing dot.
    target: str


@dataclass(frozen=True, slots=True)
class DnsResponse:
    """What we need from a DNS reply: its status and its SRV and A records."""

    #: Echo of the query's id.
    query_id: int
    #: Response code: 0 no error, 3 NXDOMAIN (no such name), others failures.
    rcode: int
    #: The server cut the answer to fit UDP; ask again over TCP.
    truncated: bool
    #: SRV records of the answer section.
    srv: tuple[SrvRecord, ...]
    #: A records from any section: (lower-case name, IPv4 address). Servers
    #: often add the targets' addresses to the additional section.
    addresses: tuple[tuple[str, str], ...]


def encode_name(name: str) -> bytes:
    """Encode a domain name as DNS labels (no compression).

    Raises:
        DnsProtocolError: an empty or over-long label, a non-ASCII name, or a
            name over 255 bytes.
    """
    out = bytearray()
    text = name.rstrip(".")
    if text:
        for label in text.split("."):
            try:
                raw = label.encode("ascii")
            except UnicodeEncodeError as exc:
                raise DnsProtocolError(f"DNS name {name!r} is not ASCII") from exc
            if not 0 < len(raw) <= 63:
                raise DnsProtocolError(f"DNS name {name!r} has an empty or >63-byte label")
            out += bytes([len(raw)]) + raw
    out += b"\0"
    if len(out) > 255:
        raise DnsProtocolError(f"DNS name {name!r} is longer than 255 bytes")
    return bytes(out)


def encode_query(
    query_id: int, name: str, qtype: int = TYPE_SRV, *, edns_payload: int | None = _EDNS_PAYLOAD
) -> bytes:
    """Return a recursive DNS query for ``name``/``qtype`` (class IN).

    With ``edns_payload`` an EDNS(0) OPT record advertises that UDP size, so
    answers listing many pods need not fall back to TCP.
    """
    header = _HEADER.pack(query_id & 0xFFFF, _FLAG_RD, 1, 0, 0, 1 if edns_payload else 0)
    question = encode_name(name) + struct.pack(">HH", qtype, CLASS_IN)
    opt = b""
    if edns_payload:
        opt = b"\0" + _RR_FIXED.pack(_TYPE_OPT, edns_payload, 0, 0)
    return header + question + opt


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode the (possibly compressed) name at ``offset``; return it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    total = 0
    while True:
        if offset >= len(msg):
            raise DnsProtocolError("DNS name runs past the end of the message")
        length = msg[offset]
        kind = length & 0xC0
        if kind == 0xC0:
            if offset + 1 >= len(msg):
                raise DnsProtocolError("DNS name pointer runs past the end of the message")
            hops += 1
            if hops > _MAX_POINTER_HOPS:
                raise DnsProtocolError("DNS name compression loops")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        if kind:
            raise DnsProtocolError(f"unsupported DNS label type 0x{kind:02x}")
        offset += 1
        if length == 0:
            break
        label = msg[offset : offset + length]
        if len(label) < length:
            raise DnsProtocolError("DNS label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise DnsProtocolError("DNS name longer than 255 bytes")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels), end if end is not None else offset


def decode_response(msg: bytes) -> DnsResponse:
    """Decode a DNS reply, keeping SRV answers and A records.

    Raises:
        DnsProtocolError: the message is not a reply or is malformed.
    """
    if len(msg) < _HEADER.size:
        raise DnsProtocolError(f"DNS message too short ({len(msg)} bytes)")
    query_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(msg)
    if not flags & _FLAG_QR:
        raise DnsProtocolError("DNS message is a query, not a response")
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = _decode_name(msg, offset)
        offset += 4
    srv: list[SrvRecord] = []
    addresses: list[tuple[str, str]] = []
    for index in range(ancount + nscount + arcount):
        name, offset = _decode_name(msg, offset)
        if offset + _RR_FIXED.size > len(msg):
            raise DnsProtocolError("DNS record header runs past the end of the message")
        rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(msg, offset)
        offset += _RR_FIXED.size
        rdata_end = offset + rdlength
        if rdata_end > len(msg):
            raise DnsProtocolError("DNS record data runs past the end of the message")
        if rtype == TYPE_SRV and rclass == CLASS_IN and index < ancount:
            if rdlength < 7:
                raise DnsProtocolError("SRV record too short")
            priority, weight, port = struct.unpack_from(">HHH", msg, offset)
            target, target_end = _decode_name(msg, offset + 6)
            if target_end > rdata_end:
                raise DnsProtocolError("SRV target runs past its record")
            srv.append(SrvRecord(priority, weight, port, target))
        elif rtype == TYPE_A and rclass == CLASS_IN:
            if rdlength != 4:
                raise DnsProtocolError(f"A record of {rdlength} bytes, expected 4")
            addresses.append((name, str(ipaddress.IPv4Address(bytes(msg[offset:rdata_end])))))
        offset = rdata_end
    return DnsResponse(
        query_id=query_id,
        rcode=flags & 0x000F,
        truncated=bool(flags & _FLAG_TC),
        srv=tuple(srv),
        addresses=tuple(addresses),
    )
