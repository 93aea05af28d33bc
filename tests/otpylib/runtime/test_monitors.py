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


# ------------------------------------------- request / answer: a call's mechanics

TAG = "$test_request"


async def answering(runtime: AsyncIOBackend) -> None:
    """Take one request, answer it with its payload, then wait to be told to end."""
    tag, caller, reply_to, ref, payload = await process.receive()
    assert tag == TAG
    await runtime.answer((caller, reply_to, ref), payload)
    await process.receive()


async def handing_over(runtime: AsyncIOBackend, helper: Pid) -> None:
    """Take one request and hand it to ``helper`` to answer; then wait."""
    _, caller, reply_to, ref, payload = await process.receive()
    await process.send(helper, ((caller, reply_to, ref), payload))
    await process.receive()


async def helping(runtime: AsyncIOBackend) -> None:
    from_, payload = await process.receive()
    await runtime.answer(from_, payload)


async def _queued() -> list[Any]:
    """The caller's queued messages, taken without waiting."""
    out = []
    while True:
        try:
            out.append(await process.receive(timeout=0))
        except TimeoutError:
            return out


async def test_an_answer_from_the_monitored_process_ends_the_monitor_on_both_sides(
    runtime: AsyncIOBackend,
) -> None:
    server = await runtime.spawn(answering, (runtime,))

    async def body() -> Any:
        await process.send(process.self(), "before")
        got = await runtime.request(server, TAG, 42, None)
        # The answer ended the monitor: nothing of it is left on either side,
        # and the server ending now sends no DOWN.
        mine = process.process_info(process.self()).monitors  # type: ignore[union-attr]
        theirs = runtime.process_info(server).monitored_by  # type: ignore[union-attr]
        await process.send(server, "end")
        await wait_gone(runtime, server)
        return got, mine, theirs, await _queued()

    assert await run_in(runtime, body) == ((True, 42), (), (), ["before"])
    assert runtime.statistics().active_monitors == 0


async def test_an_answer_from_another_process_ends_the_monitor_by_demonitor(
    runtime: AsyncIOBackend,
) -> None:
    helper = await runtime.spawn(helping, (runtime,))
    server = await runtime.spawn(handing_over, (runtime, helper))

    async def body() -> Any:
        got = await runtime.request(server, TAG, "via helper", 5.0)
        mine = process.process_info(process.self()).monitors  # type: ignore[union-attr]
        theirs = runtime.process_info(server).monitored_by  # type: ignore[union-attr]
        return got, mine, theirs, await _queued()

    assert await run_in(runtime, body) == ((True, "via helper"), (), (), [])
    assert runtime.statistics().active_monitors == 0


async def test_a_request_to_a_dead_pid_returns_noproc_and_leaves_nothing(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> Any:
        got = await runtime.request(NEVER_SPAWNED, TAG, 1, None)
        return got, await _queued()

    assert await run_in(runtime, body) == ((False, NOPROC), [])
    assert runtime.statistics().active_monitors == 0


async def test_a_timed_out_request_leaves_nothing_and_its_late_answer_is_dropped(
    runtime: AsyncIOBackend,
) -> None:
    async def late(owner_done: asyncio.Future[None]) -> None:
        _, caller, reply_to, ref, payload = await process.receive()
        await owner_done
        await runtime.answer((caller, reply_to, ref), payload)  # to an inactive alias
        await process.send(caller, "after the late answer")
        await process.receive()

    timed_out: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    server = await runtime.spawn(late, (timed_out,))

    async def body() -> Any:
        with pytest.raises(TimeoutError):
            await runtime.request(server, TAG, "late", 0.05)
        timed_out.set_result(None)
        marker = await process.receive(timeout=DEADLINE)
        return marker, await _queued()

    assert await run_in(runtime, body) == ("after the late answer", [])
    assert runtime.statistics().active_monitors == 0


async def test_a_request_fails_with_the_reason_of_a_target_that_crashes(
    runtime: AsyncIOBackend,
) -> None:
    async def crashing() -> None:
        await process.receive()
        raise ValueError("no answer")

    server = await runtime.spawn(crashing)

    async def body() -> Any:
        answered, reason = await runtime.request(server, TAG, 0, None)
        return answered, reason, await _queued()

    answered, reason, left = await run_in(runtime, body)
    assert answered is False and isinstance(reason, ValueError) and left == []


async def test_a_short_timeout_fires_on_time_behind_a_longer_pending_one(
    runtime: AsyncIOBackend,
) -> None:
    # Requests share one timer armed for the earliest deadline: a later,
    # shorter timeout must re-arm it, and the long one must still wait.
    silent = await runtime.spawn(idle)
    loop = asyncio.get_running_loop()

    async def long_wait() -> Any:
        try:
            return await runtime.request(silent, TAG, "long", 30.0)
        except asyncio.CancelledError:
            return "cancelled"

    async def short_wait() -> float:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await runtime.request(silent, TAG, "short", 0.1)
        return loop.time() - started

    long_pid = await runtime.spawn(long_wait)
    waited = await run_in(runtime, short_wait)
    assert waited < DEADLINE  # woken by its own deadline, not the 30 s one
    assert runtime.is_alive(long_pid)  # the long request is still waiting
