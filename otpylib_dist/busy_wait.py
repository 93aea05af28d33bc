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
after the last byte); an idle node does not spin. It is off by default
(``DistributedBackend(busy_wait=0.0)``): on a machine whose CPUs are all
busy, a spinning node competes with the very processes it waits for, and
round trips got *worse* here (75 µs without, 110 µs to 2.8 ms with, two
CPU hogs on two cores). Turn it on for nodes with a core to spare
(``busy_wait=DEFAULT_BUSY_WAIT`` or ``otpy-node --busy-wait 0.0002``), as
one turns BEAM's ``+sbwt`` off in crowded containers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUSY_WAIT", "BusyWait"]

#: A good window when busy waiting is wanted: 200 µs brought a loopback
#: round trip between two idle-machine OS processes from ~75 µs to ~17 µs on
#: uvloop (BEAM's default busy wait is of this order).
DEFAULT_BUSY_WAIT: Final = 0.0002


class BusyWait:
    """Spins the running loop for ``window`` seconds after each :meth:`poke`."""

    __slots__ = ("_task", "_until", "_wake", "window")

    def __init__(self, window: float = 0.0) -> None:
        if window < 0:
            raise ValueError(f"busy_wait must be >= 0 seconds, got {window}")
        self.window = window
        self._until = 0.0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the spinning task on the running loop (no-op when ``window`` is 0)."""
        if self.window > 0 and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self) -> None:
        """Traffic happened: keep polling for another ``window`` seconds."""
        wake = self._wake
        if wake is not None:
            self._until = time.perf_counter() + self.window
            if not wake.is_set():
                wake.set()

    async def stop(self) -> None:
        """Stop spinning and wait for the task to end."""
        task, self._task, self._wake = self._task, None, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        clock = time.perf_counter
        yield_cpu = os.sched_yield
        while True:
            await wake.wait()
            wake.clear()
            while clock() < self._until:
                # Give the CPU to any other runnable OS process (the peer we
                # wait for may be one of them on a busy machine).
                yield_cpu()
                await asyncio.sleep(0)
