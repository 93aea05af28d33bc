"""EPMD wire format: exact bytes both ways, no sockets."""

from __future__ import annotations

import struct

import pytest

from otpylib_dist.discovery.epmd import (
    NEED_DATA,
    Alive2Reply,
    EpmdProtocolError,
    NodeEntry,
    PortNotFound,
    decode_alive2_resp,
    decode_names_resp,
    decode_port2_resp,
    encode_alive2_req,
    encode_names_req,
    encode_port_please2_req,
)


def test_port_please2_request_bytes() -> None:
    assert encode_port_please2_req("a") == b"\x00\x02za"
    assert encode_port_please2_req("node_1") == b"\x00\x07znode_1"


def test_names_request_bytes() -> None:
    assert encode_names_req() == b"\x00\x01n"


def test_alive2_request_bytes() -> None:
    expected_body = (
        b"x"  # ALIVE2_REQ
        + b"\x11\x12"  # port 4370
        + b"M"  # normal node
        + b"\x00"  # TCP/IPv4
        + b"\x00\x06\x00\x05"  # highest 6, lowest 5
        + b"\x00\x02n1"
        + b"\x00\x07otpylib"
    )
    assert encode_alive2_req("n1", 4370) == struct.pack(">H", len(expected_body)) + expected_body


def test_alive2_request_with_hidden_type_and_no_extra() -> None:
    assert encode_alive2_req("h", 1, node_type=72, extra=b"") == (
        b"\x00\x0e" + b"x\x00\x01H\x00\x00\x06\x00\x05\x00\x01h\x00\x00"
    )


@pytest.mark.parametrize("name", ["", "a@b", "x" * 256])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(EpmdProtocolError, match=r"must be 1-255 bytes without '@'"):
        encode_port_please2_req(name)


def test_bad_port_is_refused() -> None:
    with pytest.raises(EpmdProtocolError, match=r"^port 0 is not in 1\.\.65535$"):
        encode_alive2_req("a", 0)


@pytest.mark.parametrize(
    ("reply", "decoded"),
    [
        (b"v\x00\x00\x00\x00\x2a", Alive2Reply(result=0, creation=42)),  # ALIVE2_X_RESP
        (b"y\x00\x00\x03", Alive2Reply(result=0, creation=3)),  # ALIVE2_RESP
        (b"y\x01\x00\x00", Alive2Reply(result=1, creation=0)),
    ],
)
def test_alive2_replies_decode_whole_and_need_data_at_every_split(
    reply: bytes, decoded: Alive2Reply
) -> None:
    assert decode_alive2_resp(reply) == decoded
    for cut in range(len(reply)):
        assert decode_alive2_resp(reply[:cut]) is NEED_DATA


def test_alive2_reply_with_unknown_code_is_refused() -> None:
    with pytest.raises(EpmdProtocolError, match=r"^expected an ALIVE2 reply \(118 or 121\), got "):
        decode_alive2_resp(b"HTTP/1.1 400")


PORT2_FOUND = (
    b"w\x00"  # PORT2_RESP, result 0
    + b"\x11\x12M\x00\x00\x06\x00\x05"  # port 4370, normal, tcp, versions 6..5
    + b"\x00\x02n1"
    + b"\x00\x07otpylib"
)


def test_port2_found_decodes_and_needs_data_at_every_split() -> None:
    assert decode_port2_resp(PORT2_FOUND) == NodeEntry(
        name="n1",
        port=4370,
        node_type=77,
        protocol=0,
        highest_version=6,
        lowest_version=5,
        extra=b"otpylib",
    )
    for cut in range(len(PORT2_FOUND)):
        assert decode_port2_resp(PORT2_FOUND[:cut]) is NEED_DATA


def test_port2_not_found() -> None:
    assert decode_port2_resp(b"w\x01") == PortNotFound(result=1)


@pytest.mark.parametrize("reply", [b"x", b"x\x00\x00"])
def test_port2_with_wrong_code_is_refused(reply: bytes) -> None:
    with pytest.raises(EpmdProtocolError, match=r"^expected PORT2_RESP \(119\), got code 120$"):
        decode_port2_resp(reply)


def test_names_reply() -> None:
    reply = b"\x00\x00\x11\x11name a at port 4370\nname b_2 at port 33001\ngarbage\n"
    assert decode_names_resp(reply) == (4369, {"a": 4370, "b_2": 33001})


def test_names_reply_empty_and_too_short() -> None:
    assert decode_names_resp(b"\x00\x00\x11\x11") == (4369, {})
    with pytest.raises(EpmdProtocolError, match=r"^NAMES reply too short \(2 bytes, need 4\)$"):
        decode_names_resp(b"\x00\x00")
