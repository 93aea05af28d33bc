"""Control messages: typed headers, terms as payloads, whole frames appended to a buffer."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_reason, encode_term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import EncodeError, RemoteProtocolError
from otpylib_dist.protocol.framing import FrameReader

A = Pid("a@host1", 10, 1)
B = Pid("b@host2", 20, 2)
REF = Ref("a@host1", 99, 1)
OK = atom.ensure("ok")
PAYLOAD = encode_term((OK, A, 42, "hello"))
REASON = encode_reason(atom.ensure("normal"))

MESSAGES: list[control.ControlMessage] = [
    control.Link(A, B),
    control.Send(B, PAYLOAD),
    control.Exit(A, B, REASON),
    control.Unlink(A, B),
    control.RegSend(A, "logger", PAYLOAD),
    control.RegSend(None, "logger", PAYLOAD),
    control.Exit2(A, B, REASON),
    control.Monitor(A, B, REF),
    control.Monitor(A, "registered_name", REF),
    control.Demonitor(A, B, REF),
    control.MonitorExit(B, A, REF, REASON),
    control.MonitorExit("registered_name", A, REF, REASON),
    control.SpawnRequest(REF, A, "pkg.mod:fn", encode_term(((1, 2), {"k": 3})), link=True),
    control.SpawnReply(REF, True, encode_term(B)),
    control.NodeRpc(REF, "ping", encode_term(None)),
    control.NodeRpcReply(REF, True, encode_term("pong")),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: control.ControlMessage) -> None:
    encoder, decoder = ControlEncoder(), control.ControlDecoder()
    back = decoder.decode(encoder.encode(msg))
    assert type(back) is type(msg)
    for field in msg.__struct_fields__:
        mine, theirs = getattr(msg, field), getattr(back, field)
        if field in ("payload", "reason", "args", "result", "arg"):
            assert decode_term(theirs) == decode_term(mine)
        else:
            assert theirs == mine


def test_frames_coalesce_into_one_buffer_and_split_back() -> None:
    encoder, decoder = ControlEncoder(), control.ControlDecoder()
    out = bytearray()
    sizes = [encoder.encode_into(msg, out) for msg in MESSAGES]
    assert sum(sizes) == len(out)
    reader = FrameReader()
    reader.receive_data(bytes(out))
    decoded = [decoder.decode(f) for f in reader.frames()]  # type: ignore[arg-type]
    assert [type(m) for m in decoded] == [type(m) for m in MESSAGES]


def test_tags_are_erlangs_operation_numbers() -> None:
    # DOP_LINK = 1, DOP_SEND = 2, DOP_MONITOR_P = 19, DOP_SPAWN_REQUEST = 29
    encoder = ControlEncoder()
    assert encoder.encode(control.Link(A, B))[:2] == b"\x93\x01"
    assert encoder.encode(control.Send(B, PAYLOAD))[:2] == b"\x93\x02"
    assert encoder.encode(control.Monitor(A, B, REF))[:2] == b"\x94\x13"
    assert msgspec.msgpack.decode(encoder.encode(MESSAGES[12]))[0] == 29


TERMS: list[Any] = [
    (OK, A, 42, "hello"),
    "plain",
    {"a": (1, 2)},
    (1, 2**70),
    [(OK, 1), (OK, 2)],
    (atom.ensure("$gen_call"), (A, REF), ("get", "key")),
]


@pytest.mark.parametrize("term", TERMS, ids=lambda t: repr(t)[:30])
def test_send_into_writes_what_encode_into_would(term: Any) -> None:
    encoder = ControlEncoder()
    fast, slow = bytearray(b"before"), bytearray(b"before")
    encoder.send_into(B, term, fast)
    encoder.encode_into(control.Send(B, encode_term(term)), slow)
    assert fast == slow
    reader = FrameReader()
    reader.receive_data(bytes(fast[6:]))
    (frame,) = reader.frames()
    msg = control.ControlDecoder().decode(frame)  # type: ignore[arg-type]
    assert isinstance(msg, control.Send) and msg.to == B
    assert decode_term(msg.payload) == term


def test_reg_send_into_writes_what_encode_into_would() -> None:
    encoder = ControlEncoder()
    fast, slow = bytearray(), bytearray()
    encoder.reg_send_into(A, "logger", (OK, 1), fast)
    encoder.encode_into(control.RegSend(A, "logger", encode_term((OK, 1))), slow)
    assert fast == slow


def test_unencodable_term_leaves_the_buffer_unchanged() -> None:
    out = bytearray(b"queued")
    with pytest.raises(EncodeError, match=r"^cannot send a value of type function"):
        ControlEncoder().send_into(B, (OK, lambda: 1), out)
    with pytest.raises(EncodeError, match=r"^cannot send a value of type set"):
        ControlEncoder().send_into(B, {1}, out)
    assert out == b"queued"


def test_message_over_the_frame_limit_is_refused_at_the_sender() -> None:
    encoder = ControlEncoder(max_frame_size=100)
    out = bytearray(b"queued")
    with pytest.raises(
        EncodeError,
        match=r"^a Send message of 1\d\d\d bytes exceeds the limit of 100 bytes; send "
        r"large data in parts, or raise max_message_size on both nodes$",
    ):
        encoder.send_into(B, b"x" * 1000, out)
    with pytest.raises(EncodeError, match=r"^a Send message of"):
        encoder.encode_into(control.Send(B, encode_term(b"x" * 1000)), out)
    assert out == b"queued"


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xc1", b"\x93\x63\x01\x02", b"\x93\x01\x01\x02", msgspec.msgpack.encode([2, "x", 1])],
    ids=["empty", "bad opcode", "unknown tag", "bad fields", "bad pid"],
)
def test_malformed_control_messages_are_remote_errors(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match=r"^malformed control message from peer: "):
        control.ControlDecoder().decode(frame)
