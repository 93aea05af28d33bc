"""monitor / demonitor: one-way, stackable, (DOWN, ref, pid, reason) exactly once."""

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
    is_down,
    not_in_process,
    run_in,
    spawn_collector,
    wait_gone,
    wait_until,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import DOWN, KILLED, NOCONNECTION, NOPROC, NORMAL
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE, Pid, Ref
from otpylib.runtime.errors import NotInProcessError


async def test_down_arrives_when_the_target_returns(runtime: AsyncIOBackend) -> None:
    release = asyncio.Event()

    async def target() -> None:
        await release.wait()

    pid = await runtime.spawn(target)

    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor(pid)
        release.set()
        return ref, await process.receive(timeout=DEADLINE)

    ref, msg = await run_in(runtime, body)
    assert type(ref) is Ref
    assert msg == (DOWN, ref, pid, NORMAL)
    assert msg[0] is DOWN
    assert msg[3] is NORMAL


async def test_down_carries_the_crash_exception(runtime: AsyncIOBackend) -> None:
    pid, _ = await spawn_collector(runtime, trap_exits=False)
    down = await watch(runtime, pid)
    error = OSError("disk full")
    await runtime.send(pid, (CRASH, error))
    assert await exit_reason(down) is error


async def test_down_for_a_killed_target_says_killed(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, trap_exits=True)
    down = await watch(runtime, pid)
    await runtime.exit(pid, "kill")
    assert await exit_reason(down) is KILLED


@pytest.mark.parametrize("dead", [NEVER_SPAWNED, REMOTE_PID], ids=["local", "other node"])
async def test_monitor_of_a_dead_pid_gives_noproc_at_once(
    runtime: AsyncIOBackend, dead: Pid
) -> None:
    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor(dead)
        return ref, await process.receive(timeout=0)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, dead, NOPROC)
    assert runtime.statistics().active_monitors == 0


async def test_monitor_of_a_process_that_has_ended_gives_noproc(
    runtime: AsyncIOBackend,
) -> None:
    async def quick() -> None:
        return None

    gone = await runtime.spawn(quick)
    await wait_gone(runtime, gone)

    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor(gone)
        return ref, await process.receive(timeout=0)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, gone, NOPROC)


async def test_monitor_by_registered_name_reports_the_pid(runtime: AsyncIOBackend) -> None:
    pid, _ = await spawn_collector(runtime, trap_exits=False, name="svc")

    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor("svc")
        info = process.process_info(process.self())
        assert info is not None
        assert info.monitors == (pid,)
        await process.send(pid, (CRASH, NORMAL))
        return ref, await process.receive(timeout=DEADLINE)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, pid, NORMAL)


async def test_monitor_by_name_and_this_node(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, name="svc")

    async def body() -> Ref:
        ref = await process.monitor(("svc", LOCAL_NODE))
        await process.exit(pid, "kill")
        msg = await process.receive(timeout=DEADLINE)
        assert msg == (DOWN, ref, pid, KILLED)
        return ref

    await run_in(runtime, body)


async def test_monitor_of_an_unregistered_name_gives_noproc_naming_it(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor("nobody")
        return ref, await process.receive(timeout=0)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, "nobody", NOPROC)


async def test_monitor_of_a_name_on_another_node_needs_distribution(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor(("svc", "b@host"))
        return ref, await process.receive(timeout=0)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, ("svc", "b@host"), NOCONNECTION)


async def test_monitor_needs_a_calling_process(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    with pytest.raises(
        NotInProcessError,
        match=not_in_process("monitor"),
    ):
        await runtime.monitor(pid)
    with pytest.raises(
        NotInProcessError,
        match=not_in_process("demonitor"),
    ):
        await runtime.demonitor(runtime.make_ref())


async def test_monitoring_is_one_way(runtime: AsyncIOBackend) -> None:
    target, _ = await spawn_collector(runtime, trap_exits=False)

    async def body() -> Any:
        ref = await process.monitor(target)
        await process.send(target, (CRASH, RuntimeError("target failed")))
        msg = await process.receive(timeout=DEADLINE)
        assert is_down(msg, ref)
        return msg[3]

    # The watcher does not trap exits and is not killed by the crash it saw.
    reason = await run_in(runtime, body)
    assert type(reason) is RuntimeError


async def test_a_dying_monitor_owner_does_not_affect_the_target(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> None:
        await process.monitor(target)
        raise RuntimeError("owner failed")

    with pytest.raises(RuntimeError, match=r"^owner failed$"):
        await run_in(runtime, body)
    assert runtime.is_alive(target)
    await wait_until(lambda: runtime.statistics().active_monitors == 0, "the monitor is gone")
    info = runtime.process_info(target)
    assert info is not None
    assert info.monitored_by == ()


async def test_several_monitors_on_one_target_are_independent(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> None:
        first = await process.monitor(target)
        second = await process.monitor(target)
        third = await process.monitor(target)
        assert len({first, second, third}) == 3
        assert runtime.statistics().active_monitors == 3
        assert await process.demonitor(second) is True
        await process.exit(target, "kill")
        got = [await process.receive(timeout=DEADLINE) for _ in range(2)]
        assert sorted(got, key=lambda m: m[1].id) == [
            (DOWN, first, target, KILLED),
            (DOWN, third, target, KILLED),
        ]
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0.02)

    await run_in(runtime, body)
    assert runtime.statistics().active_monitors == 0


async def test_monitors_from_different_owners_each_get_a_down(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)
    downs = [await watch(runtime, target) for _ in range(3)]
    await runtime.exit(target, "shutdown")
    assert [str(await exit_reason(d)) for d in downs] == ["shutdown"] * 3


async def test_demonitor_stops_the_down(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> None:
        ref = await process.monitor(target)
        sentinel = await process.monitor(target)
        assert await process.demonitor(ref) is True
        assert await process.demonitor(ref) is False
        await process.exit(target, "kill")
        msg = await process.receive(timeout=DEADLINE)
        assert is_down(msg, sentinel)
        with pytest.raises(TimeoutError):
            await process.receive(match=lambda m: is_down(m, ref), timeout=0)

    await run_in(runtime, body)
    assert runtime.statistics().active_monitors == 0


async def test_demonitor_removes_both_ends_of_the_monitor(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> None:
        me = process.self()
        ref = await process.monitor(target)
        assert runtime.process_info(target).monitored_by == (me,)  # type: ignore[union-attr]
        await process.demonitor(ref)
        assert runtime.process_info(target).monitored_by == ()  # type: ignore[union-attr]
        assert process.process_info(me).monitors == ()  # type: ignore[union-attr]

    await run_in(runtime, body)


async def test_demonitor_of_an_unknown_ref_is_false(runtime: AsyncIOBackend) -> None:
    async def body() -> bool:
        return await process.demonitor(process.make_ref())

    assert await run_in(runtime, body) is False


async def wait_queued(count: int) -> None:
    """Wait until the calling process has ``count`` messages queued."""

    def queued() -> bool:
        info = process.process_info(process.self())
        return info is not None and info.message_queue_len == count

    await wait_until(queued, f"{count} messages are queued")


async def test_demonitor_with_flush_removes_a_queued_down(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> list[Any]:
        ref = await process.monitor(target)
        await process.send(process.self(), "before")
        await process.exit(target, "kill")
        await wait_queued(1 + 1)
        await process.send(process.self(), "after")
        # The DOWN is queued between the two; the monitor has already fired.
        assert await process.demonitor(ref, flush=True) is False
        return [await process.receive(timeout=0) for _ in range(2)]

    assert await run_in(runtime, body) == ["before", "after"]


async def test_demonitor_without_flush_leaves_a_queued_down(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> tuple[Ref, Any]:
        ref = await process.monitor(target)
        await process.exit(target, "kill")
        await wait_queued(1)
        assert await process.demonitor(ref) is False
        return ref, await process.receive(timeout=0)

    ref, msg = await run_in(runtime, body)
    assert msg == (DOWN, ref, target, KILLED)


async def test_demonitor_with_flush_removes_a_noproc_down(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        ref = await process.monitor(NEVER_SPAWNED)
        assert await process.demonitor(ref, flush=True) is False
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0)

    await run_in(runtime, body)


async def test_demonitor_with_flush_keeps_other_monitors_downs(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> None:
        keep = await process.monitor(target)
        drop = await process.monitor(target)
        await process.exit(target, "kill")
        await wait_queued(2)
        await process.demonitor(drop, flush=True)
        msg = await process.receive(timeout=0)
        assert is_down(msg, keep)
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0)

    await run_in(runtime, body)


async def test_process_info_shows_both_ends_of_a_monitor(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)
    seen: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

    async def owner() -> None:
        await process.monitor(target)
        seen.set_result(process.self())
        await process.receive()

    await runtime.spawn(owner)
    owner_pid = await asyncio.wait_for(seen, DEADLINE)
    assert runtime.process_info(owner_pid).monitors == (target,)  # type: ignore[union-attr]
    assert runtime.process_info(target).monitored_by == (owner_pid,)  # type: ignore[union-attr]
    assert runtime.process_info(target).monitors == ()  # type: ignore[union-attr]
    assert runtime.statistics().active_monitors == 1


async def test_a_monitor_on_a_process_killed_before_it_ran_fires(
    runtime: AsyncIOBackend,
) -> None:
    ran = asyncio.Event()

    async def never() -> None:
        ran.set()

    async def body() -> Any:
        pid, ref = await process.spawn_monitor(never)
        await process.exit(pid, "kill")
        msg = await process.receive(timeout=DEADLINE)
        assert msg == (DOWN, ref, pid, KILLED)
        return pid

    await run_in(runtime, body)
    assert not ran.is_set()


# ------------------------------- a call's monitor: release_monitor, forget_monitor


async def test_a_released_monitor_sends_no_down_and_the_owner_forgets_it(
    runtime: AsyncIOBackend,
) -> None:
    async def target() -> None:
        owner, ref = await process.receive()
        assert runtime.watched_by(owner, ref)
        runtime.release_monitor(owner, ref)
        assert not runtime.watched_by(owner, ref)
        await process.send(owner, "released")
        # Ending now sends no DOWN for the released monitor.

    async def body() -> list[Any]:
        pid = await runtime.spawn(target)
        ref = await process.monitor(pid)
        await process.send(pid, (process.self(), ref))
        assert await process.receive(timeout=DEADLINE) == "released"
        await wait_gone(runtime, pid)
        assert runtime.forget_monitor(ref) is True
        assert runtime.forget_monitor(ref) is False
        return [m async for m in _queued()]

    assert await run_in(runtime, body) == []
    assert runtime.statistics().active_monitors == 0


async def _queued() -> Any:
    """The caller's queued messages, taken without waiting."""
    while True:
        try:
            yield await process.receive(timeout=0)
        except TimeoutError:
            return


async def test_release_monitor_leaves_a_monitor_of_another_owner(
    runtime: AsyncIOBackend,
) -> None:
    async def target() -> None:
        owner, ref = await process.receive()
        stranger = Pid(runtime.node_name, 999_999, 1)
        runtime.release_monitor(stranger, ref)  # not the owner's: nothing happens
        await process.send(owner, runtime.watched_by(owner, ref))
        await process.receive()

    async def body() -> Any:
        pid = await runtime.spawn(target)
        ref = await process.monitor(pid)
        await process.send(pid, (process.self(), ref))
        still = await process.receive(timeout=DEADLINE)
        return still, runtime.process_info(pid).monitored_by  # type: ignore[union-attr]

    still, monitored_by = await run_in(runtime, body)
    assert still is True and len(monitored_by) == 1


async def test_forget_monitor_flushes_a_down_that_already_came(runtime: AsyncIOBackend) -> None:
    target = await runtime.spawn(idle)

    async def body() -> list[Any]:
        ref = await process.monitor(target)
        await process.exit(target, "kill")
        await wait_queued(1)
        # The monitor fired before the owner got to forget it: its DOWN goes too.
        assert runtime.forget_monitor(ref) is False
        return [m async for m in _queued()]

    assert await run_in(runtime, body) == []
