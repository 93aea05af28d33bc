"""Frozen records describing a node's connections: what ``stats``, ``top`` and metrics read.

Introspection returns snapshots, never live objects (as Trio's
``statistics()``): a caller may keep one, compare two taken a second apart,
or send one to another node, and nothing changes under it.

The counters behind them are plain ints incremented inline where the work
happens (``connection.py``, ``node.py``): reading them costs nothing on the
hot path, and a metrics endpoint reads them at scrape time.
"""

from __future__ import annotations

import logging

import msgspec

logger = logging.getLogger(__name__)

__all__ = ["NodeStatistics", "PeerStatistics"]


class PeerStatistics(msgspec.Struct, frozen=True):
    """One connection to one peer node, at the moment it was taken.

    Attributes:
        peer: the peer's node name (the expected one while handshaking).
        state: ``"up"`` (handshake done) or ``"handshaking"``.
        hidden: the peer is a hidden node (a CLI tool, ...).
        address: the peer's ``host:port``.
        bytes_in: bytes read from the socket (TLS records included).
        bytes_out: bytes written for this peer (before TLS).
        messages_in: messages (send / registered send) received from the peer.
        messages_out: messages queued to the peer.
        ticks_missed: tick checks that found the peer silent for more than
            half of ``net_ticktime`` (a live peer writes every half at least).
        seconds_since_heard: seconds since the last bytes from the peer.
        connected_seconds: seconds since the handshake finished (0 before).
    """

    peer: str
    state: str
    hidden: bool
    address: str
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    ticks_missed: int
    seconds_since_heard: float
    connected_seconds: float


class NodeStatistics(msgspec.Struct, frozen=True):
    """How the node's connections came and went since it started.

    Attributes:
        nodeups: connections that came up (hidden peers included).
        nodedowns: connections that went down, by reason (``connection_closed``,
            ``net_tick_timeout``, ``disconnect``, ``protocol_error``).
        refusals: handshakes that ended refused, by reason (``bad_cookie``,
            ``not_allowed``, ``duplicate_name``, ``version_mismatch``,
            ``simultaneous_lost``, ``setup_timeout``, ``protocol_error``,
            ``tls``), whichever side refused.
        spin_sessions: times the event loop polled after traffic instead of
            sleeping (the busy wait, ``busy_wait.py``; always 0 with
            ``busy_wait=0``).
        spin_sessions_starved: those of them that found every CPU taken
            (the spin got under half a CPU), after which the node sleeps
            instead for a quiet period that doubles each time. Many of these
            mean the machine is crowded and the spin is backing off, as
            designed.
    """

    nodeups: int
    nodedowns: dict[str, int]
    refusals: dict[str, int]
    spin_sessions: int = 0
    spin_sessions_starved: int = 0
