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
