"""The handshake: two nodes prove to each other that they share the cookie.

House rules (after h11's ``_state.py`` and Erlang's ``dist_util``):

- Every transition lives in :data:`TRANSITIONS` in this file, keyed by role,
  state and trigger (a received message type or a local action). A lookup
  that fails is an error naming the role, the state and the trigger. The
  only transitions written in code are to ``ERROR`` (any error, any state).
- No I/O: bytes in through :meth:`Handshake.receive_data`, events out of
  :meth:`Handshake.next_event`, bytes to write from :meth:`Handshake.data_to_send`.
  The caller passes the nonce and the current time; nothing here draws
  randomness or reads a clock, so every test is deterministic.
- The cookie is never sent and never appears in a message, a log line or a
  repr; neither does any digest derived from it.
- Any error moves the handshake to ``ERROR``; every later call then raises
  :class:`LocalProtocolError` at once, so nothing limps on.

Theory of operation. Roles are named after ``dist_util``: the *initiator*
dialed ("we started"), the *acceptor* was dialed ("other started")::

    initiator                                  acceptor
    start() -> Hello(versions, name, creation, flags, nonce_i)  ->
                                               next_event() -> Hello: the I/O layer
                                               decides (allowed? duplicate? simultaneous?)
                <- Challenge(version, name, creation, flags, nonce_a)   [accept()]
                <- Refused(reason)                                      [refuse(reason)]
    ChallengeReply(proof_i)                    ->
                                               proof_i verified, else Refused(bad_cookie)
                <- ChallengeAck(proof_a)       next_event() -> Established
    proof_a verified
    next_event() -> Established

``proof = HMAC-SHA256(cookie, domain || role || len+Hello || len+Challenge)``
over the exact frame bodies exchanged, so both nonces, both names,
creations, flags and the chosen version are authenticated (a man in the
middle cannot downgrade the version or swap a name), and the role label
stops one side's proof from being reflected back as the other's. Proofs
are compared with :func:`hmac.compare_digest`. The cookie authenticates the
handshake only; use TLS to protect what follows.

Deadlines are per step, as Erlang's setup timer is reset before every
network operation: each completed step moves :attr:`Handshake.deadline` to
``now + setup_time``. Frames are limited to ``MAX_HANDSHAKE_FRAME`` bytes,
and a first byte that cannot start a handshake frame (a TLS ClientHello, an
HTTP request) is refused at once.
"""

from __future__ import annotations

import enum
import hmac
import logging
from typing import Final, Literal, NoReturn

import msgspec

from otpylib_dist.protocol.errors import (
    COOKIE_ADVICE,
    REFUSAL_REASONS,
    HandshakeRefused,
    LocalProtocolError,
    RefusalReason,
    RemoteProtocolError,
)
from otpylib_dist.protocol.framing import (
    CLOSED,
    MAX_HANDSHAKE_FRAME,
    NEED_DATA,
    TICK,
    FrameMarker,
    FrameReader,
    encode_frame,
)
from otpylib_dist.protocol.handshake_wire import (
    ACCEPTOR_LABEL,
    INITIATOR_LABEL,
    MAX_NAME_LENGTH,
    MAX_NONCE_BYTES,
    MAX_VERSION,
    MIN_NONCE_BYTES,
    MIN_VERSION,
    Challenge,
    ChallengeAck,
    ChallengeReply,
    Established,
    Flags,
    HandshakeEvent,
    Hello,
    Refused,
    WireMessage,
    decode_wire,
    encode_wire,
    explain_foreign,
    proof,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SETUP_TIME",
    "MAX_VERSION",
    "MIN_VERSION",
    "NEED_DATA",
    "TRANSITIONS",
    "Challenge",
    "ChallengeAck",
    "ChallengeReply",
    "Established",
    "Flags",
    "Handshake",
    "HandshakeEvent",
    "Hello",
    "Refused",
    "Role",
    "State",
    "simultaneous_winner",
]

#: Seconds allowed per handshake step: Erlang's ``net_setuptime`` default.
DEFAULT_SETUP_TIME: Final = 7.0


class Role(enum.Enum):
    """Which side of the connection a handshake serves (dist_util's names)."""

    INITIATOR = "we_started"  # we dialed
    ACCEPTOR = "other_started"  # the peer dialed us


class State(enum.Enum):
    """Where a handshake is; named after the dist_util step it waits for."""

    START = "START"  # before start()
    RECV_HELLO = "RECV_HELLO"  # acceptor: waiting for the initiator's Hello
    DECIDE = "DECIDE"  # acceptor: Hello received; the I/O layer must accept or refuse
    RECV_CHALLENGE = "RECV_CHALLENGE"  # initiator: Hello sent, waiting for Challenge
    RECV_CHALLENGE_REPLY = "RECV_CHALLENGE_REPLY"  # acceptor: waiting for the proof
    RECV_CHALLENGE_ACK = "RECV_CHALLENGE_ACK"  # initiator: proof sent, waiting for theirs
    ESTABLISHED = "ESTABLISHED"  # both proofs verified: hand over to the connection
    REFUSED = "REFUSED"  # one side refused: send what is queued, then close
    ERROR = "ERROR"  # a protocol error: close

    def __repr__(self) -> str:
        return self.value


# Local actions, as triggers in the table (received messages are their types).
_START: Final = "start()"
_ACCEPT: Final = "accept()"
_REFUSE: Final = "refuse()"  # by the I/O layer, or by the core (bad proof, timeout ...)
_Trigger = type | str
_WAITING: Final = (
    State.RECV_HELLO,
    State.DECIDE,
    State.RECV_CHALLENGE,
    State.RECV_CHALLENGE_REPLY,
    State.RECV_CHALLENGE_ACK,
)

#: Every transition: ``TRANSITIONS[role][state][trigger] -> next state``.
TRANSITIONS: Final[dict[Role, dict[State, dict[_Trigger, State]]]] = {
    Role.INITIATOR: {
        State.START: {_START: State.RECV_CHALLENGE},
        State.RECV_CHALLENGE: {
            Challenge: State.RECV_CHALLENGE_ACK,
            Refused: State.REFUSED,
            _REFUSE: State.REFUSED,
        },
        State.RECV_CHALLENGE_ACK: {
            ChallengeAck: State.ESTABLISHED,
            Refused: State.REFUSED,
            _REFUSE: State.REFUSED,
        },
    },
    Role.ACCEPTOR: {
        State.START: {_START: State.RECV_HELLO},
        State.RECV_HELLO: {Hello: State.DECIDE, _REFUSE: State.REFUSED},
        State.DECIDE: {_ACCEPT: State.RECV_CHALLENGE_REPLY, _REFUSE: State.REFUSED},
        State.RECV_CHALLENGE_REPLY: {
            ChallengeReply: State.ESTABLISHED,
            Refused: State.REFUSED,
            _REFUSE: State.REFUSED,
        },
    },
}


def simultaneous_winner(our_name: str, peer_name: str) -> bool:
    """Decide which of two simultaneous connections survives.

    When two nodes dial each other at once, each has an outgoing attempt
    (it is the initiator) and an incoming one (it is the acceptor). The rule,
    as Erlang's: the attempt initiated by the node with the greater name
    (Python ``str`` order, the same on both nodes) survives. The acceptor of
    the losing attempt refuses it with ``simultaneous_lost``.

    Returns:
        True when the attempt *we* initiated survives (our name is greater),
        so an incoming attempt from ``peer_name`` must be refused.

    Raises:
        LocalProtocolError: the names are equal (a node never dials itself).
    """
    if our_name == peer_name:
        raise LocalProtocolError(
            f"simultaneous connect between two nodes named {our_name!r}: a node does not "
            "connect to itself; check for a second node running under the same name"
        )
    return our_name > peer_name


class Handshake:
    """The handshake core for one connection (one per connection, per role).

    Usage (the I/O layer)::

        hs = Handshake(Role.INITIATOR, "a@host1", creation, cookie, nonce, now)
        write(hs.start())
        on data:  hs.receive_data(data)
                  while (event := hs.next_event(now)) is not NEED_DATA:
                      if isinstance(event, Hello): hs.accept() or hs.refuse(reason)
                      elif isinstance(event, Established): connection is up
                  write(hs.data_to_send())
        on timer: hs.check_timeout(now); reschedule at hs.deadline

    Args:
        role: :attr:`Role.INITIATOR` if we dialed, else :attr:`Role.ACCEPTOR`.
        name: our node name.
        creation: our creation.
        cookie: the shared secret (``str`` is UTF-8 encoded).
        nonce: fresh random bytes for this handshake (``secrets.token_bytes(32)``).
        now: the current monotonic time; starts the first step's deadline.
        flags: our :class:`Flags`; ``hidden=True`` adds :attr:`Flags.HIDDEN`.
        expected_peer: for an initiator, the node we meant to reach; a
            different name in the Challenge refuses the handshake.
        setup_time: seconds allowed per step (:data:`DEFAULT_SETUP_TIME`).
        versions: lowest and highest protocol version we speak.

    Raises:
        LocalProtocolError: an argument is out of range (empty cookie, short
            nonce, name too long, bad version range).
    """

    __slots__ = (
        "_challenge_body",
        "_cookie",
        "_deadline",
        "_error",
        "_first_bytes",
        "_flags",
        "_hello_body",
        "_out",
        "_peer",
        "_reader",
        "_refusal",
        "_seen_frame",
        "_state",
        "_version",
        "creation",
        "expected_peer",
        "name",
        "nonce",
        "role",
        "setup_time",
        "versions",
    )

    def __init__(
        self,
        role: Role,
        name: str,
        creation: int,
        cookie: str | bytes,
        nonce: bytes,
        now: float,
        *,
        flags: int = 0,
        hidden: bool = False,
        expected_peer: str | None = None,
        setup_time: float = DEFAULT_SETUP_TIME,
        versions: tuple[int, int] = (MIN_VERSION, MAX_VERSION),
    ) -> None:
        key = cookie.encode() if isinstance(cookie, str) else bytes(cookie)
        if not key:
            raise LocalProtocolError("the cookie is empty; configure a cookie on every node")
        if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
            raise LocalProtocolError(
                f"a nonce has {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes, got {len(nonce)}; "
                "use secrets.token_bytes(32)"
            )
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise LocalProtocolError(f"node name must have 1 to {MAX_NAME_LENGTH} characters")
        if not 1 <= versions[0] <= versions[1] <= 0xFFFF:
            raise LocalProtocolError(f"bad version range {versions!r}")
        self.role = role
        self.name = name
        self.creation = creation
        self.nonce = bytes(nonce)
        self.expected_peer = expected_peer
        self.setup_time = setup_time
        self.versions = versions
        self._cookie = key
        self._flags = int(flags) | (Flags.HIDDEN if hidden else 0)
        self._state = State.START
        self._deadline = now + setup_time
        self._reader = FrameReader(MAX_HANDSHAKE_FRAME)
        self._out = bytearray()
        self._peer: Hello | Challenge | None = None
        self._version = 0
        self._hello_body = b""
        self._challenge_body = b""
        self._first_bytes = b""  # kept to explain garbage (TLS, HTTP) in the error
        self._seen_frame = False
        self._refusal: RefusalReason | None = None
        self._error: Exception | None = None

    def __repr__(self) -> str:
        return f"<Handshake {self.role.name} {self.name} -> {self.peer_name} {self._state!r}>"

    # ------------------------------------------------------------ properties

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def deadline(self) -> float:
        """When the current step times out (same clock as ``now``)."""
        return self._deadline

    @property
    def peer_name(self) -> str | None:
        """The peer's node name once its Hello or Challenge arrived."""
        return self._peer.name if self._peer is not None else None

    @property
    def peer_creation(self) -> int | None:
        """The peer's creation once known."""
        return self._peer.creation if self._peer is not None else None

    @property
    def peer_flags(self) -> int | None:
        """The peer's flags once known."""
        return self._peer.flags if self._peer is not None else None

    @property
    def refusal(self) -> RefusalReason | None:
        """Why the handshake was refused (by either side), if it was."""
        return self._refusal

    # ------------------------------------------------------------- the verbs

    def start(self) -> bytes:
        """Begin: an initiator returns its Hello; an acceptor returns ``b""``."""
        self._transition(_START)
        if self.role is Role.INITIATOR:
            low, high = self.versions
            hello = Hello(low, high, self.name, self.creation, self._flags, self.nonce)
            self._hello_body = self._queue(hello)
            logger.debug("handshake: %s sends Hello (to %s)", self.name, self.expected_peer)
        return self.data_to_send()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Store bytes from the peer; ``b""`` means it closed.

        Ignored once refused (the connection is closing anyway).

        Raises:
            LocalProtocolError: the handshake already failed.
        """
        self._check_not_failed()
        if self._state is State.REFUSED:
            return
        if len(self._first_bytes) < 8:
            self._first_bytes += bytes(data[: 8 - len(self._first_bytes)])
        self._reader.receive_data(data)

    def next_event(self, now: float) -> HandshakeEvent | Literal[FrameMarker.NEED_DATA]:
        """Process what the peer sent; return the next event or ``NEED_DATA``.

        Replies the protocol makes on its own (ChallengeReply, ChallengeAck,
        Refused) are queued: write :meth:`data_to_send` after the loop.

        Returns:
            :class:`Hello` (acceptor only: call :meth:`accept` or
            :meth:`refuse` next), :class:`Established`, or ``NEED_DATA``.

        Raises:
            HandshakeRefused: the peer refused us, or we refused it (bad proof,
                no common version, wrong node, step timed out).
            RemoteProtocolError: the peer sent something illegal.
            LocalProtocolError: called before :meth:`start`, while a decision
                is pending, or after the handshake ended.
        """
        self._check_not_failed()
        state = self._state
        if state is State.DECIDE:
            raise LocalProtocolError("call accept() or refuse() for the peer's Hello first")
        if state not in _WAITING:
            raise LocalProtocolError(f"next_event() called in state {state!r}")
        self.check_timeout(now)
        while True:
            try:
                message, body = self._next_message()
            except RemoteProtocolError as exc:
                self._fail(exc if self._seen_frame else explain_foreign(self._first_bytes, exc))
            if message is None:
                return NEED_DATA
            event = self._receive(message, body, now)
            if event is not None:
                return event

    def accept(self, now: float | None = None) -> bytes:
        """Acceptor: go on with the peer whose :class:`Hello` was returned.

        Returns the bytes to write (the Challenge). ``now`` restarts the
        step deadline when the decision took time.
        """
        self._check_not_failed()
        self._transition(_ACCEPT)
        challenge = Challenge(self._version, self.name, self.creation, self._flags, self.nonce)
        self._challenge_body = self._queue(challenge)
        if now is not None:
            self._deadline = now + self.setup_time
        logger.debug("handshake: %s accepts %s; sends Challenge", self.name, self.peer_name)
        return self.data_to_send()

    def refuse(self, reason: RefusalReason) -> bytes:
        """Refuse the peer (any time before the end); return the bytes to write.

        The acceptor's I/O layer calls it on a :class:`Hello` with
        ``not_allowed``, ``duplicate_name`` or ``simultaneous_lost``.
        """
        self._check_not_failed()
        if reason not in REFUSAL_REASONS:
            raise LocalProtocolError(
                f"unknown refusal reason {reason!r}; use one of {sorted(REFUSAL_REASONS)}"
            )
        self._refuse(reason)
        return self.data_to_send()

    def check_timeout(self, now: float) -> None:
        """Refuse with ``setup_timeout`` if the current step is past its deadline.

        Raises:
            HandshakeRefused: the step timed out (a Refused is queued).
        """
        self._check_not_failed()
        if self._state in _WAITING and now >= self._deadline:
            where = self._state
            self._refuse("setup_timeout")
            raise HandshakeRefused(
                "setup_timeout",
                self.peer_name or self.expected_peer,
                by_peer=False,
                detail=(
                    f"no progress for {self.setup_time:g} s while in {where.value}; the peer "
                    "may be overloaded, unreachable mid-way, or not an otpylib node"
                ),
            )

    def data_to_send(self) -> bytes:
        """Remove and return the bytes queued for the peer (works in any state)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def trailing_data(self) -> bytes:
        """Bytes the peer sent after its last handshake message (after Established).

        Feed them to the connection's own frame reader.
        """
        if self._state is not State.ESTABLISHED:
            raise LocalProtocolError(f"trailing_data() needs ESTABLISHED, state is {self._state!r}")
        return self._reader.take_buffered()

    # -------------------------------------------------------------- internals

    def _lookup(self, trigger: _Trigger) -> State:
        target = TRANSITIONS[self.role].get(self._state, {}).get(trigger)
        if target is not None:
            return target
        name = trigger if isinstance(trigger, str) else trigger.__name__
        where = f"{self.role.name.lower()} in state {self._state.value}"
        if isinstance(trigger, str):
            raise LocalProtocolError(f"{name} is not allowed for an {where}")
        raise RemoteProtocolError(f"peer sent {name}, which is not expected by an {where}")

    def _transition(self, trigger: _Trigger) -> None:
        self._state = self._lookup(trigger)

    def _queue(self, message: WireMessage) -> bytes:
        body = encode_wire(message)
        self._out += encode_frame(body)
        return body

    def _next_message(self) -> tuple[WireMessage | None, bytes]:
        if not self._seen_frame and self._first_bytes[:2].strip(b"\0"):
            # A handshake frame is < 64 KiB, so its header starts with two zero bytes.
            raise RemoteProtocolError("peer's first bytes are not a handshake frame")
        frame = self._reader.next_frame()
        if frame is NEED_DATA:
            return None, b""
        if frame is CLOSED:
            raise RemoteProtocolError(
                f"peer closed the connection during the handshake (in {self._state.value})"
            )
        if frame is TICK:
            raise RemoteProtocolError("peer sent a tick during the handshake")
        body = bytes(frame)
        try:
            message = decode_wire(body)
        except (msgspec.DecodeError, ValueError) as exc:  # msgspec lets bad UTF-8 through
            raise RemoteProtocolError(f"malformed handshake message: {exc}") from None
        self._seen_frame = True
        return message, body

    def _receive(self, message: WireMessage, body: bytes, now: float) -> HandshakeEvent | None:
        try:
            target = self._lookup(type(message))
            self._deadline = now + self.setup_time  # a step completed: the timer restarts
            if type(message) is Refused:
                self._state = target
                self._refusal = message.reason
                raise HandshakeRefused(
                    message.reason, self.peer_name or self.expected_peer, by_peer=True
                )
            if type(message) is Hello:
                return self._on_hello(message, body, target)
            if type(message) is Challenge:
                self._on_challenge(message, body, target)
                return None
            assert type(message) is ChallengeReply or type(message) is ChallengeAck
            return self._on_proof(message, target)
        except RemoteProtocolError as exc:
            self._fail(exc)

    def _on_hello(self, hello: Hello, body: bytes, target: State) -> Hello:
        self._peer = hello
        self._hello_body = body
        low = max(self.versions[0], hello.min_version)
        high = min(self.versions[1], hello.max_version)
        if low > high:
            self._refuse("version_mismatch")
            raise HandshakeRefused(
                "version_mismatch",
                hello.name,
                by_peer=False,
                detail=(
                    f"it speaks protocol versions {hello.min_version}..{hello.max_version}, "
                    f"this node {self.versions[0]}..{self.versions[1]}; run compatible "
                    "otpylib versions on both nodes"
                ),
            )
        self._version = high
        self._state = target
        logger.debug("handshake: %s got Hello from %s", self.name, hello.name)
        return hello

    def _on_challenge(self, challenge: Challenge, body: bytes, target: State) -> None:
        self._peer = challenge
        self._challenge_body = body
        if not self.versions[0] <= challenge.version <= self.versions[1]:
            raise RemoteProtocolError(
                f"peer chose protocol version {challenge.version}, which we did not offer"
            )
        if challenge.nonce == self.nonce:
            raise RemoteProtocolError("peer sent our own nonce back (a reflected handshake)")
        expected = self.expected_peer
        if expected is not None and challenge.name != expected:
            self._refuse("not_allowed")
            raise HandshakeRefused(
                "not_allowed",
                expected,
                by_peer=False,
                detail=(
                    f"the node at that address is {challenge.name}, not {expected}; "
                    "check the address, or the discovery records"
                ),
            )
        self._version = challenge.version
        self._state = target
        self._queue(ChallengeReply(self._proof(INITIATOR_LABEL)))
        logger.debug("handshake: %s got Challenge from %s", self.name, challenge.name)

    def _on_proof(self, message: ChallengeReply | ChallengeAck, target: State) -> Established:
        peer = self._peer
        assert peer is not None  # the table only lets a proof in after Hello/Challenge
        theirs = INITIATOR_LABEL if self.role is Role.ACCEPTOR else ACCEPTOR_LABEL
        if not hmac.compare_digest(message.proof, self._proof(theirs)):
            # An initiator sends nothing back: the acceptor already counts the
            # connection as up and will see it close.
            self._refuse("bad_cookie", notify=self.role is Role.ACCEPTOR)
            raise HandshakeRefused(
                "bad_cookie",
                peer.name,
                by_peer=False,
                detail=f"its cookie proof did not verify; {COOKIE_ADVICE}",
            )
        self._state = target
        if self.role is Role.ACCEPTOR:
            self._queue(ChallengeAck(self._proof(ACCEPTOR_LABEL)))
        logger.debug("handshake: %s and %s proved the cookie", self.name, peer.name)
        return Established(peer.name, peer.creation, peer.flags, self._version)

    def _proof(self, label: bytes) -> bytes:
        return proof(self._cookie, label, self._hello_body, self._challenge_body)

    def _refuse(self, reason: RefusalReason, *, notify: bool = True) -> None:
        self._transition(_REFUSE)
        self._refusal = reason
        if notify:
            self._queue(Refused(reason))

    def _fail(self, exc: RemoteProtocolError) -> NoReturn:
        if self._seen_frame and self._state is not State.REFUSED:
            self._queue(Refused("protocol_error"))  # the peer speaks our protocol: say why
        self._state = State.ERROR
        self._error = exc
        raise exc

    def _check_not_failed(self) -> None:
        if self._state is State.ERROR:
            raise LocalProtocolError(f"handshake already failed: {self._error}")
