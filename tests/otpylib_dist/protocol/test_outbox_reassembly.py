"""Large messages in fragments (protocol/fragments.py and the encoder's ``big`` frames), no I/O.

What must hold: a large body comes back whole and byte-exact; the window
caps the fragments in flight; frames of the large message's sender wait
behind it and others do not; the receiver's memory is bounded (one
message, at most the limit) and inconsistent fragments are refused.
"""

from __future__ import annotations

import msgspec
import pytest

from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_reason
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import EncodeError, RemoteProtocolError
from otpylib_dist.protocol.fragments import (
    FRAGMENT_ABOVE,
    FRAGMENT_SIZE,
    TOO_LARGE,
    WINDOW,
    Outbox,
    Reassembly,
)
from otpylib_dist.protocol.framing import TICK, FrameReader

A = Pid("a@127.0.0.1", 1, 1)
B = Pid("b@127.0.0.1", 2, 5)
C = Pid("b@127.0.0.1", 2, 6)
MSG = atom.ensure("msg")
LIMIT = 64 << 20


def _encoder() -> ControlEncoder:
    encoder = ControlEncoder()
    encoder.split_above(FRAGMENT_ABOVE, LIMIT)
    return encoder


def _frames(data: bytes | bytearray) -> list[control.ControlMessage]:
    reader = FrameReader(LIMIT)
    reader.receive_data(bytes(data))
    decoder = control.ControlDecoder()
    return [decoder.decode(f) for f in reader.frames() if f is not TICK]


def _pump_all(outbox: Outbox) -> list[control.ControlMessage]:
    """Everything the outbox sends, acknowledging each batch as a receiver would."""
    sent: list[control.ControlMessage] = []
    while outbox.streams:
        out = bytearray()
        assert outbox.pump(out)
        batch = _frames(out)
        assert sum(type(m) is control.Fragment for m in batch) <= WINDOW
        sent += batch
        outbox.acked(sum(type(m) is control.Fragment for m in batch))
    return sent


def _reassemble(frames: list[control.ControlMessage]) -> list[control.ControlMessage]:
    """Frames as the receiver sees them: fragments replaced by the message they carry."""
    reassembly = Reassembly(LIMIT)
    decoder = control.ControlDecoder()
    out: list[control.ControlMessage] = []
    for msg in frames:
        if type(msg) is control.Fragment:
            body = reassembly.add(msg)
            if body is not None:
                out.append(decoder.decode(body))
        else:
            out.append(msg)
    return out


def test_a_large_send_is_marked_and_comes_back_whole_through_fragments() -> None:
    encoder = _encoder()
    payload = bytes(range(256)) * (FRAGMENT_ABOVE // 256 + 7)  # not a multiple of 64 KiB
    out = bytearray()
    encoder.send_into(A, (MSG, 1), out)  # a small frame queued before it
    encoder.send_into(B, (MSG, payload), out)
    assert encoder.big > 0
    body, before = encoder.take_big(out)
    assert encoder.big == -1
    assert [type(m) for m in _frames(before)] == [control.Send]
    outbox = Outbox(encoder.encode_into)
    outbox.add(A, body)
    sent = _pump_all(outbox)
    assert all(type(m) is control.Fragment for m in sent)
    assert all(len(m.data) <= FRAGMENT_SIZE for m in sent if type(m) is control.Fragment)
    (whole,) = _reassemble(sent)
    assert type(whole) is control.Send
    assert whole.to == B and decode_term(whole.payload) == (MSG, payload)


def test_small_frames_are_not_marked() -> None:
    encoder = _encoder()
    out = bytearray()
    encoder.send_into(B, (MSG, bytes(FRAGMENT_ABOVE - 100)), out)
    assert encoder.big == -1


def test_the_window_caps_fragments_in_flight_until_acknowledged() -> None:
    encoder = _encoder()
    outbox = Outbox(encoder.encode_into)
    outbox.add(A, [memoryview(bytes((WINDOW + 3) * FRAGMENT_SIZE))])
    out = bytearray()
    assert outbox.pump(out)
    assert len(_frames(out)) == WINDOW
    assert not outbox.pump(bytearray())  # nothing more until the peer acknowledges
    outbox.acked(2)
    out = bytearray()
    outbox.pump(out)
    assert len(_frames(out)) == 2
    outbox.acked(10**6)  # more than sent: ignored beyond the window
    out = bytearray()
    outbox.pump(out)
    assert len(_frames(out)) == 1  # the last one
    assert not outbox.streams


def test_frames_of_the_sender_wait_behind_its_large_message_and_others_do_not() -> None:
    encoder = _encoder()
    outbox = Outbox(encoder.encode_into)
    outbox.add(A, [memoryview(bytes(2 * FRAGMENT_SIZE + 1))])
    assert outbox.held_for(C) is None  # another sender goes at once
    held = outbox.held_for(A)
    assert held is not None and outbox.holds(A)
    encoder.send_into(B, (MSG, "after"), held)
    encoder.encode_into(control.Exit(A, B, encode_reason("bye")), held)
    assert outbox.pending == 2 * FRAGMENT_SIZE + 1 + len(held)
    sent = _pump_all(outbox)
    kinds = [type(m) for m in sent]
    assert kinds == [control.Fragment] * 3 + [control.Send, control.Exit]
    assert not outbox.holds(A)
    assert outbox.pending == 0


def test_two_large_messages_go_one_after_the_other_with_their_held_frames_between() -> None:
    encoder = _encoder()
    outbox = Outbox(encoder.encode_into)
    outbox.add(A, [memoryview(b"1" * (FRAGMENT_SIZE + 1))])
    first_held = outbox.held_for(A)
    assert first_held is not None
    encoder.send_into(B, (MSG, "between"), first_held)
    outbox.add(A, [memoryview(b"h"), memoryview(b"2" * FRAGMENT_SIZE)])  # two pieces
    second_held = outbox.held_for(A)
    assert second_held is not None and second_held is not first_held
    encoder.send_into(B, (MSG, "last"), second_held)
    sent = _pump_all(outbox)
    seqs = [(m.seq, len(m.data)) for m in sent if type(m) is control.Fragment]
    # A fragment ends where a piece ends: the 1-byte header piece travels alone.
    assert seqs == [(1, FRAGMENT_SIZE), (1, 1), (2, 1), (2, FRAGMENT_SIZE)]
    payloads = [decode_term(m.payload)[1] for m in sent if type(m) is control.Send]
    assert payloads == ["between", "last"]


def test_a_large_item_in_a_run_closes_the_run_and_travels_alone() -> None:
    encoder = _encoder()
    out = bytearray()
    encoder.send_into(B, (MSG, "0"), out)  # caches the shape; a run opens after the first
    assert encoder.send_run_into(B, (MSG, "1"), out)
    assert encoder.send_run_into(B, (MSG, "2"), out)
    big = "x" * (FRAGMENT_ABOVE + 10)
    assert encoder.send_run_into(B, (MSG, big), out)
    assert encoder.big >= 0
    body, before = encoder.take_big(out)
    assert len(body) == 2  # the run's head, built apart, and the item where it was encoded
    small = _frames(before)
    assert [type(m) for m in small] == [control.Send, control.SendRun]
    assert msgspec.msgpack.decode(small[1].items) == [["msg", "1"], ["msg", "2"]]
    outbox = Outbox(encoder.encode_into)
    outbox.add(A, body)
    (whole,) = _reassemble(_pump_all(outbox))
    assert type(whole) is control.SendRun and whole.to == B
    assert msgspec.msgpack.decode(whole.items) == [["msg", big]]


@pytest.mark.parametrize("size", [FRAGMENT_ABOVE // 3, FRAGMENT_ABOVE // 2, FRAGMENT_ABOVE - 100])
def test_an_item_that_does_not_fit_the_run_but_is_not_large_opens_the_next_one(
    size: int,
) -> None:
    encoder = _encoder()
    out = bytearray()
    encoder.send_into(B, (MSG, "0"), out)
    medium = "m" * size
    for _ in range(4):
        assert encoder.send_run_into(B, (MSG, medium), out)
        assert encoder.big == -1
    encoder.close_run(out)
    frames = _frames(out)
    runs = [msgspec.msgpack.decode(m.items) for m in frames if type(m) is control.SendRun]
    assert sum(map(len, runs)) == 4 and all(r == [["msg", medium]] * len(r) for r in runs)
    assert all(len(r) * size < FRAGMENT_ABOVE for r in runs)  # each run under the split size


def test_a_message_over_the_limit_raises_and_leaves_the_buffer_as_it_was() -> None:
    encoder = ControlEncoder()
    encoder.split_above(FRAGMENT_ABOVE, 1 << 20)
    out = bytearray(b"queued")
    with pytest.raises(EncodeError, match="exceeds the limit of 1048576 bytes"):
        encoder.send_into(B, (MSG, bytes(2 << 20)), out)
    encoder.send_into(B, (MSG, "y"), bytearray())  # caches the (as) shape
    assert encoder.send_run_into(B, (MSG, "1"), out)
    # Over the limit, a run item leaves the run: the plain Send refuses it.
    assert encoder.send_run_into(B, (MSG, "y" * (2 << 20)), out) == 0
    with pytest.raises(EncodeError, match="exceeds the limit"):
        encoder.send_into(B, (MSG, "y" * (2 << 20)), out)
    encoder.close_run(out)
    assert out.startswith(b"queued") and encoder.big == -1
    assert [type(m) for m in _frames(out[6:])] == [control.SendRun]


def test_reassembly_skips_a_message_over_its_limit_and_takes_the_next() -> None:
    reassembly = Reassembly(100)
    assert reassembly.add(control.Fragment(1, 150, memoryview(b"a" * 80))) is TOO_LARGE
    assert reassembly.add(control.Fragment(1, 150, memoryview(b"a" * 70))) is None
    assert reassembly.in_progress == 0  # nothing of it kept
    assert reassembly.add(control.Fragment(2, 6, memoryview(b"abc"))) is None
    assert reassembly.in_progress == 3
    assert bytes(reassembly.add(control.Fragment(2, 6, memoryview(b"def"))) or b"") == b"abcdef"


@pytest.mark.parametrize(
    ("fragments", "error"),
    [
        ([(1, 10, b"abc"), (2, 10, b"def")], "arrived while message 1"),
        ([(1, 10, b"abc"), (1, 12, b"def")], "arrived while message 1"),
        ([(1, 4, b"abc"), (1, 4, b"de")], "more than the 4 bytes announced"),
        ([(1, 4, b"")], "malformed fragment"),
        ([(0, 4, b"ab")], "malformed fragment"),
        ([(1, 0, b"ab")], "malformed fragment"),
    ],
)
def test_reassembly_refuses_fragments_that_do_not_add_up(
    fragments: list[tuple[int, int, bytes]], error: str
) -> None:
    reassembly = Reassembly(100)
    with pytest.raises(RemoteProtocolError, match=error):
        for seq, total, data in fragments:
            reassembly.add(control.Fragment(seq, total, memoryview(data)))


def test_reassembly_keeps_copies_not_views_of_the_received_chunks() -> None:
    """A fragment's data is a view of a whole receive chunk: keeping it would let a
    peer pin megabytes with one-byte fragments."""
    reassembly = Reassembly(100)
    chunk = bytearray(b"a" * 1000)  # stands for a receive chunk
    view = memoryview(chunk)
    assert reassembly.add(control.Fragment(1, 4, view[:2])) is None
    view.release()
    chunk.extend(b"more")  # raises BufferError if a view of it were still held
    assert bytes(reassembly.add(control.Fragment(1, 4, memoryview(b"bc"))) or b"") == b"aabc"
