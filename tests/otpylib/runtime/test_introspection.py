"""process_info, processes, is_alive and statistics: snapshots that add up to zero."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import (
    CRASH,
    DEADLINE,
    NEVER_SPAWNED,
    REMOTE_PID,
    exit_reason,
    idle,
    next_message,
    run_in,
    spawn_collector,
    wait_until,
    wait_waiting,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import EXIT, SHUTDOWN
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid, ProcessInfo, RuntimeStatistics


def info_of(runtime: AsyncIOBackend, pid: Pid) -> ProcessInfo:
    info = runtime.process_info(pid)
    assert info is not None, f"{pid!r} is not alive"
    return info


async def all_released(runtime: AsyncIOBackend) -> None:
    """Wait until no link, monitor or name is left (processes may remain)."""

    def released() -> bool:
        s = runtime.statistics()
        return (s.active_links, s.active_monitors) == (0, 0)

    await wait_until(released, "every link and monitor is released")


# ----------------------------------------------------------- process_info


async def test_process_info_of_a_fresh_process(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    info = info_of(runtime, pid)
    assert info.pid == pid
    assert info.state == "running"
    assert info.name is None
    assert info.trap_exits is False
    assert info.message_queue_len == 0
    assert info.links == ()
    assert info.monitors == ()
    assert info.monitored_by == ()
    assert info.function == "runtime_support.idle"


async def test_state_is_waiting_while_blocked_in_receive(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    await wait_waiting(runtime, pid)
    assert info_of(runtime, pid).state == "waiting"


async def test_state_is_running_while_busy_outside_receive(runtime: AsyncIOBackend) -> None:
    async def body() -> str:
        await asyncio.sleep(0)  # resumed by the loop, not in receive: running
        return info_of(runtime, process.self()).state

    assert await run_in(runtime, body) == "running"

    release = asyncio.Event()
    started = asyncio.Event()

    async def sleeper() -> None:
        started.set()
        await release.wait()  # blocked, but not in receive
        await process.receive()

    pid = await runtime.spawn(sleeper)
    # A process that has not run yet reads "running" too: wait until it has.
    await asyncio.wait_for(started.wait(), DEADLINE)
    assert info_of(runtime, pid).state == "running"
    # The same process does read "waiting" once it is in receive.
    release.set()
    await wait_waiting(runtime, pid)
    assert info_of(runtime, pid).state == "waiting"


async def test_state_is_exiting_while_a_signalled_process_cleans_up(
    runtime: AsyncIOBackend,
) -> None:
    release = asyncio.Event()
    cleaning = asyncio.Event()

    async def body() -> None:
        try:
            await process.receive()
        finally:
            cleaning.set()
            await release.wait()

    pid = await runtime.spawn(body)
    await wait_waiting(runtime, pid)
    await runtime.exit(pid, SHUTDOWN)
    await asyncio.wait_for(cleaning.wait(), DEADLINE)
    assert info_of(runtime, pid).state == "exiting"
    assert pid in runtime.processes()
    release.set()


async def test_waiting_goes_back_to_running_when_a_message_arrives(
    runtime: AsyncIOBackend,
) -> None:
    release = asyncio.Event()

    async def body() -> None:
        await process.receive()
        await release.wait()

    pid = await runtime.spawn(body)
    await wait_waiting(runtime, pid)
    await runtime.send(pid, "wake up")
    await wait_until(lambda: info_of(runtime, pid).state == "running", "it runs again")
    release.set()


async def test_process_info_shows_name_and_trap_exits(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, name="named", trap_exits=True)
    info = info_of(runtime, pid)
    assert info.name == "named"
    assert info.trap_exits is True


async def test_process_info_is_a_snapshot(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    before = info_of(runtime, pid)
    await runtime.register("later", pid)
    await runtime.send(pid, "m")
    assert before.name is None
    assert before.message_queue_len == 0
    after = info_of(runtime, pid)
    assert after.name == "later"
    assert after.message_queue_len == 1


async def test_process_info_lists_links_monitors_and_monitored_by(
    runtime: AsyncIOBackend,
) -> None:
    target = await runtime.spawn(idle)
    linked = await runtime.spawn(idle)
    seen: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

    async def hub() -> None:
        await process.link(linked)
        await process.monitor(target)
        await process.monitor(target)
        seen.set_result(process.self())
        await process.receive()

    await runtime.spawn(hub)
    hub_pid = await asyncio.wait_for(seen, DEADLINE)
    info = info_of(runtime, hub_pid)
    assert info.links == (linked,)
    assert info.monitors == (target, target)
    assert info.monitored_by == ()
    assert info_of(runtime, target).monitored_by == (hub_pid, hub_pid)
    assert info_of(runtime, linked).links == (hub_pid,)


@pytest.mark.parametrize("pid", [NEVER_SPAWNED, REMOTE_PID], ids=["local", "other node"])
async def test_process_info_of_a_dead_pid_is_none(runtime: AsyncIOBackend, pid: Pid) -> None:
    assert runtime.process_info(pid) is None


async def test_process_info_of_a_process_that_ended_is_none(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    down = await watch(runtime, pid)
    await runtime.exit(pid, "kill")
    await exit_reason(down)
    assert runtime.process_info(pid) is None


# ------------------------------------------------- processes / is_alive


async def test_processes_lists_the_live_processes_only(runtime: AsyncIOBackend) -> None:
    assert runtime.processes() == []
    a = await runtime.spawn(idle)
    b = await runtime.spawn(idle)
    assert sorted(runtime.processes(), key=lambda p: p.id) == [a, b]
    await wait_waiting(runtime, a)
    await runtime.exit(a, "kill")
    await wait_until(lambda: runtime.processes() == [b], "only b is left")


async def test_processes_returns_a_new_list(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    listed = runtime.processes()
    listed.clear()
    assert runtime.processes() == [pid]


async def test_is_alive(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    assert runtime.is_alive(pid) is True
    assert runtime.is_alive(NEVER_SPAWNED) is False
    assert runtime.is_alive(REMOTE_PID) is False
    assert runtime.is_alive(runtime.runtime_pid) is False


# ------------------------------------------------------------- statistics


async def test_statistics_of_a_new_runtime(runtime: AsyncIOBackend) -> None:
    stats = runtime.statistics()
    assert type(stats) is RuntimeStatistics
    assert stats.uptime_seconds >= 0
    assert (
        stats.total_spawned,
        stats.active_processes,
        stats.messages_processed,
        stats.active_monitors,
        stats.active_links,
        stats.registered_names,
    ) == (0, 0, 0, 0, 0, 0)


async def test_statistics_before_initialize_has_zero_uptime() -> None:
    assert AsyncIOBackend().statistics().uptime_seconds == 0.0


async def test_uptime_grows(runtime: AsyncIOBackend) -> None:
    first = runtime.statistics().uptime_seconds
    await asyncio.sleep(0.01)  # the point: time passes
    assert runtime.statistics().uptime_seconds > first


async def test_total_spawned_counts_dead_processes_too(runtime: AsyncIOBackend) -> None:
    async def quick() -> None:
        return None

    for _ in range(3):
        await runtime.spawn(quick)
    await wait_until(lambda: runtime.statistics().active_processes == 0, "all have ended")
    assert runtime.statistics().total_spawned == 3


async def test_messages_processed_counts_messages_exits_and_downs(
    runtime: AsyncIOBackend,
) -> None:
    collector, queue = await spawn_collector(runtime)
    await runtime.send(collector, "one")  # +1
    await runtime.exit(collector, "custom")  # +1: an EXIT message (it traps)
    target = await runtime.spawn(idle)

    async def body() -> None:
        await process.monitor(target)
        await process.exit(target, "kill")
        await process.receive(timeout=DEADLINE)  # +1: the DOWN

    await run_in(runtime, body)
    assert await next_message(queue) == "one"
    assert await next_message(queue) == (EXIT, runtime.runtime_pid, "custom")
    assert runtime.statistics().messages_processed == 3


# Bug: monitor() of a dead pid puts the (DOWN, ref, pid, noproc) message in
# the caller's mailbox without counting it in messages_processed, while every
# other DOWN and EXIT message is counted.
async def test_messages_processed_counts_a_noproc_down(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        await process.monitor(NEVER_SPAWNED)
        await process.receive(timeout=0)

    await run_in(runtime, body)
    assert runtime.statistics().messages_processed == 1


async def test_statistics_is_a_snapshot(runtime: AsyncIOBackend) -> None:
    before = runtime.statistics()
    await runtime.spawn(idle)
    assert before.active_processes == 0
    assert runtime.statistics().active_processes == 1


async def test_link_count_goes_up_and_back_to_zero(runtime: AsyncIOBackend) -> None:
    a = await runtime.spawn(idle)
    b = await runtime.spawn(idle)

    async def body() -> list[int]:
        counts = []
        await process.link(a)
        await process.link(b)
        counts.append(runtime.statistics().active_links)
        await process.unlink(a)
        counts.append(runtime.statistics().active_links)
        return counts

    # The body returns normally: its remaining link (to b) goes with it.
    assert await run_in(runtime, body) == [2, 1]
    await all_released(runtime)
    assert runtime.is_alive(b)


async def test_link_count_returns_to_zero_after_a_crash_chain(runtime: AsyncIOBackend) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, _ = await spawn_collector(runtime, trap_exits=False, link_to=a)
    c, _ = await spawn_collector(runtime, trap_exits=True, link_to=b)
    await spawn_collector(runtime, trap_exits=False, link_to=c)
    assert runtime.statistics().active_links == 3
    down_b = await watch(runtime, b)
    await runtime.send(a, (CRASH, RuntimeError("a failed")))
    await exit_reason(down_b)
    # c traps: it survives, and so does the process linked to it.
    await wait_until(lambda: runtime.statistics().active_links == 1, "only c's link is left")


async def test_monitor_count_goes_back_to_zero_every_way_a_monitor_ends(
    runtime: AsyncIOBackend,
) -> None:
    target = await runtime.spawn(idle)

    async def body() -> list[int]:
        counts = []
        removed = await process.monitor(target)
        await process.monitor(target)
        counts.append(runtime.statistics().active_monitors)
        await process.demonitor(removed)
        counts.append(runtime.statistics().active_monitors)
        await process.exit(target, "kill")
        await process.receive(timeout=DEADLINE)
        counts.append(runtime.statistics().active_monitors)
        # Held when the owner ends: released with it.
        await process.monitor(await process.spawn(idle))
        counts.append(runtime.statistics().active_monitors)
        return counts

    assert await run_in(runtime, body) == [2, 1, 0, 1]
    await all_released(runtime)


async def test_registered_names_count(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, name="a")
    await runtime.spawn(idle, name="b")
    assert runtime.statistics().registered_names == 2
    await runtime.unregister("b")
    assert runtime.statistics().registered_names == 1
    down = await watch(runtime, pid)
    await runtime.exit(pid, "kill")
    await exit_reason(down)
    assert runtime.statistics().registered_names == 0


async def test_counters_are_zero_after_many_processes_come_and_go(
    runtime: AsyncIOBackend,
) -> None:
    async def worker(i: int) -> Any:
        me = process.self()
        if i % 3 == 0:
            await process.register(f"w{i}")
        others = [p for p in runtime.processes() if p != me][:3]
        for other in others:
            await process.monitor(other)
        if i % 2 == 0 and others:
            await process.link(others[0])
        await asyncio.sleep(0)  # let the others run in between
        if i % 5 == 0:
            raise RuntimeError(f"worker {i} failed")
        return None

    for i in range(60):
        await runtime.spawn(worker, args=[i], trap_exits=i % 4 == 0)
    await wait_until(lambda: runtime.statistics().active_processes == 0, "all have ended")
    stats = runtime.statistics()
    assert (stats.active_links, stats.active_monitors, stats.registered_names) == (0, 0, 0)
    assert runtime.registered() == []
    assert stats.total_spawned == 60
