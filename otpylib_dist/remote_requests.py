"""Requests this node made of a peer and waits on: remote spawns and node RPCs.

Each request has a ref; the peer's reply names it. A request is bound to
the node it went to, so a reply can only come from there (a peer cannot
answer another peer's request) and a lost connection fails every request
still waiting on that node with ``noconnection``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from otpylib.runtime.data import Ref
from otpylib_dist.errors import NodeUnreachable

logger = logging.getLogger(__name__)

__all__ = ["PendingRequests"]

#: Called in the dispatch step of a successful reply, before the requester
#: resumes (see ``PendingRequests.add``).
OnReply = Callable[[Any], None]


class PendingRequests:
    """Requests waiting for a peer's answer, by ref."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[Ref, tuple[str, asyncio.Future[Any], OnReply | None]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, node: str, ref: Ref, on_reply: OnReply | None = None) -> asyncio.Future[Any]:
        """Register a request to ``node``; the future gets ``(ok, result)``.

        ``on_reply(result)`` runs in the same step as a successful reply is
        read: a remote spawn_link records our half of the link there, since
        the child's ``EXIT`` may be the very next frame.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = (node, fut, on_reply)
        return fut

    def discard(self, ref: Ref) -> None:
        """Forget a request (answered, timed out or abandoned)."""
        self._waiting.pop(ref, None)

    def answer(self, peer: str, ref: Ref, ok: bool, result: Any) -> bool:
        """A reply from ``peer``; ``False`` if no request of ours to ``peer`` has that ref.

        A reply to a request that timed out meanwhile is not an error (it
        crossed on the wire); the caller only logs it.
        """
        entry = self._waiting.get(ref)
        if entry is None or entry[0] != peer:
            return False
        del self._waiting[ref]
        _, fut, on_reply = entry
        if ok and on_reply is not None:
            on_reply(result)
        if not fut.done():
            fut.set_result((ok, result))
        return True

    def fail_node(self, node: str, reason: Any) -> None:
        """The connection to ``node`` is gone: every request to it fails."""
        for ref, (where, fut, _) in list(self._waiting.items()):
            if where == node:
                del self._waiting[ref]
                if not fut.done():
                    fut.set_exception(NodeUnreachable(node, f"connection lost ({reason})"))
