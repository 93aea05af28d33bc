"""Ticks: keep an idle connection alive, and notice a peer that went silent.

Erlang's ``net_kernel`` wakes a ticker four times per ``net_ticktime`` and
hands each connection a tiny pure decision over its byte counters. This is
that decision, with no timer and no socket: the connection calls
:meth:`Ticker.check` every :attr:`Ticker.interval` seconds (``net_ticktime
/ 4``) with its cumulative bytes read and written, and acts on the answer.

- :data:`TickAction.SEND_TICK`: nothing was written since the last check
  and nothing is queued, so write a tick (a zero-length frame) to show the
  peer we are alive. Our own tick is not traffic: the ticker discounts the
  :data:`TICK_SIZE` bytes it asked for (as Erlang's ticker adds one to its
  write counter), so an idle connection ticks at every check, every ``T/4``.
- :data:`TickAction.PEER_SILENT`: nothing was read for four checks in a
  row, a full ``net_ticktime``: declare the peer down (``net_tick_timeout``).
  The connection may first look at the socket (bytes waiting in the kernel
  mean the peer is alive and we were late) and call :meth:`Ticker.heard`.
- :data:`TickAction.NOTHING`: otherwise.

Detection window (``T`` = ``net_ticktime``, checked in tests/otpylib_dist/
protocol/test_ticks.py over every phase between the two tickers):

- A peer whose last byte reaches us at ``t`` is declared silent at the
  fourth silent check after the first check that follows ``t``: between
  ``T`` and ``1.25 T`` after ``t``. Never before a whole ``T`` of silence.
- An idle live peer writes at every one of its checks (every ``T/4``), and
  a busy one more often, so its last byte before it freezes is at most
  ``T/4`` old: a frozen peer is declared down ``0.75 T`` to ``1.25 T`` after
  it froze (45 to 75 s for the default ``T = 60``), Erlang's window.
- A live peer whose event loop is blocked for ``D`` seconds is never
  declared down when ``D < 0.75 T``, whatever the phase; with ``D`` up to
  ``1.25 T`` it depends on the phase. (The connection's stall guard thread,
  ``otpylib_dist/tick_guard.py``, keeps ticks flowing during such blocks.)
"""

from __future__ import annotations

import enum
import logging
from typing import Final

from otpylib_dist.protocol.framing import TICK_FRAME

logger = logging.getLogger(__name__)

__all__ = ["CHECKS_PER_TICKTIME", "DEFAULT_NET_TICKTIME", "TICK_SIZE", "TickAction", "Ticker"]

#: Erlang's ``net_ticktime`` default, in seconds.
DEFAULT_NET_TICKTIME: Final = 60.0

#: Checks per ``net_ticktime``, as Erlang's ticker; also the number of
#: silent checks in a row after which the peer is declared down.
CHECKS_PER_TICKTIME: Final = 4

#: Bytes one tick adds to the written counter (the ticker discounts them).
TICK_SIZE: Final = len(TICK_FRAME)


class TickAction(enum.Enum):
    """What the connection should do after a :meth:`Ticker.check`."""

    NOTHING = "NOTHING"
    SEND_TICK = "SEND_TICK"  # write TICK_FRAME
    PEER_SILENT = "PEER_SILENT"  # close the connection with reason net_tick_timeout

    def __repr__(self) -> str:
        return self.value


class Ticker:
    """The tick decision for one connection (Erlang's ``need_to_tick`` and friends).

    Args:
        net_ticktime: seconds of silence after which a peer is down; the
            same value should be used on every node of a cluster.

    Attributes:
        net_ticktime: as given.
        interval: seconds between calls to :meth:`check` (``net_ticktime / 4``).
        silent_checks: checks in a row that saw nothing read.
    """

    __slots__ = ("_read", "_written", "interval", "net_ticktime", "silent_checks")

    def __init__(self, net_ticktime: float = DEFAULT_NET_TICKTIME) -> None:
        if not net_ticktime > 0:
            raise ValueError(f"net_ticktime must be positive, got {net_ticktime!r}")
        self.net_ticktime = net_ticktime
        self.interval = net_ticktime / CHECKS_PER_TICKTIME
        self.silent_checks = 0
        self._read = 0
        self._written = 0

    def check(self, bytes_read: int, bytes_written: int, *, queue_empty: bool = True) -> TickAction:
        """Decide what to do at this tick; call every :attr:`interval` seconds.

        Args:
            bytes_read: everything read from the peer so far (ticks included).
            bytes_written: everything written to the peer so far, the ticks
                this ticker asked for included (it discounts them).
            queue_empty: False when bytes wait to be written (the peer will
                hear from us soon without a tick).
        """
        if bytes_read != self._read:
            self._read = bytes_read
            self.silent_checks = 0
        else:
            self.silent_checks += 1
            if self.silent_checks >= CHECKS_PER_TICKTIME:
                return TickAction.PEER_SILENT
        if bytes_written != self._written:
            self._written = bytes_written
            return TickAction.NOTHING
        if not queue_empty:
            return TickAction.NOTHING
        self._written = bytes_written + TICK_SIZE
        return TickAction.SEND_TICK

    def heard(self) -> None:
        """The peer was seen alive some other way (bytes waiting in the socket): restart the count.

        Call it after a :data:`TickAction.PEER_SILENT` answer that the
        connection overrules; the peer then has another full ``net_ticktime``.
        """
        self.silent_checks = 0
