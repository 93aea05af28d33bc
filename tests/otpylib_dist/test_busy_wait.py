"""BusyWait: after a poke the loop polls (burns CPU) for its window, then sleeps."""

from __future__ import annotations

import asyncio
import time

import pytest

from otpylib_dist.busy_wait import BusyWait


async def _cpu_seconds_while_waiting(wall: float) -> float:
    start = time.process_time()
    await asyncio.sleep(wall)  # the point: CPU used over this much wall time
    return time.process_time() - start


async def test_the_loop_polls_only_after_a_poke_and_only_for_the_window() -> None:
    busy = BusyWait(0.3)
    busy.start()
    try:
        idle = await _cpu_seconds_while_waiting(0.3)
        busy.poke()
        spinning = await _cpu_seconds_while_waiting(0.3)
        await asyncio.sleep(0.05)  # the point: measure once the 0.3 s window is surely over
        after = await _cpu_seconds_while_waiting(0.3)
    finally:
        await busy.stop()
    assert spinning > 0.05, f"no CPU used while spinning ({spinning:.3f} s)"
    assert idle < spinning / 3 and after < spinning / 3, (idle, spinning, after)


async def test_stop_ends_the_task_and_pokes_after_it_do_nothing() -> None:
    busy = BusyWait(0.3)
    busy.start()
    task = busy._task
    await busy.stop()
    assert task is not None and task.done()
    busy.poke()
    assert await _cpu_seconds_while_waiting(0.2) < 0.05


async def test_window_zero_never_starts_a_task() -> None:
    busy = BusyWait(0.0)
    busy.start()
    busy.poke()
    assert busy._task is None
    await busy.stop()


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="busy_wait"):
        BusyWait(-1.0)


class FakeClocks:
    """A wall clock that advances 1 ms per reading, and a CPU clock at a chosen share of it."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.wall = 0.0
        self.cpu = 0.0

    def wall_clock(self) -> float:
        self.wall += 0.001
        self.cpu += 0.001 * self.share
        return self.wall

    def cpu_clock(self) -> float:
        return self.cpu


async def _one_session(busy: BusyWait) -> None:
    before = busy.sessions
    busy.poke()
    for _ in range(10_000):  # let the spin task run its session to the end
        if busy.sessions > before:
            return
        await asyncio.sleep(0)
    raise AssertionError("the spin session did not end")


async def test_a_starved_spinner_goes_quiet_and_backs_off_doubling() -> None:
    clocks = FakeClocks(share=0.1)  # we get a tenth of a CPU: hogs everywhere
    busy = BusyWait(0.02, adaptive=True, wall_clock=clocks.wall_clock, cpu_clock=clocks.cpu_clock)
    busy.start()
    try:
        await _one_session(busy)
        assert busy.starved_sessions == 1
        assert not busy.spinning_allowed  # quiet: a poke now does not spin
        first_quiet = busy._quiet
        clocks.wall = busy._quiet_until  # the quiet period ends
        await _one_session(busy)
        assert busy.starved_sessions == 2
        assert busy._quiet == 2 * first_quiet
    finally:
        await busy.stop()


async def test_a_well_fed_spinner_keeps_spinning() -> None:
    clocks = FakeClocks(share=0.95)
    busy = BusyWait(0.02, adaptive=True, wall_clock=clocks.wall_clock, cpu_clock=clocks.cpu_clock)
    busy.start()
    try:
        for _ in range(3):
            await _one_session(busy)
        assert busy.starved_sessions == 0
        assert busy.spinning_allowed
    finally:
        await busy.stop()


async def test_a_fixed_window_never_backs_off() -> None:
    clocks = FakeClocks(share=0.1)
    busy = BusyWait(0.02, wall_clock=clocks.wall_clock, cpu_clock=clocks.cpu_clock)
    busy.start()
    try:
        await _one_session(busy)
        assert busy.starved_sessions == 0 and busy.spinning_allowed
    finally:
        await busy.stop()


def test_nodes_spin_adaptively_by_default_and_as_asked_otherwise() -> None:
    from otpylib_dist import Node
    from otpylib_dist.busy_wait import DEFAULT_BUSY_WAIT

    default = Node("a@127.0.0.1", cookie="c")
    assert (default.busy_wait.window, default.busy_wait.adaptive) == (DEFAULT_BUSY_WAIT, True)
    fixed = Node("b@127.0.0.1", cookie="c", busy_wait=0.001)
    assert (fixed.busy_wait.window, fixed.busy_wait.adaptive) == (0.001, False)
    assert Node("c@127.0.0.1", cookie="c", busy_wait=0).busy_wait.window == 0
