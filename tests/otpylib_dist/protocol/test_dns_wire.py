"""DNS wire format for SRV lookups: exact query bytes, response decoding, malformed input."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

# The fake DNS answers are shared with the discovery tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "discovery"))

from dns_fake import build_response, name_bytes

from otpylib_dist.protocol.dns_wire import (
    DnsProtocolError,
    SrvRecord,
    decode_response,
    encode_name,
    encode_query,
)

SRV_NAME = "_otpy-dist._tcp.otpy.ns.svc.cluster.local"


def test_encode_name() -> None:
    assert encode_name("a.bc") == b"\x01a\x02bc\x00"
    assert encode_name("a.bc.") == b"\x01a\x02bc\x00"
    assert encode_name("") == b"\x00"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a..b", r"has an empty or >63-byte label"),
        ("x" * 64 + ".com", r"has an empty or >63-byte label"),
        (".".join(["abcdefg"] * 40), r"is longer than 255 bytes"),
        ("bücher.example", r"is not ASCII"),
    ],
)
def test_bad_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(DnsProtocolError, match=message):
        encode_name(name)


def test_query_bytes_without_edns() -> None:
    assert encode_query(0x1234, "a.b", edns_payload=None) == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # id, RD, 1 question
        + b"\x01a\x01b\x00"
        + b"\x00\x21\x00\x01"  # SRV, IN
    )


def test_query_bytes_with_edns_opt_record() -> None:
    assert encode_query(7, "a", edns_payload=1232) == (
        b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        + b"\x01a\x00\x00\x21\x00\x01"
        + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root, OPT, 1232, ttl 0, no data
    )


def test_response_with_compressed_srv_and_additional_a_records() -> None:
    query = encode_query(99, SRV_NAME)
    reply = build_response(
        query,
        [
            (0, 50, 4370, "otpy-0.otpy.ns.svc.cluster.local"),
            (0, 50, 4371, "OTPY-1.otpy.ns.svc.cluster.local."),
        ],
        {"otpy-0.otpy.ns.svc.cluster.local": "10.1.2.3"},
    )
    decoded = decode_response(reply)
    assert decoded.query_id == 99
    assert decoded.rcode == 0
    assert not decoded.truncated
    assert decoded.srv == (
        SrvRecord(0, 50, 4370, "otpy-0.otpy.ns.svc.cluster.local"),
        SrvRecord(0, 50, 4371, "otpy-1.otpy.ns.svc.cluster.local"),
    )
    assert decoded.addresses == (("otpy-0.otpy.ns.svc.cluster.local", "10.1.2.3"),)


def test_nxdomain_and_truncation_flags() -> None:
    query = encode_query(1, SRV_NAME)
    assert decode_response(build_response(query, [], {}, rcode=3)).rcode == 3
    assert decode_response(build_response(query, [], {}, truncated=True)).truncated


def test_a_query_is_not_a_response() -> None:
    with pytest.raises(DnsProtocolError, match=r"^DNS message is a query, not a response$"):
        decode_response(encode_query(1, SRV_NAME))


def test_every_cut_of_a_response_is_refused_not_misread() -> None:
    reply = build_response(
        encode_query(5, SRV_NAME),
        [(0, 0, 4370, "otpy-0.otpy.ns.svc.cluster.local")],
        {"otpy-0.otpy.ns.svc.cluster.local": "10.0.0.1"},
    )
    for cut in range(len(reply)):
        with pytest.raises(DnsProtocolError):
            decode_response(reply[:cut])


def test_compression_loop_is_refused() -> None:
    header = struct.pack(">HHHHHH", 1, 0x8180, 0, 1, 0, 0)
    loop = b"\xc0\x0c"  # a name pointing at itself
    with pytest.raises(DnsProtocolError, match=r"^DNS name compression loops$"):
        decode_response(header + loop + struct.pack(">HHIH", 33, 1, 0, 0))


def test_reserved_label_type_is_refused() -> None:
    header = struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0)
    with pytest.raises(DnsProtocolError, match=r"^unsupported DNS label type 0x40$"):
        decode_response(header + b"\x41a\x00" + b"\x00\x21\x00\x01")


def test_a_record_with_wrong_length_is_refused() -> None:
    header = struct.pack(">HHHHHH", 1, 0x8180, 0, 1, 0, 0)
    record = name_bytes("a") + struct.pack(">HHIH", 1, 1, 0, 3) + b"\x01\x02\x03"
    with pytest.raises(DnsProtocolError, match=r"^A record of 3 bytes, expected 4$"):
        decode_response(header + record)
