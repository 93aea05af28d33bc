"""Exceptions of the sans-I/O protocol core, split by who is to blame.

House rules (after h11 and Trio):

- :class:`ProtocolError` is a base class only; code raises one of its kinds.
- :class:`LocalProtocolError` means *our* code asked the core for something
  illegal (a bug in the caller). :class:`RemoteProtocolError` means the
  *peer* sent bytes that break the protocol. Inside the core, parsing code
  may raise either; the receive boundary (``next_event``, ``next_frame``,
  ``decode``) is the one place where what came from the peer is reported
  as remote.
- :class:`HandshakeRefused` is an orderly "no" with a reason from a closed
  set, raised whether we refused or the peer did.
- Messages say what happened, to which node, and what to try next. They
  never contain the cookie or a digest derived from it.
"""

from __future__ import annotations

import logging
from typing import Final, Literal, get_args

logger = logging.getLogger(__name__)

__all__ = [
    "REFUSAL_REASONS",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeRefused",
    "LocalProtocolError",
    "ProtocolError",
    "RefusalReason",
    "RemoteProtocolError",
]

#: Why a handshake was refused. A closed set, as dist_util's status replies.
RefusalReason = Literal[
    "bad_cookie",
    "not_allowed",
    "duplicate_name",
    "version_mismatch",
    "simultaneous_lost",
    "setup_timeout",
    "protocol_error",
]

#: The members of :data:`RefusalReason`, for checking a value at run time.
REFUSAL_REASONS: Final[frozenset[str]] = frozenset(get_args(RefusalReason))

COOKIE_ADVICE: Final = (
    "check that both nodes use the same cookie (~/.otpylib.cookie, OTPY_COOKIE or --cookie)"
)

# What each reason means and what to do about it, for the exception message.
_REFUSAL_TEXT: Final[dict[str, str]] = {
    "bad_cookie": f"cookie proof did not verify; {COOKIE_ADVICE}",
    "not_allowed": (
        "the node does not accept this connection (it may be stopping, or it restricts "
        "which nodes may connect); check its allow list and that it is still running"
    ),
    "duplicate_name": (
        "a node of that name is already connected (or a second node runs under the same "
        "name); give every node a unique name, or wait for the old connection to close"
    ),
    "version_mismatch": (
        "the nodes share no protocol version; run compatible otpylib versions on both nodes"
    ),
    "simultaneous_lost": (
        "both nodes connected to each other at once and the other connection won; "
        "nothing to do, the surviving connection is used"
    ),
    "setup_timeout": (
        "a handshake step did not complete in time; the peer may be overloaded, "
        "unreachable mid-way, or not an otpylib node"
    ),
    "protocol_error": (
        "a handshake message was malformed or out of order; check that both ends are "
        "otpylib nodes of compatible versions"
    ),
}


class ProtocolError(Exception):
    """Base class of the protocol core's errors; never raised directly.

    Catch it to handle "this connection cannot go on" in one place; catch a
    subclass when the blame matters.
    """

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """Raised when our own code misuses the core (a bug in the caller).

    Examples: calling ``accept()`` on an initiator, feeding data after EOF,
    using a handshake that already failed. The connection cannot go on.
    """


class RemoteProtocolError(ProtocolError):
    """Raised when the peer sent something the protocol does not allow.

    The connection must be closed; Erlang closes a connection on a
    malformed distribution message in the same way.
    """


class FrameTooLarge(RemoteProtocolError):
    """Raised when a frame header announces more bytes than the current limit.

    Raised as soon as the 4-byte header arrives, before any of the body is
    buffered, so a peer cannot make us hold an oversized frame in memory.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"peer announced a frame of {size} bytes; the limit is {limit} bytes "
            "(larger messages travel in fragments between nodes that both support them)"
        )


class AtomLimitReached(RemoteProtocolError):
    """Raised when a term from the peer needs a new atom and the atom table for
    peers' atoms is full (``otpylib.runtime.atoms.atom.untrusted_limit``).

    The frame was well formed, so the stream is intact: the receiver drops
    that one message with a log line and keeps the connection.
    """


class HandshakeRefused(ProtocolError):
    """Raised when a handshake ends with a refusal, by either side.

    Attributes:
        reason: one of :data:`RefusalReason`, for code to match on.
        peer: the peer's node name, or ``None`` when not yet known.
        by_peer: True when the peer refused us, False when we refused it.
    """

    def __init__(
        self,
        reason: RefusalReason,
        peer: str | None,
        *,
        by_peer: bool,
        detail: str | None = None,
    ) -> None:
        self.reason: RefusalReason = reason
        self.peer = peer
        self.by_peer = by_peer
        who = peer if peer is not None else "the peer"
        text = detail if detail is not None else _REFUSAL_TEXT[reason]
        #: The explanation alone (the message adds who refused and the reason).
        self.detail = text
        by = " by the peer" if by_peer else ""
        super().__init__(f"handshake with {who} refused{by} ({reason}): {text}")


class EncodeError(TypeError):
    """Raised at the sender when a value cannot be carried to another node.

    A subclass of ``TypeError`` because the value's type is the problem; the
    message names the type and what to send instead. Nothing was written.
    """
