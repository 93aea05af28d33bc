"""The handshake core, driven with plain calls: two cores, a pretend wire, numbers for time."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from protocol_helpers import COOKIE, NONCE_A, NONCE_B, HandshakePair, make_pair

from otpylib_dist.protocol.errors import (
    HandshakeRefused,
    LocalProtocolError,
    RemoteProtocolError,
)
from otpylib_dist.protocol.framing import NEED_DATA, TICK_FRAME, FrameReader, encode_frame
from otpylib_dist.protocol.handshake import (
    DEFAULT_SETUP_TIME,
    TRANSITIONS,
    Challenge,
    ChallengeAck,
    ChallengeReply,
    Established,
    Flags,
    Handshake,
    Hello,
    Refused,
    Role,
    State,
    simultaneous_winner,
)

_wire_decoder = msgspec.msgpack.Decoder(Hello | Challenge | ChallengeReply | ChallengeAck | Refused)
COOKIE_ADVICE = (
    r"check that both nodes use the same cookie \(~/\.otpylib\.cookie, OTPY_COOKIE or --cookie\)"
)


def messages(data: bytes) -> list[Any]:
    """Decode every handshake frame in ``data``."""
    reader = FrameReader()
    reader.receive_data(data)
    return [_wire_decoder.decode(f) for f in reader.frames()]  # type: ignore[arg-type]


def started(role: Role, **kwargs: Any) -> Handshake:
    hs = make_pair(**{("i_" if role is Role.INITIATOR else "a_") + k: v for k, v in kwargs.items()})
    core = hs[0] if role is Role.INITIATOR else hs[1]
    core.start()
    return core


# ------------------------------------------------------------------ success


def test_success_on_both_sides() -> None:
    pair = HandshakePair(*make_pair()).run()
    assert pair.initiator.error is None and pair.acceptor.error is None
    assert pair.initiator.established == Established("b@host2", 2, 0, 1)
    assert pair.acceptor.established == Established("a@host1", 1, 0, 1)
    assert pair.initiator.hs.state is State.ESTABLISHED
    assert pair.acceptor.hs.state is State.ESTABLISHED


def test_message_flow_on_the_wire() -> None:
    pair = HandshakePair(*make_pair()).run()
    flow = [(sender, [type(m).__name__ for m in messages(data)]) for sender, data in pair.wire]
    assert flow == [
        ("initiator", ["Hello"]),
        ("acceptor", ["Challenge"]),
        ("initiator", ["ChallengeReply"]),
        ("acceptor", ["ChallengeAck"]),
    ]
    hello = messages(pair.wire[0][1])[0]
    assert hello == Hello(1, 1, "a@host1", 1, 0, NONCE_A)
    challenge = messages(pair.wire[1][1])[0]
    assert challenge == Challenge(1, "b@host2", 2, 0, NONCE_B)


def test_byte_by_byte_feeding() -> None:
    pair = HandshakePair(*make_pair(), chunk=1).run()
    assert pair.initiator.established is not None
    assert pair.acceptor.established is not None


def test_acceptor_sees_the_hello_and_initiator_only_established() -> None:
    pair = HandshakePair(*make_pair()).run()
    assert [type(e) for e in pair.acceptor.events] == [Hello, Established]
    assert [type(e) for e in pair.initiator.events] == [Established]


def test_the_cookie_never_crosses_the_wire_nor_shows_in_reprs() -> None:
    pair = HandshakePair(*make_pair()).run()
    for _, data in pair.wire:
        assert COOKIE.encode() not in data
    for side in (pair.initiator, pair.acceptor):
        assert COOKIE not in repr(side.hs) and COOKIE not in repr(side.events)
    assert repr(ChallengeReply(b"\x01" * 32)) == "ChallengeReply(proof=<hidden>)"
    assert repr(ChallengeAck(b"\x01" * 32)) == "ChallengeAck(proof=<hidden>)"


def test_hidden_flag_reaches_the_peer() -> None:
    pair = HandshakePair(*make_pair(i_hidden=True)).run()
    established = pair.acceptor.established
    assert established is not None and established.peer_hidden
    assert established.peer_flags == Flags.HIDDEN
    assert pair.initiator.established is not None
    assert not pair.initiator.established.peer_hidden


def test_highest_common_version_is_chosen() -> None:
    pair = HandshakePair(*make_pair(i_versions=(1, 3), a_versions=(2, 5))).run()
    assert pair.initiator.established is not None
    assert pair.initiator.established.version == 3
    assert pair.acceptor.established is not None
    assert pair.acceptor.established.version == 3


def test_bytes_after_the_last_message_are_handed_over() -> None:
    initiator, acceptor = make_pair()
    acceptor.start()
    acceptor.receive_data(initiator.start())
    assert isinstance(acceptor.next_event(0.0), Hello)
    initiator.receive_data(acceptor.accept())
    assert initiator.next_event(0.0) is NEED_DATA
    acceptor.receive_data(initiator.data_to_send())
    assert isinstance(acceptor.next_event(0.0), Established)
    control = encode_frame(b"x" * 10_000)  # larger than a handshake frame may be
    initiator.receive_data(acceptor.data_to_send() + control + b"\x00")
    assert isinstance(initiator.next_event(0.0), Established)
    assert initiator.trailing_data() == control + b"\x00"


# ------------------------------------------------------------------ refusals


def test_wrong_cookie_is_refused_on_both_sides() -> None:
    pair = HandshakePair(*make_pair(acceptor_cookie="another-cookie")).run()
    initiator, acceptor = pair.initiator.error, pair.acceptor.error
    assert isinstance(initiator, HandshakeRefused)
    assert initiator.reason == "bad_cookie" and initiator.by_peer
    assert initiator.peer == "b@host2"
    assert isinstance(acceptor, HandshakeRefused)
    assert acceptor.reason == "bad_cookie" and not acceptor.by_peer
    assert acceptor.peer == "a@host1"
    assert pair.initiator.hs.state is State.REFUSED
    assert pair.acceptor.hs.state is State.REFUSED
    for exc in (initiator, acceptor):
        assert COOKIE not in str(exc) and "another-cookie" not in str(exc)
    with pytest.raises(
        HandshakeRefused,
        match=r"^handshake with b@host2 refused by the peer \(bad_cookie\): cookie proof did "
        rf"not verify; {COOKIE_ADVICE}$",
    ):
        raise initiator
    with pytest.raises(
        HandshakeRefused,
        match=r"^handshake with a@host1 refused \(bad_cookie\): its cookie proof did not "
        rf"verify; {COOKIE_ADVICE}$",
    ):
        raise acceptor


def test_acceptor_with_wrong_cookie_is_caught_by_the_initiator() -> None:
    # An acceptor that skips verifying (or a man in the middle) cannot fake its proof.
    initiator, acceptor = make_pair()
    acceptor.start()
    acceptor.receive_data(initiator.start())
    acceptor.next_event(0.0)
    initiator.receive_data(acceptor.accept())
    initiator.next_event(0.0)
    assert [type(m) for m in messages(initiator.data_to_send())] == [ChallengeReply]
    initiator.receive_data(encode_frame(msgspec.msgpack.encode(ChallengeAck(b"\x00" * 32))))
    with pytest.raises(HandshakeRefused, match=r"^handshake with b@host2 refused \(bad_cookie\)"):
        initiator.next_event(0.0)
    assert initiator.data_to_send() == b""  # the acceptor already counts itself up


def test_tampered_hello_fails_the_proof() -> None:
    # The proofs cover the exact Hello and Challenge: a changed field is caught.
    initiator, acceptor = make_pair()
    acceptor.start()
    hello = messages(initiator.start())[0]
    forged = encode_frame(msgspec.msgpack.encode(msgspec.structs.replace(hello, flags=1)))
    acceptor.receive_data(forged)
    acceptor.next_event(0.0)
    initiator.receive_data(acceptor.accept())
    initiator.next_event(0.0)
    acceptor.receive_data(initiator.data_to_send())
    with pytest.raises(HandshakeRefused, match=r"\(bad_cookie\)"):
        acceptor.next_event(0.0)


def test_version_mismatch() -> None:
    pair = HandshakePair(*make_pair(i_versions=(2, 3))).run()
    assert isinstance(pair.initiator.error, HandshakeRefused)
    assert pair.initiator.error.reason == "version_mismatch"
    assert str(pair.acceptor.error) == (
        "handshake with a@host1 refused (version_mismatch): it speaks protocol versions 2..3, "
        "this node 1..1; run compatible otpylib versions on both nodes"
    )
    assert [type(e) for e in pair.acceptor.events] == []  # refused before the I/O layer asked


@pytest.mark.parametrize("reason", ["not_allowed", "duplicate_name", "simultaneous_lost"])
def test_refusal_by_the_io_layer(reason: str) -> None:
    asked: list[str] = []

    def decide(hello: Hello) -> str:
        asked.append(hello.name)
        return reason

    pair = HandshakePair(*make_pair(), decide=decide).run()
    assert asked == ["a@host1"]
    assert pair.acceptor.hs.state is State.REFUSED and pair.acceptor.hs.refusal == reason
    assert pair.acceptor.error is None  # it refused; nothing to raise
    error = pair.initiator.error
    assert isinstance(error, HandshakeRefused) and error.by_peer and error.reason == reason
    assert str(error).startswith(f"handshake with b@host2 refused by the peer ({reason}): ")


def test_reaching_the_wrong_node_is_refused() -> None:
    pair = HandshakePair(*make_pair(i_expected_peer="c@host3")).run()
    assert str(pair.initiator.error) == (
        "handshake with c@host3 refused (not_allowed): the node at that address is b@host2, "
        "not c@host3; check the address, or the discovery records"
    )
    assert isinstance(pair.acceptor.error, HandshakeRefused)
    assert pair.acceptor.error.by_peer and pair.acceptor.error.reason == "not_allowed"


def test_refuse_with_an_unknown_reason_is_our_mistake() -> None:
    _, acceptor = make_pair()
    with pytest.raises(LocalProtocolError, match=r"^unknown refusal reason 'nope'; use one of"):
        acceptor.refuse("nope")  # type: ignore[arg-type]


# ------------------------------------------------------------------ time


def test_step_times_out_at_the_deadline() -> None:
    hs = started(Role.INITIATOR)
    assert hs.deadline == DEFAULT_SETUP_TIME
    hs.check_timeout(6.99)
    with pytest.raises(
        HandshakeRefused,
        match=r"^handshake with b@host2 refused \(setup_timeout\): no progress for 7 s while "
        r"in RECV_CHALLENGE; the peer may be overloaded",
    ):
        hs.next_event(7.0)
    assert hs.state is State.REFUSED
    assert messages(hs.data_to_send()) == [Refused("setup_timeout")]


def test_deadline_restarts_at_every_step() -> None:
    initiator, acceptor = make_pair(now=0.0)
    acceptor.start()
    acceptor.receive_data(initiator.start())
    assert isinstance(acceptor.next_event(5.0), Hello)  # slow, but in time
    assert acceptor.deadline == 12.0
    initiator.receive_data(acceptor.accept(now=6.0))
    assert acceptor.deadline == 13.0
    assert initiator.next_event(6.5) is NEED_DATA
    assert initiator.deadline == 13.5
    acceptor.check_timeout(12.9)
    with pytest.raises(HandshakeRefused, match=r"\(setup_timeout\)"):
        acceptor.check_timeout(13.0)


def test_silent_peer_times_out_the_acceptor() -> None:
    acceptor = started(Role.ACCEPTOR, setup_time=2.5)
    assert acceptor.next_event(1.0) is NEED_DATA
    with pytest.raises(HandshakeRefused) as info:
        acceptor.next_event(2.5)
    assert info.value.reason == "setup_timeout" and info.value.peer is None


# ------------------------------------------------------------------ garbage


def fail_first_bytes(data: bytes, role: Role = Role.ACCEPTOR) -> str:
    hs = started(role)
    hs.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        hs.next_event(0.0)
    assert hs.state is State.ERROR
    assert hs.data_to_send() == b""  # not our protocol: nothing to explain to it
    return str(info.value)


TLS_CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00" * 32


@pytest.mark.parametrize("size", [1, 2, len(TLS_CLIENT_HELLO)])
def test_tls_client_hello_is_rejected_early(size: int) -> None:
    message = fail_first_bytes(TLS_CLIENT_HELLO[:size])
    if size == 1:  # one byte cannot tell TLS apart yet, but is already not ours
        assert message.startswith("peer does not speak the otpylib distribution protocol")
    else:
        assert message == (
            "peer speaks TLS, but this connection is plain TCP; enable TLS on both nodes or "
            "on neither"
        )


def test_http_request_is_rejected_early() -> None:
    assert fail_first_bytes(b"GET / HTTP/1.1\r\n") == (
        "peer sent what looks like HTTP (b'GET '...); this port speaks the otpylib "
        "distribution protocol, not HTTP"
    )


def test_http_answer_to_an_initiator_is_rejected() -> None:
    message = fail_first_bytes(b"HTTP/1.1 400 Bad Request\r\n", Role.INITIATOR)
    assert message.startswith("peer sent what looks like HTTP (b'HTTP'...)")


def test_well_framed_garbage_is_rejected() -> None:
    assert fail_first_bytes(encode_frame(b"\xc1junk")) == (
        "peer does not speak the otpylib distribution protocol (malformed handshake message: "
        "MessagePack data is malformed: invalid opcode '\\xc1' (byte 0); first bytes "
        "00 00 00 05 c1 6a 75 6e); check that the address belongs to an otpylib node"
    )


def test_oversized_handshake_frame_is_rejected_from_its_header() -> None:
    message = fail_first_bytes(b"\x00\x00\x10\x01")  # 4097 bytes announced
    assert "peer announced a frame of 4097 bytes; the limit is 4096 bytes" in message


def test_peer_closing_mid_handshake() -> None:
    hs = started(Role.INITIATOR)
    hs.receive_data(b"")
    with pytest.raises(
        RemoteProtocolError,
        match=r"peer closed the connection during the handshake \(in RECV_CHALLENGE\)",
    ):
        hs.next_event(0.0)


def test_tick_during_the_handshake_is_illegal() -> None:
    hs = started(Role.ACCEPTOR)
    hs.receive_data(TICK_FRAME)
    with pytest.raises(RemoteProtocolError, match=r"peer sent a tick during the handshake"):
        hs.next_event(0.0)


def test_out_of_order_message_is_refused_with_protocol_error() -> None:
    initiator = started(Role.INITIATOR)
    initiator.receive_data(encode_frame(msgspec.msgpack.encode(Hello(1, 1, "x@y", 0, 0, NONCE_B))))
    with pytest.raises(
        RemoteProtocolError,
        match=r"^peer sent Hello, which is not expected by an initiator in state "
        r"RECV_CHALLENGE$",
    ):
        initiator.next_event(0.0)
    assert messages(initiator.data_to_send()) == [Refused("protocol_error")]


def test_invalid_field_values_are_rejected() -> None:
    acceptor = started(Role.ACCEPTOR)
    short_nonce = Hello(1, 1, "x@y", 0, 0, b"short")
    acceptor.receive_data(encode_frame(msgspec.msgpack.encode(short_nonce)))
    with pytest.raises(RemoteProtocolError, match=r"Expected `bytes` of length >= 16"):
        acceptor.next_event(0.0)


def test_reflected_nonce_is_rejected() -> None:
    initiator = started(Role.INITIATOR)
    echo = Challenge(1, "b@host2", 2, 0, NONCE_A)
    initiator.receive_data(encode_frame(msgspec.msgpack.encode(echo)))
    with pytest.raises(RemoteProtocolError, match=r"own nonce back"):
        initiator.next_event(0.0)


def test_refusal_from_the_peer_with_an_unknown_reason_is_a_protocol_error() -> None:
    initiator = started(Role.INITIATOR)
    initiator.receive_data(encode_frame(msgspec.msgpack.encode(["otpy.refused", "because"])))
    with pytest.raises(RemoteProtocolError, match=r"Invalid enum value 'because'"):
        initiator.next_event(0.0)


# ------------------------------------------------------------------ misuse


def test_an_error_makes_every_later_call_fail_fast() -> None:
    hs = started(Role.ACCEPTOR)
    hs.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError):
        hs.next_event(0.0)
    for call in (
        lambda: hs.next_event(0.0),
        lambda: hs.receive_data(b"x"),
        lambda: hs.accept(),
        lambda: hs.refuse("not_allowed"),
        lambda: hs.check_timeout(0.0),
    ):
        with pytest.raises(LocalProtocolError, match=r"^handshake already failed: peer sent"):
            call()


def test_next_event_before_start() -> None:
    _, acceptor = make_pair()
    with pytest.raises(LocalProtocolError, match=r"^next_event\(\) called in state START$"):
        acceptor.next_event(0.0)


def test_next_event_while_a_decision_is_pending() -> None:
    initiator, acceptor = make_pair()
    acceptor.start()
    acceptor.receive_data(initiator.start())
    acceptor.next_event(0.0)
    assert acceptor.state is State.DECIDE
    with pytest.raises(LocalProtocolError, match=r"^call accept\(\) or refuse\(\) for the peer"):
        acceptor.next_event(0.0)


def test_accept_is_for_acceptors_deciding() -> None:
    initiator = started(Role.INITIATOR)
    with pytest.raises(
        LocalProtocolError,
        match=r"^accept\(\) is not allowed for an initiator in state RECV_CHALLENGE$",
    ):
        initiator.accept()
    assert initiator.state is State.RECV_CHALLENGE  # a refused call changes nothing


def test_start_twice() -> None:
    initiator = started(Role.INITIATOR)
    with pytest.raises(LocalProtocolError, match=r"^start\(\) is not allowed"):
        initiator.start()


def test_trailing_data_only_once_established() -> None:
    with pytest.raises(LocalProtocolError, match=r"^trailing_data\(\) needs ESTABLISHED"):
        started(Role.ACCEPTOR).trailing_data()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cookie": ""}, r"^the cookie is empty; configure a cookie on every node$"),
        ({"nonce": b"short"}, r"^a nonce has 16 to 64 bytes, got 5; use secrets"),
        ({"name": ""}, r"^node name must have 1 to 255 characters$"),
        ({"versions": (3, 2)}, r"^bad version range \(3, 2\)$"),
    ],
)
def test_constructor_checks_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "role": Role.INITIATOR,
        "name": "a@h",
        "creation": 1,
        "cookie": COOKIE,
        "nonce": NONCE_A,
        "now": 0.0,
    }
    with pytest.raises(LocalProtocolError, match=message):
        Handshake(**(args | kwargs))


def test_local_triggers_outside_the_table_are_refused() -> None:
    # Walk the table: in every state a role can be in, a local action the
    # table does not list raises LocalProtocolError and changes nothing.
    actions = {"start()": "start", "accept()": "accept"}
    for role, states in TRANSITIONS.items():
        for state in states:
            for trigger, method in actions.items():
                if trigger in states[state]:
                    continue
                hs = make_pair()[0 if role is Role.INITIATOR else 1]
                hs._state = state  # put the core in the state under test
                with pytest.raises(LocalProtocolError, match=r"is not allowed for an"):
                    getattr(hs, method)()
                assert hs.state is state


# ------------------------------------------------------------------ tie-break


def test_simultaneous_connect_greater_name_wins() -> None:
    assert simultaneous_winner("b@host", "a@host") is True
    assert simultaneous_winner("a@host", "b@host") is False


@pytest.mark.parametrize(("x", "y"), [("a@h", "b@h"), ("node10@h", "node9@h"), ("z@a", "a@z")])
def test_exactly_one_side_wins(x: str, y: str) -> None:
    assert simultaneous_winner(x, y) != simultaneous_winner(y, x)


def test_a_node_never_races_itself() -> None:
    with pytest.raises(LocalProtocolError, match=r"^simultaneous connect between two nodes named"):
        simultaneous_winner("a@h", "a@h")
