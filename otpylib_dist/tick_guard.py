"""The stall guard: a thread that keeps ticks flowing while the event loop is blocked.

Why: a peer declares us down after ``net_ticktime`` (``T``) of silence, and
our ticks are written by the event loop. A callback that blocks the loop (a
``time.sleep``, a CPU-bound computation, a slow synchronous call) stops
them, and from ``0.75 T`` on a live node loses every connection: every link
and monitor across it fires ``noconnection`` although nothing failed. A
busy node is not a dead node. Erlang never meets this because its ticker
runs on another scheduler; we keep one daemon thread per OS process that
writes ticks for the connections whose loop is late.

Rules that keep the byte stream intact (each enforced in
:meth:`GuardedLink.maybe_tick`):

- It writes only while the loop is late: the connection's tick check is
  overdue by more than a quarter interval (``T/16``). A healthy loop ticks
  itself and the thread writes nothing.
- It writes only between frames: under the connection's write lock, which
  the loop holds around every ``transport.write``, and only when the
  transport buffers nothing (no frame half written by the loop; asyncio's
  and uvloop's transports both count their own and libuv's buffers and
  decrement them only after the bytes are in the kernel).
- It never splits its own tick: it writes only when the kernel send queue
  is empty (``SIOCOUTQ`` = 0), so the 4-byte write cannot be partial. (A
  non-empty queue means bytes are already on their way to the peer, as
  good as a tick.) Should a write still come out short, the connection is
  shut down rather than left with a corrupt stream.
- It writes to its own ``dup`` of the socket, so a descriptor the transport
  closed and the OS handed out again is never written to; the dup is closed
  in ``connection_lost``.
- It gives up after :data:`MAX_COVER` ticktimes: a loop blocked that long
  is hung, not busy, and its peers should declare it down as they would a
  frozen node (a hung node that looks alive answers nothing). The longest
  block a connection survives is thus about ``MAX_COVER + 0.75`` ticktimes.
- Plain TCP only: with TLS a tick must be encrypted by the ``SSLObject``
  the loop uses without a lock (a pre-encrypted record would take a
  sequence number and force the loop to send it before its own next
  record), so TLS connections get no guard and rely on the ``0.75 T`` margin.
- Linux only (``SIOCOUTQ``); elsewhere :func:`guard` returns ``None``.
- ``OTPYLIB_TICK_GUARD=0`` in the environment turns it off (to compare, or
  to rule it out when chasing a problem).

The thread needs the GIL to run: it helps against loops blocked in
``time.sleep``, I/O, or pure-Python computation (which yields the GIL every
5 ms), not against a C extension that holds the GIL for seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import struct
import sys
import threading
import time
from typing import Any, Final

from otpylib_dist.protocol.framing import TICK_FRAME

logger = logging.getLogger(__name__)

__all__ = ["GuardedLink", "bytes_waiting", "guard"]

#: ``SIOCOUTQ``: bytes in a TCP socket's send queue, not yet acknowledged.
_SIOCOUTQ: Final = 0x5411
#: ``FIONREAD`` / ``SIOCINQ``: bytes waiting in a socket's receive queue.
_FIONREAD: Final = 0x541B
_INT: Final = struct.Struct("i")
#: Ticktimes of loop stall the guard covers before it lets the peers decide.
MAX_COVER: Final = 5


def _ioctl_int(fd: int, request: int) -> int:
    result = fcntl.ioctl(fd, request, _INT.pack(0))
    return int(_INT.unpack(result)[0])


def bytes_waiting(sock: Any) -> int:
    """Bytes the kernel has received on ``sock`` that nobody has read yet (0 if unknown).

    A peer whose bytes wait in our receive queue is alive: we were merely
    late reading them (see ``Connection._tick``).
    """
    if sock is None:
        return 0
    try:
        fd = sock.fileno()
        return _ioctl_int(fd, _FIONREAD) if fd >= 0 else 0
    except (OSError, ValueError):
        return 0


class GuardedLink:
    """One connection as the guard thread sees it.

    Attributes:
        lock: held by the loop around every ``transport.write`` and by the
            thread around its check and write.
        interval: the connection's tick interval (``net_ticktime / 4``).
        loop_seen: ``time.monotonic()`` of the loop's last tick check; the
            loop updates it, the thread only reads it.
        ticks: ticks the thread wrote (tests and diagnostics read it).
    """

    __slots__ = (
        "_closed",
        "_fd",
        "_last_tick",
        "_transport",
        "interval",
        "lock",
        "loop_seen",
        "peer",
        "ticks",
    )

    def __init__(
        self, fd: int, transport: Any, lock: threading.RLock, interval: float, peer: str
    ) -> None:
        self._fd = fd
        self._transport = transport
        self._closed = False
        self._last_tick = 0.0
        self.lock = lock
        self.interval = interval
        self.loop_seen = time.monotonic()
        self.peer = peer
        self.ticks = 0

    def maybe_tick(self, now: float) -> None:
        """Write a tick if the loop is late and the stream is between frames (thread side)."""
        late = now - self.loop_seen - self.interval
        if late < self.interval / 4 or late > MAX_COVER * 4 * self.interval:
            return
        if now - self._last_tick < self.interval:
            return
        with self.lock:
            if self._closed or self._transport.is_closing():
                return
            try:
                if self._transport.get_write_buffer_size() or _ioctl_int(self._fd, _SIOCOUTQ):
                    return
                written = os.write(self._fd, TICK_FRAME)
            except OSError:
                return  # full, reset or closed: the loop will find out
            if written != len(TICK_FRAME):
                logger.error("a tick to %s was cut short; closing the connection", self.peer)
                with contextlib.suppress(OSError):
                    socket.socket(fileno=os.dup(self._fd)).shutdown(socket.SHUT_RDWR)
                return
            self._last_tick = now
            self.ticks += 1

    def close(self) -> None:
        """Stop guarding (loop side, from ``connection_lost``); closes the dup."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)
        _GUARD.unwatch(self)


class _Guard:
    """The process's one guard thread and the links it watches."""

    def __init__(self) -> None:
        self._links: set[GuardedLink] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, link: GuardedLink) -> None:
        with self._wake:
            self._links.add(link)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="otpylib-tick-guard", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def unwatch(self, link: GuardedLink) -> None:
        with self._wake:
            self._links.discard(link)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._links:
                    self._thread = None
                    return
                links = list(self._links)
                self._wake.wait(min(link.interval for link in links) / 4)
            now = time.monotonic()
            for link in links:
                link.maybe_tick(now)


_GUARD: Final = _Guard()


def guard(transport: Any, lock: threading.RLock, interval: float, peer: str) -> GuardedLink | None:
    """Start guarding a plain TCP connection; ``None`` where it cannot be done safely.

    Call from the loop once the connection is up; call
    :meth:`GuardedLink.close` when it is lost.
    """
    if not sys.platform.startswith("linux") or os.environ.get("OTPYLIB_TICK_GUARD") == "0":
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd = os.dup(sock.fileno())
    except (OSError, ValueError):
        return None
    try:
        _ioctl_int(fd, _SIOCOUTQ)
    except OSError:
        os.close(fd)
        return None
    link = GuardedLink(fd, transport, lock, interval, peer)
    _GUARD.watch(link)
    return link
