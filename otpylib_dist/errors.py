"""Exceptions of the distribution layer, each saying what to do next.

Protocol-level errors (malformed frames, refused handshakes) live in
``otpylib_dist.protocol.errors``; these are the ones the node API raises.
"""

from __future__ import annotations

import logging
from typing import Any

from otpylib.runtime.errors import OtpError

logger = logging.getLogger(__name__)

__all__ = ["DistError", "NodeUnreachable", "RemoteSpawnError"]


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
