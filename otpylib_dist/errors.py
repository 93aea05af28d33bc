"""Exceptions of the distribution layer, each saying what to do next.

Protocol-level errors (malformed frames, refused handshakes) live in
``otpylib_dist.protocol.errors``; these are the ones the node API raises.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

import msgspec

from otpylib.runtime.errors import OtpError

logger = logging.getLogger(__name__)

__all__ = [
    "CONNECT_FAILURE_REASONS",
    "SPAWN_REFUSALS",
    "ConnectFailure",
    "ConnectFailureReason",
    "DistError",
    "NodeUnreachable",
    "RemoteSpawnError",
    "RpcError",
]

#: Why a connection attempt failed: a closed set, so tools can advise by
#: reason (``otpy-node``'s advice is a table keyed by it), never by wording.
#: The handshake's own refusals (``bad_cookie`` ... ``protocol_error``) keep
#: their names; the others say where the attempt stopped.
ConnectFailureReason = Literal[
    "no_address",  # discovery (or the caller) gave no address for the node
    "refused",  # nothing accepts TCP connections at that address
    "unreachable",  # another OS error on connect (no route, unknown host, ...)
    "timeout",  # no TCP connection within the setup time
    "closed",  # the peer closed the connection during the handshake
    "tls",  # the TLS handshake failed (one side without TLS, or another CA)
    "bad_cookie",
    "not_allowed",
    "wrong_node",  # another node answered at that address (we refused it)
    "duplicate_name",
    "version_mismatch",
    "simultaneous_lost",
    "setup_timeout",
    "protocol_error",
    "error",  # anything else (a bug: the detail says what)
]

#: The members of :data:`ConnectFailureReason`, for checks at run time.
CONNECT_FAILURE_REASONS: frozenset[str] = frozenset(ConnectFailureReason.__args__)  # type: ignore[attr-defined]


class ConnectFailure(msgspec.Struct, frozen=True):
    """Why the last attempt to connect to a node failed.

    Attributes:
        node: the node we tried to reach.
        reason: one of :data:`ConnectFailureReason`, for code to match on.
        detail: a human explanation (wording may change; do not parse it).
        address: ``"host:port"`` we dialled, when known.
    """

    node: str
    reason: ConnectFailureReason
    detail: str
    address: str | None = None


class DistError(OtpError):
    """Base class of the distribution layer's errors."""


class NodeUnreachable(DistError, ConnectionError):
    """Raised when an operation needs a connection to a node that cannot be made.

    ``reason`` is ``noconnection``; the message names the node and the cause.
    """

    def __init__(self, node: str, detail: str, reason: Any = None) -> None:
        from otpylib.runtime.atoms import NOCONNECTION

        self.node = node
        self.reason = NOCONNECTION if reason is None else reason
        super().__init__(f"node {node} is unreachable: {detail}")


class RemoteSpawnError(DistError):
    """Raised when the remote node refused or failed to spawn the process.

    ``reason`` is ``(kind, text)``: ``kind`` one of :data:`SPAWN_REFUSALS`
    (``not_found``: the reference does not import; ``not_async``: a plain
    function; ``not_allowed``: outside the node's ``--spawn-allow`` list;
    ``failed``: anything else, such as bad arguments), ``text`` the peer's
    explanation. The advice in the message follows ``kind``.
    """

    def __init__(self, node: str, function: str, reason: Any) -> None:
        self.node = node
        self.function = function
        self.reason = reason
        kind, text = reason if _is_kind_pair(reason) else ("failed", str(reason))
        super().__init__(f"spawn of {function!r} on {node} failed: {text}{_SPAWN_ADVICE[kind]}")


#: Why a peer refused a spawn (the first element of ``RemoteSpawnError.reason``).
SPAWN_REFUSALS: Final = ("not_found", "not_async", "not_allowed", "failed")
_SPAWN_ADVICE: Final = {
    "not_found": "; the function must be importable on that node as 'package.module:function'",
    "not_async": "",  # the peer's text says it: remote spawn runs only async functions
    "not_allowed": "; that node allows only the modules given with --spawn-allow",
    "failed": "",
}


def _is_kind_pair(reason: Any) -> bool:
    return (
        type(reason) is tuple
        and len(reason) == 2
        and str(reason[0]) in _SPAWN_ADVICE
        and isinstance(reason[1], str)
    )


class RpcError(DistError):
    """Raised when a node answered a node RPC (``Node.rpc``) with an error.

    ``reason`` is the node's explanation (a string); ``op`` the operation.
    """

    def __init__(self, node: str, op: str, reason: Any) -> None:
        self.node = node
        self.op = op
        self.reason = reason
        super().__init__(f"node {node} could not answer {op!r}: {reason}")
