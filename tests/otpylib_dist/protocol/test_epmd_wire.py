"""EPMD wire format (otpylib_dist.protocol.epmd_wire): exact bytes both ways, no sockets."""

from __future__ import annotations

import struct

import pytest

from otpylib_dist.protocol.epmd_wire import (
    NEED_DATA,
    Alive2Reply,
    Alive2Request,
    EpmdProtocolError,
    KillRequest,
    NamesRequest,
    NodeEntry,
    PortNotFound,
    PortPlease2Request,
    decode_alive2_resp,
    decode_kill_resp,
    decode_names_resp,
    decode_port2_resp,
    decode_request,
    encode_alive2_req,
    encode_alive2_resp,
    encode_kill_req,
    encode_kill_resp,
    encode_names_req,
    encode_names_resp,
    encode_port2_resp,
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


# ------------------------------------------------------------ mapper side


def _split_everywhere(request: bytes) -> None:
    """Every strict prefix of a request is NEED_DATA (fed byte by byte)."""
    for cut in range(len(request)):
        assert decode_request(request[:cut]) is NEED_DATA


def test_alive2_request_decodes_to_its_entry() -> None:
    request = encode_alive2_req("n1", 4370)
    _split_everywhere(request)
    entry = NodeEntry(name="n1", port=4370)
    assert decode_request(request) == (Alive2Request(entry), len(request))
    # A following request stays in the buffer: only the first one is used.
    assert decode_request(request + b"\x00\x01n") == (Alive2Request(entry), len(request))


def test_alive2_request_from_an_erlang_node() -> None:
    request = encode_alive2_req("erl", 5000, node_type=72, extra=b"")
    decoded = decode_request(request)
    assert decoded == (
        Alive2Request(NodeEntry(name="erl", port=5000, node_type=72, extra=b"")),
        len(request),
    )


def test_port_please2_names_and_kill_requests_decode() -> None:
    for request, value in (
        (encode_port_please2_req("node_1"), PortPlease2Request("node_1")),
        (encode_names_req(), NamesRequest()),
        (encode_kill_req(), KillRequest()),
    ):
        _split_everywhere(request)
        assert decode_request(request) == (value, len(request))
    assert encode_kill_req() == b"\x00\x01k"


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (b"\x00\x00", r"^empty EPMD request \(length 0\)$"),
        (b"\x00\x03GET", r"^unknown EPMD request code 71 \(3 bytes\)$"),
        (b"\x00\x02nn", r"^unknown EPMD request code 110 \(2 bytes\)$"),
        (b"\x00\x01z", r"^EPMD name '' must be 1-255 bytes$"),
        (b"\x00\x03z\xff\xfe", r"^PORT_PLEASE2_REQ name b'\\xff\\xfe' is not UTF-8$"),
        # ALIVE2_REQ whose name length points past the request's own length.
        (b"\x00\x0ex\x00\x01M\x00\x00\x06\x00\x05\x00\x09h\x00\x00", r"^malformed ALIVE2_REQ"),
        # ALIVE2_REQ with bytes left over after its extra field.
        (
            encode_alive2_req("h", 1, extra=b"")[:1]
            + b"\x0f"
            + encode_alive2_req("h", 1, extra=b"")[2:]
            + b"!",
            r"^malformed ALIVE2_REQ",
        ),
    ],
)
def test_malformed_requests_are_refused(request_bytes: bytes, message: str) -> None:
    with pytest.raises(EpmdProtocolError, match=message):
        decode_request(request_bytes)


def test_alive2_replies_are_the_bytes_clients_decode() -> None:
    assert encode_alive2_resp(0, 42) == b"v\x00\x00\x00\x00\x2a"
    assert encode_alive2_resp(1, 0) == b"v\x01\x00\x00\x00\x00"
    assert encode_alive2_resp(0, 3, extended=False) == b"y\x00\x00\x03"
    assert decode_alive2_resp(encode_alive2_resp(0, 2**32 - 1)) == Alive2Reply(0, 2**32 - 1)


def test_port2_replies_are_the_bytes_clients_decode() -> None:
    entry = NodeEntry(name="n1", port=4370)
    assert encode_port2_resp(entry) == PORT2_FOUND
    assert encode_port2_resp(None) == b"w\x01"
    assert decode_port2_resp(encode_port2_resp(None)) == PortNotFound(1)


def test_names_reply_bytes() -> None:
    reply = encode_names_resp(4369, {"a": 4370, "b_2": 33001})
    assert reply == b"\x00\x00\x11\x11name a at port 4370\nname b_2 at port 33001\n"
    assert decode_names_resp(reply) == (4369, {"a": 4370, "b_2": 33001})


def test_kill_replies() -> None:
    assert encode_kill_resp(True) == b"OK"
    assert encode_kill_resp(False) == b"NO"
    assert decode_kill_resp(b"OK") is True
    assert decode_kill_resp(b"NO") is False
    assert decode_kill_resp(b"O") is NEED_DATA
    with pytest.raises(EpmdProtocolError, match=r"^expected OK or NO after KILL_REQ, got b'HT'$"):
        decode_kill_resp(b"HTTP")
