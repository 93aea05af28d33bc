"""A node's vital signs from the operating system's side: event-loop lag and memory.

Event-loop lag is what every process of a node waits for when one of them
hogs the loop (a CPU-bound callback, a blocking call): no per-process
figure shows it. :class:`LoopLag` measures it the cheap way, with one small
periodic timer whose lateness is the lag (four wake-ups a second, nothing
on the message path). One monitor serves every node sharing a loop:
:func:`loop_lag` returns the running loop's, starting it on first use.

RSS comes from ``/proc/self/statm`` (Linux), else the peak from
``resource.getrusage`` (other Unixes; said so by :func:`rss_bytes`' second
value).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import deque
from typing import Final

import msgspec

logger = logging.getLogger(__name__)

__all__ = ["LAG_BUCKETS", "LoopLag", "LoopLagStatistics", "loop_lag", "rss_bytes"]

#: Seconds between two measurements: often enough to catch a stall of a
#: fraction of a second, rare enough to cost nothing (4 callbacks a second).
LAG_INTERVAL: Final = 0.25

#: Upper bounds (seconds) of the lag histogram's buckets, Prometheus style:
#: from half a millisecond (an idle loop) to five seconds (a stuck one; a
#: peer declares us down after net_ticktime of silence).
LAG_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

#: Samples kept for :attr:`LoopLagStatistics.recent_max_seconds` (10 s).
_RECENT: Final = 40


class LoopLagStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a loop's lag.

    Attributes:
        last_seconds: lateness of the most recent timer (0 before the first).
        recent_max_seconds: the worst lateness over the last ten seconds.
        count: measurements since the monitor started.
        sum_seconds: total lateness measured.
        buckets: per upper bound of :data:`LAG_BUCKETS`, the measurements at
            or below it (cumulative, as a Prometheus histogram).
    """

    last_seconds: float
    recent_max_seconds: float
    count: int
    sum_seconds: float
    buckets: tuple[int, ...]


class LoopLag:
    """Measures one event loop's lag with a periodic timer; see :func:`loop_lag`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = LAG_INTERVAL) -> None:
        self._loop = loop
        self._interval = interval
        self._counts = [0] * len(LAG_BUCKETS)
        self._count = 0
        self._sum = 0.0
        self._recent: deque[float] = deque(maxlen=_RECENT)
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin measuring (idempotent)."""
        if self._handle is None:
            self._due = self._loop.time() + self._interval
            self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop measuring; the figures so far stay readable."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        """Whether the timer is armed."""
        return self._handle is not None

    def _tick(self) -> None:
        now = self._loop.time()
        lag = max(0.0, now - self._due)
        self._count += 1
        self._sum += lag
        self._recent.append(lag)
        counts = self._counts
        for i, bound in enumerate(LAG_BUCKETS):
            if lag <= bound:
                counts[i] += 1
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def statistics(self) -> LoopLagStatistics:
        """A snapshot of the figures so far."""
        recent = self._recent
        return LoopLagStatistics(
            last_seconds=recent[-1] if recent else 0.0,
            recent_max_seconds=max(recent) if recent else 0.0,
            count=self._count,
            sum_seconds=self._sum,
            buckets=tuple(self._counts),
        )


_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = (
    weakref.WeakKeyDictionary()
)


def loop_lag(loop: asyncio.AbstractEventLoop | None = None) -> LoopLag:
    """The lag monitor of ``loop`` (default: the running loop), started on first use.

    ``otpy-node run`` starts it at once; a library user gets it from
    ``start_metrics`` or the first ``stats`` query.
    """
    loop = loop if loop is not None else asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None:
        monitor = _monitors[loop] = LoopLag(loop)
    monitor.start()
    return monitor


def rss_bytes() -> tuple[int, bool]:
    """The process's resident memory in bytes, and whether it is the current figure.

    Linux reads ``/proc/self/statm`` (current). Elsewhere ``getrusage``
    gives only the peak, so the second value is ``False``.
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE"), True
    except (OSError, IndexError, ValueError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is KiB on Linux, bytes on macOS.
        return (peak if sys.platform == "darwin" else peak * 1024), False
