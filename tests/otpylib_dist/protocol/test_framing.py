"""Frames: 4-byte big-endian length + body; a zero-length frame is a tick."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from otpylib_dist.protocol.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from otpylib_dist.protocol.framing import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    MAX_FRAME_LIMIT,
    MAX_HANDSHAKE_FRAME,
    NEED_DATA,
    TICK,
    TICK_FRAME,
    FrameReader,
    encode_frame,
)

PAYLOADS = [b"hello", b"", b"x" * 300, b"\x00\x00\x00\x05", b"last"]
STREAM = b"".join(encode_frame(p) for p in PAYLOADS)


def as_values(frames: Sequence[object]) -> list[object]:
    return [f if f is TICK else bytes(f) for f in frames]  # type: ignore[call-overload]


EXPECTED = [p if p else TICK for p in PAYLOADS]


def drain_next_frame(reader: FrameReader) -> list[object]:
    out: list[object] = []
    while (frame := reader.next_frame()) is not NEED_DATA and frame is not CLOSED:
        out.append(frame if frame is TICK else bytes(frame))
    return out


# ------------------------------------------------------------------ writing


def test_encode_frame_prefixes_the_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(bytearray(b"ab")) == b"\x00\x00\x00\x02ab"
    assert encode_frame(memoryview(b"a")) == b"\x00\x00\x00\x01a"


def test_a_tick_is_a_zero_length_frame() -> None:
    assert encode_frame(b"") == TICK_FRAME == b"\0\0\0\0"


def test_many_frames_in_one_chunk_come_out_in_one_call() -> None:
    reader = FrameReader()
    reader.receive_data(STREAM * 100)
    frames = reader.frames()
    assert as_values(frames) == EXPECTED * 100
    assert reader.frames() == []
    assert reader.buffered == 0


def test_frames_are_read_only_views() -> None:
    reader = FrameReader()
    reader.receive_data(encode_frame(b"abc"))
    (frame,) = reader.frames()
    assert isinstance(frame, memoryview) and frame.readonly


@pytest.mark.parametrize("split", range(len(STREAM) + 1))
def test_split_at_every_byte_boundary(split: int) -> None:
    reader = FrameReader()
    if split:  # b"" would mean EOF
        reader.receive_data(STREAM[:split])
    got = as_values(reader.frames())
    reader.receive_data(STREAM[split:])
    got += as_values(reader.frames())
    assert got == EXPECTED


def test_fed_byte_by_byte_with_next_frame() -> None:
    reader = FrameReader()
    got: list[object] = []
    for i in range(len(STREAM)):
        reader.receive_data(STREAM[i : i + 1])
        got += drain_next_frame(reader)
    assert got == EXPECTED
    assert reader.next_frame() is NEED_DATA


def test_not_enough_for_a_header() -> None:
    reader = FrameReader()
    reader.receive_data(b"\x00\x00")
    assert reader.next_frame() is NEED_DATA
    assert reader.frames() == []


def test_partial_body_waits_for_the_rest() -> None:
    reader = FrameReader()
    reader.receive_data(b"\x00\x00\x00\x05ab")
    assert reader.frames() == []
    reader.receive_data(b"cde")
    assert as_values(reader.frames()) == [b"abcde"]


def test_large_frame_in_many_chunks() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    data = encode_frame(body) + encode_frame(b"next")
    reader = FrameReader()
    frames: list[object] = []
    for i in range(0, len(data), 65536):
        reader.receive_data(data[i : i + 65536])
        frames += reader.frames()
    assert as_values(frames) == [body, b"next"]


def test_oversized_frame_is_rejected_from_its_header_alone() -> None:
    reader = FrameReader(max_frame_size=100)
    reader.receive_data(b"\x00\x00\x00\x65")  # 101: not a byte of the body yet
    with pytest.raises(
        FrameTooLarge,
        match=r"^peer announced a frame of 101 bytes; the limit is 100 bytes "
        r"\(larger messages travel in fragments between nodes that both support them\)$",
    ):
        reader.next_frame()


def test_frames_before_an_oversized_one_are_handed_out_first() -> None:
    reader = FrameReader(max_frame_size=10)
    reader.receive_data(encode_frame(b"ok") + encode_frame(b"x" * 11))
    assert as_values(reader.frames()) == [b"ok"]
    with pytest.raises(FrameTooLarge):
        reader.frames()
    with pytest.raises(LocalProtocolError, match=r"^frame reader already failed: peer announced"):
        reader.frames()


def test_limit_can_be_raised_after_authentication() -> None:
    reader = FrameReader(MAX_HANDSHAKE_FRAME)
    reader.receive_data(encode_frame(b"hs") + encode_frame(b"x" * 5000))
    assert as_values([reader.next_frame()]) == [b"hs"]
    reader.set_max_frame_size(DEFAULT_MAX_FRAME)
    assert as_values(reader.frames()) == [b"x" * 5000]


def test_limit_must_fit_the_header() -> None:
    with pytest.raises(LocalProtocolError, match=r"^max_frame_size must be between 0 and"):
        FrameReader(MAX_FRAME_LIMIT + 1)


def test_clean_eof_at_a_frame_boundary() -> None:
    reader = FrameReader()
    reader.receive_data(encode_frame(b"a"))
    reader.receive_data(b"")
    assert reader.eof
    assert as_values([reader.next_frame()]) == [b"a"]
    assert reader.next_frame() is CLOSED


def test_eof_mid_body_is_a_remote_error() -> None:
    reader = FrameReader()
    reader.receive_data(b"\x00\x00\x00\x05abc")
    reader.receive_data(b"")
    with pytest.raises(
        RemoteProtocolError,
        match=r"^peer closed the connection in the middle of a frame \(7 of 9 bytes received\)$",
    ):
        reader.frames()


def test_eof_mid_header_is_a_remote_error() -> None:
    reader = FrameReader()
    reader.receive_data(b"\x00\x00")
    reader.receive_data(b"")
    with pytest.raises(
        RemoteProtocolError,
        match=r"^peer closed the connection in the middle of a frame "
        r"\(2 of 4 header bytes received\)$",
    ):
        reader.next_frame()


def test_complete_frames_before_a_truncated_one_are_kept() -> None:
    reader = FrameReader()
    reader.receive_data(encode_frame(b"whole") + b"\x00\x00\x00\x09par")
    reader.receive_data(b"")
    assert as_values(reader.frames()) == [b"whole"]
    with pytest.raises(RemoteProtocolError, match=r"in the middle of a frame"):
        reader.frames()


def test_data_after_eof_is_our_mistake() -> None:
    reader = FrameReader()
    reader.receive_data(b"")
    with pytest.raises(
        LocalProtocolError, match=r"^receive_data\(\) called after EOF \(b''\) was fed$"
    ):
        reader.receive_data(b"x")


def test_take_buffered_hands_the_rest_of_the_stream_over() -> None:
    reader = FrameReader()
    reader.receive_data(encode_frame(b"a") + encode_frame(b"b") + b"\x00\x00")
    assert as_values([reader.next_frame()]) == [b"a"]
    assert reader.take_buffered() == encode_frame(b"b") + b"\x00\x00"
    assert reader.buffered == 0 and reader.next_frame() is NEED_DATA


def test_bytearray_input_is_copied_so_the_caller_may_reuse_it() -> None:
    reader = FrameReader()
    chunk = bytearray(encode_frame(b"abc"))
    reader.receive_data(chunk)
    chunk[4:] = b"XYZ"
    assert as_values(reader.frames()) == [b"abc"]
