"""The one interface every discovery mechanism offers, and its events.

A node needs two things from discovery: to answer "where does ``name@host``
listen?" before dialling it (``resolve``), and, for a self-forming cluster, to
hear about nodes as they come and go (``subscribe``). It also announces itself
(``start``) and withdraws (``stop``) where the mechanism allows it. mDNS,
static lists, EPMD and DNS all fit behind this; each module documents which
parts it can really do (EPMD, for instance, sends no events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias, runtime_checkable

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RESOLVE_TIMEOUT",
    "Discovery",
    "DiscoveryCallback",
    "DiscoveryError",
    "DiscoveryEvent",
    "NodeAppeared",
    "NodeDisappeared",
]

#: Seconds ``resolve`` waits by default: long enough for an mDNS query and a
#: retry on a quiet LAN (queries are answered within ~0.5 s), short enough that
#: a connect to a node that does not exist fails while a user still waits.
DEFAULT_RESOLVE_TIMEOUT: Final = 3.0


class DiscoveryError(DistError):
    """Raised when discovery is misconfigured or its backend refuses us.

    Examples: a malformed static entry, a node name mDNS cannot announce, an
    EPMD that refuses the registration. A node that simply is not found is not
    an error: ``resolve`` returns ``None``.
    """


@dataclass(frozen=True, slots=True)
class NodeAppeared:
    """A node of our cluster is reachable at ``host:port``.

    May be reported again for the same node when its address changes; the
    latest report wins.
    """

    #: Full node name, ``short@host``.
    name: str
    #: Address to connect to (an IP address or a resolvable host name).
    host: str
    #: TCP port the node's distribution listener is on.
    port: int


@dataclass(frozen=True, slots=True)
class NodeDisappeared:
    """A node withdrew its announcement (clean stop) or its record expired.

    This is a hint, not a nodedown: a connection that is still up stays up
    until the connection itself fails.
    """

    #: Full node name, ``short@host``.
    name: str


#: What subscribers receive.
DiscoveryEvent: TypeAlias = NodeAppeared | NodeDisappeared
#: A subscriber: called in the event loop, must not block; exceptions are
#: logged and do not stop discovery.
DiscoveryCallback: TypeAlias = Callable[[DiscoveryEvent], None]


@runtime_checkable
class Discovery(Protocol):
    """How a node finds its peers. Implemented by every module in this package.

    The node calls ``subscribe`` then ``start`` when it has bound its port,
    ``resolve`` before dialling a node whose address it does not know, and
    ``stop`` on shutdown.
    """

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Announce ``node_name`` as listening on ``host:port`` and begin watching.

        ``host`` is the host part of the node name, where the node is reached.
        Raises ``DiscoveryError`` when the announcement is refused.
        """
        ...

    async def stop(self) -> None:
        """Withdraw the announcement (peers see ``NodeDisappeared``) and stop watching.

        Safe to call more than once, and without ``start``.
        """
        ...

    async def resolve(
        self, node_name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> tuple[str, int] | None:
        """Return ``(host, port)`` where ``node_name`` listens, or ``None`` if not found in time."""
        ...

    def subscribe(self, callback: DiscoveryCallback) -> Callable[[], None]:
        """Call ``callback`` for every later event; returns a function that unsubscribes."""
        ...


class _Subscribers:
    """Fan-out of events to callbacks, shared by the implementations.

    A failing callback is logged and skipped so one broken subscriber cannot
    silence discovery for the others.
    """

    def __init__(self) -> None:
        self._callbacks: list[DiscoveryCallback] = []

    def subscribe(self, callback: DiscoveryCallback) -> Callable[[], None]:
        """Call ``callback`` for every later event; returns a function that unsubscribes.

        Only later events are delivered: subscribe before ``start`` to hear
        about every node.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _emit(self, event: DiscoveryEvent) -> None:
        logger.debug("discovery event %r", event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                logger.exception("discovery subscriber %r failed on %r", callback, event)
