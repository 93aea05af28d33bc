"""Log lines about refused connections that hostile traffic cannot turn into a denial of service.

Every refused connection (garbage bytes, a bad cookie, a handshake that
never finishes, a failed TLS handshake) deserves a log line, and anyone
who can reach the port can cause them. Two things go wrong when they are
written the plain way, from the event loop:

- A write to stderr blocks when stderr is a pipe nobody reads (a service
  manager that stalled, a ``| less`` left open). Once the pipe buffer is
  full (64 KiB, ~270 lines) the whole node stops: no pings answered, no
  messages delivered.
- Nothing bounds how many lines an attacker can make us write.

So refusals go through :func:`log_refusal`, which

1. rate-limits per source (the host, not host:port: a new connection gets
   a new port): :data:`BURST` lines per source per :data:`WINDOW` seconds,
   at most :data:`GLOBAL_BURST` lines per window over all sources, and
   then one "N more refusals from ADDR suppressed" line per source (or one
   for all the rest) when its window ends;
2. hands the lines that pass to a ``logging.handlers.QueueHandler`` whose
   bounded queue drops (and counts) what does not fit, never blocks;
3. writes them from a ``QueueListener`` thread through the usual logging
   configuration (the record goes to its logger's handlers, then up to the
   root's), so a blocked stderr blocks that thread only.

Under attack the cost per refused connection in the event loop is a dict
lookup and a counter. The figures (lines per second under an attack of
1,000 garbage connections) are in docs/security.md.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "BURST",
    "GLOBAL_BURST",
    "WINDOW",
    "RefusalLog",
    "log_refusal",
    "refusal_stats",
    "refusals",
]

#: Seconds of a rate-limit window.
WINDOW: Final = 10.0
#: Lines per source per window before its refusals are only counted.
BURST: Final = 5
#: Lines per window over all sources (many source addresses: 127/8 alone has 16M).
GLOBAL_BURST: Final = 50
#: Sources tracked one by one per window; more are counted together.
MAX_SOURCES: Final = 1024
#: Records waiting for the writer thread; more are dropped and counted.
QUEUE_SIZE: Final = 1000


@dataclass(slots=True)
class _Source:
    """One source's window: lines written and refusals suppressed."""

    started: float
    logged: int = 0
    suppressed: int = 0


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that never blocks and never prints: a full queue drops the record."""

    def __init__(self, q: queue.Queue[Any]) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Dispatch(logging.Handler):
    """The listener's one handler: hand the record to its own logger (writer thread side)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


class _Listener(logging.handlers.QueueListener):
    """A QueueListener that also wakes every ``period`` to write due summary lines."""

    def __init__(self, q: queue.Queue[Any], owner: RefusalLog, period: float) -> None:
        super().__init__(q, _Dispatch())
        self._owner = owner
        self._period = period

    def dequeue(self, block: bool) -> Any:
        while True:
            try:
                return self.queue.get(timeout=self._period)  # type: ignore[call-arg]
            except queue.Empty:
                self._owner.flush()


class RefusalLog:
    """Rate-limited, non-blocking log lines keyed by source; one per process (:func:`log_refusal`).

    Args:
        window, burst, global_burst, max_sources: the limits (module defaults).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        *,
        window: float = WINDOW,
        burst: int = BURST,
        global_burst: int = GLOBAL_BURST,
        max_sources: int = MAX_SOURCES,
        queue_size: int = QUEUE_SIZE,
        clock: Any = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.global_burst = global_burst
        self.max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._window_start = clock()
        self._global_logged = 0
        self._others = 0  # suppressed this window, not tracked per source
        self._other_sources: set[str] = set()
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._handler = _DroppingQueueHandler(self._queue)
        self._listener: _Listener | None = None
        #: Refusals seen, and lines passed to the writer (tests and stats read them).
        self.refusals = 0
        self.lines = 0
        #: Write lines in the caller's thread (in-process tests that read caplog
        #: set it; tests/conftest.py). The queue is what makes it non-blocking.
        self.synchronous = False

    @property
    def dropped(self) -> int:
        """Lines dropped because the writer thread was behind (its queue was full)."""
        return self._handler.dropped

    def log(
        self,
        log: logging.Logger,
        level: int,
        source: str,
        message: str,
        *args: Any,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Log ``message % args`` on ``log`` unless ``source`` is over its limit (then count it).

        ``extra`` carries the structured fields (``logformat.py``).
        """
        if not log.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            self.refusals += 1
            summaries = self._roll(now)
            allowed = self._admit(source, now)
        for record in summaries:
            self._emit(record)
        if allowed:
            self._emit(
                log.makeRecord(log.name, level, "(refusal)", 0, message, args, None, extra=extra)
            )

    def flush(self) -> None:
        """Write the summary lines of every window that has ended (the writer calls it)."""
        with self._lock:
            summaries = self._roll(self._clock())
        for record in summaries:
            self._emit(record)

    def reset(self) -> None:
        """Forget every window and count (tests start each from a clean slate)."""
        with self._lock:
            self._sources.clear()
            self._others = 0
            self._other_sources.clear()
            self._global_logged = 0
            self._window_start = self._clock()

    def stop(self) -> None:
        """Write what is due and queued, and stop the writer thread."""
        self.flush()
        listener, self._listener = self._listener, None
        if listener is not None:
            # A full queue: the writer is stuck on a blocked stream; leave it be.
            with contextlib.suppress(queue.Full):
                listener.stop()

    # ------------------------------------------------------------ internals

    def _admit(self, source: str, now: float) -> bool:
        entry = self._sources.get(source)
        if entry is None:
            if len(self._sources) >= self.max_sources:
                self._others += 1
                if len(self._other_sources) < 65536:
                    self._other_sources.add(source)
                return False
            entry = self._sources[source] = _Source(now)
        if entry.logged < self.burst and self._global_logged < self.global_burst:
            entry.logged += 1
            self._global_logged += 1
            return True
        entry.suppressed += 1
        return False

    def _roll(self, now: float) -> list[logging.LogRecord]:
        """End the windows that are over; return their summary records."""
        out = []
        for source, entry in list(self._sources.items()):
            if now - entry.started >= self.window:
                del self._sources[source]
                if entry.suppressed:
                    out.append(
                        self._summary(
                            "%d more refusals from %s suppressed in the last %.0f s",
                            entry.suppressed,
                            source,
                            now - entry.started,
                        )
                    )
        if now - self._window_start >= self.window:
            if self._others:
                out.append(
                    self._summary(
                        "%d more refusals from %d other addresses suppressed in the last %.0f s",
                        self._others,
                        len(self._other_sources),
                        now - self._window_start,
                    )
                )
            self._others = 0
            self._other_sources.clear()
            self._global_logged = 0
            self._window_start = now
        return out

    def _summary(self, message: str, *args: Any) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, "(refusal)", 0, message, args, None)

    def _emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        if self.synchronous:
            logging.getLogger(record.name).handle(record)
            return
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = _Listener(self._queue, self, self.window / 2)
                    self._listener.start()
        self._handler.handle(record)


#: The process's refusal log (what :func:`log_refusal` writes through).
refusals: Final = RefusalLog()
atexit.register(refusals.stop)


def log_refusal(
    log: logging.Logger,
    source: str,
    message: str,
    *args: Any,
    level: int = logging.WARNING,
    extra: dict[str, Any] | None = None,
) -> None:
    """Log a refused connection from ``source``, rate-limited and without blocking.

    Args:
        log: the logger the line belongs to (its name and handlers are used).
        source: who caused it: ``"host:port"`` (limited per host) or a node name.
        message, args: as for ``logger.warning``.
        level: the record's level (WARNING unless the refusal is routine).
        extra: structured fields for the record (event, peer, reason, address).
    """
    refusals.log(log, level, _host(source), message, *args, extra=extra)


def refusal_stats() -> dict[str, int]:
    """Refusals seen, lines written, lines dropped (writer behind) in this process."""
    return {"refusals": refusals.refusals, "lines": refusals.lines, "dropped": refusals.dropped}


def _host(source: str) -> str:
    """``"10.0.0.1:4369"`` -> ``"10.0.0.1"``; a name or ``"?"`` is kept as it is."""
    host, sep, port = source.rpartition(":")
    return host if sep and port.isdigit() else source
