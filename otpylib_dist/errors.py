"""Exceptions of the distribution layer, each saying what to do next.

Protocol-level errors (malformed frames, refused handshakes) live in
``otpylib_dist.protocol.errors``; these are the ones the node API raises.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec

from otpylib.runtime.errors import OtpError

logger = logging.getLogger(__name__)

__all__ = [
    "CONNECT_FAILURE_REASONS",
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

    ``reason`` carries the remote node's reason (e.g. the import error text).
    """

    def __init__(self, node: str, function: str, reason: Any) -> None:
        self.node = node
        self.function = function
        self.reason = reason
        super().__init__(
            f"spawn of {function!r} on {node} failed: {reason}; the function must be "
            "importable on that node as 'package.module:function'"
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
