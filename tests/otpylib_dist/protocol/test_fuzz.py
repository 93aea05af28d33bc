"""Property tests: values round-trip; nothing a peer sends can crash the core.

Whatever bytes arrive, the receive side either returns a value or raises
RemoteProtocolError (a HandshakeRefused, for a handshake, is an orderly
outcome too): never another exception, which would be a crash.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import HandshakePair, make_pair

from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import HandshakeRefused, RemoteProtocolError
from otpylib_dist.protocol.framing import (
    CLOSED,
    HEADER_SIZE,
    NEED_DATA,
    TICK,
    FrameReader,
    encode_frame,
)
from otpylib_dist.protocol.handshake import Established, Handshake, Role

# OTPY_FUZZ_EXAMPLES=20000 for a long run; the default keeps the suite fast.
#: 300 examples a test in `make test`; `make soak` sets OTPY_FUZZ_EXAMPLES=12500
#: (100,000 over the eight fuzz tests).
FUZZ = settings(
    max_examples=int(os.environ.get("OTPY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ----------------------------------------------------------------- values

names = st.text(min_size=1, max_size=12)
atoms = st.sampled_from(["ok", "error", "EXIT", "", "ünï", "a" * 255]).map(atom.ensure)
pids = st.builds(Pid, names, st.integers(0, 2**40), st.integers(0, 2**32))
refs = st.builds(Ref, names, st.integers(0, 2**40), st.integers(0, 2**32))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**300), 2**300)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | atoms
    | pids
    | refs
)
keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner), max_leaves=4)
terms = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return a is b if type(a) is type(atom.ensure("x")) else bool(a == b)


@FUZZ
@given(terms)
def test_any_term_round_trips(value: Any) -> None:
    assert same(decode_term(encode_term(value)), value)
    assert same(decode_term(bytes(encode_term(value))), value)


@FUZZ
@given(terms)
def test_any_term_round_trips_through_a_send_frame(value: Any) -> None:
    out = bytearray()
    ControlEncoder().send_into(Pid("b@h", 1, 1), value, out)
    reader = FrameReader()
    reader.receive_data(bytes(out))
    (frame,) = reader.frames()
    msg = control.ControlDecoder().decode(frame)  # type: ignore[arg-type]
    assert isinstance(msg, control.Send)
    assert same(decode_term(msg.payload), value)


# ----------------------------------------------------------------- hostile bytes


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_term_decoder(data: bytes) -> None:
    _check_decodes_to_a_term_or_refuses(data)


def _check_decodes_to_a_term_or_refuses(data: bytes) -> None:
    """``data`` is refused (RemoteProtocolError) or decodes to a term that round-trips."""
    try:
        value = decode_term(data)
    except RemoteProtocolError:
        return
    # What the decoder accepts is a term of ours: it encodes, and comes back the same
    # (compared by repr, since a NaN is not equal to itself).
    assert repr(decode_term(bytes(encode_term(value)))) == repr(value)


@FUZZ
@given(terms, st.data())
def test_mutated_terms_never_crash_the_term_decoder(value: Any, data: st.DataObject) -> None:
    wire = bytearray(bytes(encode_term(value)))
    for _ in range(data.draw(st.integers(1, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    for candidate in (bytes(wire), bytes(wire[:cut])):
        _check_decodes_to_a_term_or_refuses(candidate)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_control_decoder(data: bytes) -> None:
    try:
        msg = control.ControlDecoder().decode(data)
    except RemoteProtocolError:
        return
    for field in ("payload", "reason", "args", "result", "arg"):
        if hasattr(msg, field):
            with contextlib.suppress(RemoteProtocolError):
                decode_term(getattr(msg, field))


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.booleans(), st.integers(0, 64))
def test_random_chunks_never_crash_the_frame_reader(
    chunks: list[bytes], eof: bool, limit: int
) -> None:
    reader = FrameReader(limit)
    frames: list[Any] = []
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            reader.receive_data(chunk)
            frames += reader.frames()
        while (frame := reader.next_frame()) not in (NEED_DATA, CLOSED):
            frames.append(frame)
    except RemoteProtocolError:
        pass
    # What came out is made of what went in: no frame over the limit, none invented.
    bodies = [len(f) for f in frames if f is not TICK]
    assert all(size <= limit for size in bodies)
    assert sum(bodies) + HEADER_SIZE * len(frames) <= sum(len(c) for c in chunks)


def feed(hs: Handshake, data: bytes, chunk: int, eof: bool) -> bool:
    """Feed ``data`` to ``hs`` in ``chunk``-sized pieces; whether it reached Established."""
    try:
        hs.start()
        for i in range(0, len(data), chunk):
            hs.receive_data(data[i : i + chunk])
            while (event := hs.next_event(0.0)) is not NEED_DATA:
                if isinstance(event, Established):
                    return True
                hs.accept()
        if eof:
            hs.receive_data(b"")
            hs.next_event(0.0)
    except (RemoteProtocolError, HandshakeRefused):
        pass
    return False


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(list(Role)), st.integers(1, 50), st.booleans())
def test_random_bytes_never_crash_a_handshake(
    data: bytes, role: Role, chunk: int, eof: bool
) -> None:
    initiator, acceptor = make_pair()
    # Random bytes cannot prove knowledge of the cookie.
    assert not feed(initiator if role is Role.INITIATOR else acceptor, data, chunk, eof)


def _valid_transcript() -> tuple[bytes, bytes]:
    pair = HandshakePair(*make_pair()).run()
    to_acceptor = b"".join(d for who, d in pair.wire if who == "initiator")
    to_initiator = b"".join(d for who, d in pair.wire if who == "acceptor")
    return to_acceptor, to_initiator


TO_ACCEPTOR, TO_INITIATOR = _valid_transcript()


@FUZZ
@given(st.sampled_from(list(Role)), st.data(), st.integers(1, 50), st.booleans())
def test_mutated_and_truncated_handshakes_never_crash(
    role: Role, data: st.DataObject, chunk: int, eof: bool
) -> None:
    wire = bytearray(TO_INITIATOR if role is Role.INITIATOR else TO_ACCEPTOR)
    for _ in range(data.draw(st.integers(0, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    initiator, acceptor = make_pair()
    feed(initiator if role is Role.INITIATOR else acceptor, bytes(wire[:cut]), chunk, eof)


_JUNK_VALUES: list[Any] = [[], {}, [1, 2, 3], ["otpy.hello"], [b"", None], "x", 2**64 - 1]
JUNK: list[bytes] = [msgspec.msgpack.encode(value) for value in _JUNK_VALUES]
# Regression: a tag that is not valid UTF-8 made msgspec raise
# UnicodeDecodeError (not DecodeError), which escaped the handshake.
JUNK.append(b"\x91\xa1\x80")


def test_garbage_bodies_decode_to_remote_errors_only() -> None:
    for body in JUNK:
        _, acceptor = make_pair()
        feed(acceptor, encode_frame(body), 1, True)
        assert acceptor.state.value == "ERROR"
        with contextlib.suppress(RemoteProtocolError):
            decode_term(body)
        with contextlib.suppress(RemoteProtocolError):
            control.ControlDecoder().decode(body)
