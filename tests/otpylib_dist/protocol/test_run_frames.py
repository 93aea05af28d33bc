"""SendRun frames, sans I/O: whatever the mix of sends and signals, order and content hold."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term
from otpylib_dist.protocol.control_encoder import RUN_BYTES, ControlEncoder
from otpylib_dist.protocol.errors import EncodeError
from otpylib_dist.protocol.framing import FrameReader
from otpylib_dist.protocol.shapes import run_decoder_for

TARGETS = [Pid("b@h", 1, 7), Pid("b@h", 2, 7), "named"]
MSG = atom.ensure("msg")

values = st.one_of(
    st.tuples(st.just(MSG), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(MSG), st.text(max_size=20)),
    st.tuples(st.integers(0, 100), st.integers(0, 100), st.booleans()),
    st.tuples(st.just(MSG), st.integers(2**64, 2**70)),  # beyond 64 bits: never in a run
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), values),
        st.tuples(st.just("link"), st.just(0), st.none()),
        st.tuples(st.just("flush"), st.just(0), st.none()),
    ),
    max_size=60,
)


def _replay(sequence: list[tuple[str, int, Any]]) -> tuple[list[Any], list[Any]]:
    """Encode ``sequence`` as a connection would; return what was meant and what decodes."""
    encoder = ControlEncoder()
    out = bytearray()
    meant: list[Any] = []
    for kind, index, value in sequence:
        if kind == "link":
            encoder.encode_into(control.Link(TARGETS[0], TARGETS[1]), out)
            meant.append("link")
        elif kind == "flush":
            encoder.close_run(out)
        else:
            to = TARGETS[index]
            if not encoder.send_run_into(to, value, out):
                if isinstance(to, Pid):
                    encoder.send_into(to, value, out)
                else:
                    encoder.reg_send_into(None, to, value, out)
            meant.append((to, value))
    encoder.close_run(out)
    reader = FrameReader(1 << 26)
    reader.receive_data(bytes(out))
    decoder = control.ControlDecoder()
    got: list[Any] = []
    for frame in reader.frames():
        msg = decoder.decode(frame)
        if type(msg) is control.SendRun:
            got.extend((msg.to, item) for item in run_decoder_for(msg.shape).decode(msg.items))
        elif type(msg) is control.Send:
            got.append((msg.to, decode_term(msg.payload)))
        elif type(msg) is control.RegSend:
            got.append((msg.name, decode_term(msg.payload)))
        else:
            got.append("link")
    return meant, got


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_mix_of_sends_and_signals_decodes_in_order(sequence: list[Any]) -> None:
    meant, got = _replay(sequence)
    assert got == meant


def test_a_burst_to_one_target_becomes_one_run_frame() -> None:
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, 0), out)  # the first caches the shape
    first = len(out)
    for i in range(1, 100):
        assert encoder.send_run_into(TARGETS[0], (MSG, i), out)
    encoder.close_run(out)
    reader = FrameReader(1 << 26)
    reader.receive_data(bytes(out[first:]))
    [frame] = list(reader.frames())
    run = control.ControlDecoder().decode(frame)
    assert type(run) is control.SendRun
    assert run_decoder_for(run.shape).decode(run.items) == [(MSG, i) for i in range(1, 100)]


def test_an_unencodable_item_leaves_the_run_as_it_was() -> None:
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, "zero"), out)  # caches the (ax) shape of str too
    assert encoder.send_run_into(TARGETS[0], (MSG, "one"), out)
    before = bytes(out)
    with pytest.raises(EncodeError):  # a lone surrogate: no UTF-8 for it
        encoder.send_run_into(TARGETS[0], (MSG, "\ud800"), out)
    assert len(out) == len(before)  # nothing of the bad item (the run was closed)
    assert encoder.send_run_into(TARGETS[0], (MSG, "two"), out)
    encoder.close_run(out)
    reader = FrameReader(1 << 26)
    reader.receive_data(bytes(out))
    decoder = control.ControlDecoder()
    items: list[Any] = []
    for frame in reader.frames():
        msg = decoder.decode(frame)
        if type(msg) is control.SendRun:
            items += run_decoder_for(msg.shape).decode(msg.items)
        else:
            assert type(msg) is control.Send
            items.append(decode_term(msg.payload))
    assert items == [(MSG, "zero"), (MSG, "one"), (MSG, "two")]


def test_a_run_never_grows_past_the_frame_limit() -> None:
    encoder = ControlEncoder(max_frame_size=1000)
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, "x" * 100), out)
    runs = 0
    for _ in range(50):
        if not encoder.send_run_into(TARGETS[0], (MSG, "x" * 100), out):
            encoder.send_into(TARGETS[0], (MSG, "x" * 100), out)
            runs += 1
    encoder.close_run(out)
    reader = FrameReader(1000)
    reader.receive_data(bytes(out))
    assert all(len(f) <= 1000 for f in reader.frames())
    assert runs > 0


def _frames(out: bytearray) -> list[Any]:
    reader = FrameReader(1 << 26)
    reader.receive_data(bytes(out))
    decoder = control.ControlDecoder()
    return [decoder.decode(frame) for frame in reader.frames()]


def test_other_element_types_of_the_same_shape_stay_in_the_run() -> None:
    # The run checks element types, not shapes, per item; a bool where an
    # int was has the same shape ("x"), so it must not cost a new frame.
    encoder = ControlEncoder()
    out = bytearray()
    items = [(MSG, 1), (MSG, True), (MSG, 2), (MSG, None), (MSG, "three")]
    for item in items:
        encoder.send_into(TARGETS[0], item, out)  # a plain Send caches each item's shape
    first = len(out)
    for item in items:
        assert encoder.send_run_into(TARGETS[0], item, out)
    encoder.close_run(out)
    [run] = _frames(out[first:])
    assert type(run) is control.SendRun
    assert run_decoder_for(run.shape).decode(run.items) == items


def test_another_shape_or_target_opens_a_new_run() -> None:
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, 0), out)
    encoder.send_into(TARGETS[0], (MSG, TARGETS[1]), out)  # caches (ap)
    first = len(out)
    assert encoder.send_run_into(TARGETS[0], (MSG, 1), out)
    assert encoder.send_run_into(TARGETS[0], (MSG, TARGETS[1]), out)  # other shape
    assert encoder.send_run_into(TARGETS[2], (MSG, TARGETS[1]), out)  # other target
    encoder.close_run(out)
    runs = _frames(out[first:])
    assert [(r.to, r.shape) for r in runs] == [
        (TARGETS[0], b"(ax)"),
        (TARGETS[0], b"(ap)"),
        (TARGETS[2], b"(ap)"),
    ]


def test_run_messages_counts_every_item_of_open_and_closed_runs() -> None:
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, 0), out)  # a plain Send: not counted here
    assert encoder.run_messages == 0
    for i in range(5):
        assert encoder.send_run_into(TARGETS[0], (MSG, i), out)
    assert encoder.run_messages == 5  # the run is still open
    for i in range(3):
        assert encoder.send_run_into(TARGETS[2], (MSG, i), out)  # closes the first run
    with pytest.raises(EncodeError):
        encoder.send_run_into(TARGETS[2], (MSG, "\ud800"), out)  # not queued: not counted
    assert encoder.run_messages == 8
    encoder.close_run(out)
    encoder.close_run(out)  # closing twice counts nothing twice
    assert encoder.run_messages == 8
    assert encoder.send_run_into(TARGETS[0], (MSG, 9), out)
    encoder.discard_run()  # the connection died with it queued: it was queued all the same
    assert encoder.run_messages == 9


def test_a_long_burst_goes_as_several_runs_of_bounded_size() -> None:
    # A run is capped (RUN_BYTES) so the receiver can decode the first part
    # of a long burst while the rest is still on the way.
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(TARGETS[0], (MSG, 0), out)
    first = len(out)
    sent = [(MSG, i) for i in range(1, 20_000)]
    for item in sent:
        if not encoder.send_run_into(TARGETS[0], item, out):
            encoder.send_into(TARGETS[0], item, out)  # the item that did not fit
    encoder.close_run(out)
    frames = _frames(out[first:])
    runs = [f for f in frames if type(f) is control.SendRun]
    assert len(runs) >= 2 and len(runs) == len(frames)  # a full run closes behind its last
    item = len(msgspec.msgpack.encode(("msg", len(sent))))  # the largest item, as sent
    assert all(len(r.items) <= RUN_BYTES + item for r in runs)
    got: list[Any] = []
    for f in frames:
        if type(f) is control.SendRun:
            got += run_decoder_for(f.shape).decode(f.items)
        else:
            got.append(decode_term(f.payload))
    assert got == sent


def test_a_message_larger_than_a_run_closes_it_and_is_encoded_once() -> None:
    encoder = ControlEncoder(max_frame_size=1 << 20)
    out = bytearray()
    big = "x" * (RUN_BYTES + 1)
    sent = [(MSG, "small"), (MSG, big), (MSG, big), (MSG, "small"), (MSG, "y" * (1 << 20))]
    encoder.send_into(TARGETS[0], (MSG, "first"), out)
    first = len(out)
    refused = 0
    for item in sent:
        if not encoder.send_run_into(TARGETS[0], item, out):
            with pytest.raises(EncodeError, match="exceeds the limit"):
                encoder.send_into(TARGETS[0], item, out)  # too big for any frame
            refused += 1
    encoder.close_run(out)
    frames = _frames(out[first:])
    assert refused == 1
    runs = [run_decoder_for(f.shape).decode(f.items) for f in frames]
    assert [len(r) for r in runs] == [2, 1, 1]  # each big one is the last of its run
    assert [m for r in runs for m in r] == sent[:4]
    assert len(out) - first < 3 * len(big)  # no item is in the buffer twice
