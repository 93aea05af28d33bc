"""Keep the event loop polling for a moment after network traffic (BEAM's busy wait).

Why: on a quiet node the event loop sleeps in ``epoll_wait`` between
messages, and waking a sleeping OS process costs tens of microseconds
(much more in virtual machines): more than all the Python work of a
message round trip. Erlang's schedulers avoid it by spinning for a short
while before they sleep (``+sbwt``, on by default). This does the same at
the application level, so it works on any event loop (asyncio's or
uvloop): after traffic on any connection, a task yields with
``asyncio.sleep(0)`` until ``window`` seconds have passed without traffic,
which makes the loop poll with a zero timeout instead of sleeping.

The cost is CPU while a conversation is active (at most ``window`` seconds
after the last byte); an idle node does not spin. A fixed window hurts on a
machine whose CPUs are all busy: the spinner competes with the very
processes it waits for (round trips went from 75 µs to 110 µs .. 2.8 ms
with two CPU hogs on two cores). So the default is *adaptive*: each spin
session measures how much CPU it actually got (``time.thread_time``)
against the wall time it took; a session that got less than half a CPU
was starved, and spinning then stops for a quiet period that doubles with
each starved session (10 ms up to 2 s) and halves back as sessions run
unstarved. A session is also cut short at the first pause between two of
its steps that was mostly spent off the CPU (the OS ran a busy process in
our place), which is what a crowded machine looks like from inside. On an
idle machine it spins as BEAM does; on a crowded one it backs off to plain
sleeping within a few sessions.

``Node()`` and ``otpy-node`` use the adaptive default
(``DEFAULT_BUSY_WAIT`` window); ``busy_wait=S`` / ``--busy-wait S`` asks for
a fixed window, ``0`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUSY_WAIT", "BusyWait"]

#: A good window when busy waiting is wanted: 200 µs brought a loopback
#: round trip between two idle-machine OS processes from ~75 µs to ~17 µs on
#: uvloop (BEAM's default busy wait is of this order).
DEFAULT_BUSY_WAIT: Final = 0.0002


#: A session that got less CPU than this share of its wall time was starved.
STARVED_SHARE: Final = 0.5
#: First and longest quiet period after starved sessions (doubling between).
MIN_QUIET: Final = 0.01
MAX_QUIET: Final = 2.0
#: A pause between two spin steps longer than this (one step takes a few
#: microseconds) is the OS running something else in our place.
_PREEMPTED: Final = 0.0005


class BusyWait:
    """Spins the running loop for ``window`` seconds after each :meth:`poke`.

    Args:
        window: seconds to keep polling after traffic (0: never spin).
        adaptive: back off when spinning is starved of CPU (see the module
            docstring); ``False`` spins for the whole window every time.
        wall_clock, cpu_clock: clocks (tests pass fakes).
    """

    __slots__ = (
        "_cpu_clock",
        "_quiet",
        "_quiet_until",
        "_task",
        "_until",
        "_wake",
        "_wall_clock",
        "adaptive",
        "sessions",
        "starved_sessions",
        "window",
    )

    def __init__(
        self,
        window: float = 0.0,
        *,
        adaptive: bool = False,
        wall_clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        if window < 0:
            raise ValueError(f"busy_wait must be >= 0 seconds, got {window}")
        self.window = window
        self.adaptive = adaptive
        self._wall_clock = wall_clock
        self._cpu_clock = cpu_clock
        self._until = 0.0
        #: Current quiet period after a starved session (0: none), and its end.
        self._quiet = 0.0
        self._quiet_until = 0.0
        #: Spin sessions run, and those starved of CPU (tests, statistics).
        self.sessions = 0
        self.starved_sessions = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the spinning task on the running loop (no-op when ``window`` is 0)."""
        if self.window > 0 and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self) -> None:
        """Traffic happened: keep polling for another ``window`` seconds (unless quiet)."""
        wake = self._wake
        if wake is not None:
            now = self._wall_clock()
            if now < self._quiet_until:
                return  # starved lately: sleep in the poller instead
            self._until = now + self.window
            if not wake.is_set():
                wake.set()

    @property
    def spinning_allowed(self) -> bool:
        """Whether a poke now would spin (not in a quiet period)."""
        return self._wall_clock() >= self._quiet_until

    async def stop(self) -> None:
        """Stop spinning and wait for the task to end."""
        task, self._task, self._wake = self._task, None, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    def _session_ended(self, wall: float, cpu: float) -> None:
        """Judge one spin session: starved ones start (or lengthen) a quiet period."""
        if not self.adaptive or wall <= 0:
            return
        if self._wall_clock() < self._quiet_until:
            return  # judged starved during the session already
        if cpu < STARVED_SHARE * wall:
            self._starved()
        else:
            self._quiet = self._quiet / 2 if self._quiet > MIN_QUIET else 0.0

    def _starved(self) -> None:
        """A session got too little CPU: quiet for twice as long as last time."""
        self.starved_sessions += 1
        self._quiet = min(max(self._quiet * 2, MIN_QUIET), MAX_QUIET)
        self._quiet_until = self._wall_clock() + self._quiet

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        clock = self._wall_clock
        cpu_clock = self._cpu_clock
        yield_cpu = os.sched_yield
        while True:
            await wake.wait()
            wake.clear()
            wall0, cpu0 = clock(), cpu_clock()
            last, last_cpu = wall0, cpu0
            while (now := clock()) < self._until:
                if self.adaptive:
                    # Judge every step: a gap much longer than one step
                    # means the OS ran something else (sched_yield handed
                    # our core to a busy process); if we got less than half
                    # of that gap, we are competing with what we wait for.
                    cpu = cpu_clock()
                    gap = now - last
                    if gap > _PREEMPTED and cpu - last_cpu < STARVED_SHARE * gap:
                        self._starved()
                        break
                    last, last_cpu = now, cpu
                # Give the CPU to any other runnable OS process (the peer we
                # wait for may be one of them on a busy machine).
                yield_cpu()
                await asyncio.sleep(0)
            self._session_ended(clock() - wall0, cpu_clock() - cpu0)
            self.sessions += 1
