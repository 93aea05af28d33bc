"""Node names: ``name@host``, where ``host`` is where the node is reached.

Erlang allows short (``a@host``) and long (``a@host.domain``) names in
separate clusters; we accept any host (IP address or DNS name) and keep one
rule: the part before ``@`` is a short identifier, the part after it the
address the node listens on and is reached at.
"""

from __future__ import annotations

import logging
import re
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HOST", "NodeNameError", "make_node_name", "split_node_name"]

#: Host used when a name has no ``@host`` part. Loopback, so that a node
#: started without thinking about networks is never reachable from outside;
#: give ``name@<address>`` to join a LAN.
DEFAULT_HOST: Final = "127.0.0.1"

#: Node short names: letters, digits, ``_`` and ``-``, 1..63 characters (the
#: longest DNS label, which mDNS instance names must also fit).
_SHORT_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}$")
#: Hosts: DNS names or IPv4 literals (IPv6 literals in brackets are refused
#: for now, as ``@`` plus ``:`` would make ``name@host:port`` ambiguous).
_HOST_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.]{0,252}$")


class NodeNameError(ValueError):
    """Raised for a node name that is not ``name@host`` with valid parts."""


def split_node_name(node: str) -> tuple[str, str]:
    """Split ``"name@host"`` into ``("name", "host")``, validating both.

    Raises:
        NodeNameError: the name is malformed (the message says which part).
    """
    if not isinstance(node, str):
        raise NodeNameError(f"node names are str like 'alpha@127.0.0.1', got {node!r}")
    short, sep, host = node.partition("@")
    if not sep:
        raise NodeNameError(f"node name {node!r} has no '@host' part; use e.g. '{node}@127.0.0.1'")
    if not _SHORT_RE.match(short):
        raise NodeNameError(
            f"node name {node!r}: the part before '@' must be 1-63 letters, digits, '_' or '-'"
        )
    if not _HOST_RE.match(host) or "@" in host:
        raise NodeNameError(
            f"node name {node!r}: {host!r} is not a valid host name or IPv4 address"
        )
    return short, host


def make_node_name(name: str, default_host: str = DEFAULT_HOST) -> str:
    """Return a full node name, adding ``@default_host`` when ``name`` has none.

    Raises:
        NodeNameError: the result is not a valid node name.
    """
    full = name if "@" in name else f"{name}@{default_host}"
    split_node_name(full)
    return full
