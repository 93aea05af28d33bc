"""How nodes find each other: one interface, several mechanisms.

Layout:
    base.py     the Discovery protocol every mechanism implements, its events
                (NodeAppeared, NodeDisappeared) and DiscoveryError
    mdns.py     MdnsDiscovery: zero-configuration on a LAN (zeroconf, DNS-SD)
    static.py   StaticDiscovery: a fixed "name@host:port" list
    epmd.py     EpmdDiscovery: register with / ask a port mapper (EPMD's protocol);
                the default of otpy-node, which starts a mapper when none answers
    epmd_server.py  the port mapper itself (``otpy-node epmd``), asyncio
    dns.py      DnsDiscovery: Kubernetes headless services (SRV + A records)

The wire formats are sans-I/O modules of ``otpylib_dist.protocol``
(``epmd_wire``, ``dns_wire``); these modules only move bytes.

Which to use: the port mapper by default (same host, or ``name@host`` on
hosts that run one; an Erlang epmd serves too); mDNS where multicast reaches
every node and names are not known in advance; DNS on Kubernetes; static
otherwise.
The mechanisms are imported lazily by name so that importing this package
does not open sockets or load zeroconf until a mechanism is used.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    Discovery,
    DiscoveryCallback,
    DiscoveryError,
    DiscoveryEvent,
    NodeAppeared,
    NodeDisappeared,
)

if TYPE_CHECKING:
    from otpylib_dist.discovery.dns import DnsDiscovery
    from otpylib_dist.discovery.epmd import EpmdDiscovery
    from otpylib_dist.discovery.mdns import MdnsDiscovery
    from otpylib_dist.discovery.static import StaticDiscovery

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RESOLVE_TIMEOUT",
    "Discovery",
    "DiscoveryCallback",
    "DiscoveryError",
    "DiscoveryEvent",
    "DnsDiscovery",
    "EpmdDiscovery",
    "MdnsDiscovery",
    "NodeAppeared",
    "NodeDisappeared",
    "StaticDiscovery",
]

_LAZY = {
    "DnsDiscovery": "otpylib_dist.discovery.dns",
    "EpmdDiscovery": "otpylib_dist.discovery.epmd",
    "MdnsDiscovery": "otpylib_dist.discovery.mdns",
    "StaticDiscovery": "otpylib_dist.discovery.static",
}


def __getattr__(name: str) -> Any:
    """Import a mechanism's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
