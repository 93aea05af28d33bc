"""Discovery from a fixed list of ``name@host:port`` entries.

For small, fixed clusters, firewalled networks without multicast, and tests:
every node is given the same list (its own entry included, which it skips).
Nothing is announced; ``start`` reports every other entry as ``NodeAppeared``
so a node that auto-connects forms the full mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    DiscoveryError,
    NodeAppeared,
    _Subscribers,
)
from otpylib_dist.names import NodeNameError, split_node_name

logger = logging.getLogger(__name__)

__all__ = ["StaticDiscovery", "parse_static_entry"]


def parse_static_entry(entry: str) -> tuple[str, str, int]:
    """Parse ``"name@host:port"`` into ``(node_name, host, port)``.

    The node is dialled at its name's host on ``port``, so the name must be
    the one the node runs under (``--name``).

    Raises:
        DiscoveryError: the entry has no port, a bad port, or a bad node name;
            the message quotes the entry and shows the expected form.
    """
    if not isinstance(entry, str):
        raise DiscoveryError(f"static entry {entry!r} is not a str like 'a@127.0.0.1:4370'")
    text = entry.strip()
    node, sep, port_text = text.rpartition(":")
    if not sep or "@" not in node:
        raise DiscoveryError(
            f"static entry {entry!r} is not 'name@host:port'; write e.g. 'a@127.0.0.1:4370'"
        )
    try:
        _, host = split_node_name(node)
    except NodeNameError as exc:
        raise DiscoveryError(f"static entry {entry!r}: {exc}") from exc
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DiscoveryError(
            f"static entry {entry!r}: port {port_text!r} is not a number from 1 to 65535"
        )
    return node, host, int(port_text)


class StaticDiscovery(_Subscribers):
    """Resolve nodes from a fixed list given up front.

    Args:
        entries: ``"name@host:port"`` strings. Every node of the cluster may
            be given the same list; a node skips its own entry.

    Raises:
        DiscoveryError: an entry is malformed, or one node is listed twice
            with different addresses.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        super().__init__()
        self._nodes: dict[str, tuple[str, int]] = {}
        for entry in entries:
            node, host, port = parse_static_entry(entry)
            known = self._nodes.get(node)
            if known is not None and known != (host, port):
                raise DiscoveryError(
                    f"static entries list {node} twice, at port {known[1]} and {port}; keep one"
                )
            self._nodes[node] = (host, port)
        self._self: str | None = None

    @property
    def nodes(self) -> dict[str, tuple[str, int]]:
        """A copy of the list: node name -> (host, port)."""
        return dict(self._nodes)

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Report every listed node except ``node_name`` as ``NodeAppeared``."""
        self._self = node_name
        listed = self._nodes.get(node_name)
        if listed is not None and listed != (host, port):
            logger.warning(
                "static list has %s at %s:%d but it listens on %s:%d",
                node_name,
                listed[0],
                listed[1],
                host,
                port,
            )
        for node, (node_host, node_port) in self._nodes.items():
            if node != node_name:
                self._emit(NodeAppeared(node, node_host, node_port))

    async def stop(self) -> None:
        """Nothing to withdraw: the list is the same for everyone."""
        self._self = None

    async def resolve(
        self, node_name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> tuple[str, int] | None:
        """Return the listed ``(host, port)`` of ``node_name``, or ``None``; never waits."""
        return self._nodes.get(node_name)
