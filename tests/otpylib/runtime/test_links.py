"""link / unlink: bidirectional, idempotent, and the exit signals links carry."""

from __future__ import annotations

import asyncio
import re

import pytest
from runtime_support import (
    CRASH,
    NEVER_SPAWNED,
    REMOTE_PID,
    exit_reason,
    idle,
    next_message,
    not_in_process,
    run_in,
    spawn_collector,
    wait_gone,
    wait_waiting,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import EXIT, KILL, KILLED, NOPROC, NORMAL, SHUTDOWN, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NotInProcessError


def links_of(runtime: AsyncIOBackend, pid: Pid) -> set[Pid]:
    info = runtime.process_info(pid)
    assert info is not None, f"{pid!r} is not alive"
    return set(info.links)


async def test_link_is_bidirectional(runtime: AsyncIOBackend) -> None:
    a = await runtime.spawn(idle)
    b, _ = await spawn_collector(runtime, link_to=a)
    assert links_of(runtime, a) == {b}
    assert links_of(runtime, b) == {a}
    assert runtime.statistics().active_links == 1


async def test_link_is_idempotent(runtime: AsyncIOBackend) -> None:
    a = await runtime.spawn(idle)

    async def body() -> None:
        await process.link(a)
        await process.link(a)
        assert runtime.statistics().active_links == 1
        await process.unlink(a)
        assert runtime.statistics().active_links == 0
        assert links_of(runtime, a) == set()

    await run_in(runtime, body)


async def test_links_made_from_both_sides_are_one_link(runtime: AsyncIOBackend) -> None:
    linked_back: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def b_body() -> None:
        await process.link(await process.receive())
        linked_back.set_result(None)
        await process.receive()

    b = await runtime.spawn(b_body)

    async def a_body() -> None:
        await process.link(b)
        await process.send(b, process.self())
        await linked_back
        assert links_of(runtime, process.self()) == {b}
        assert links_of(runtime, b) == {process.self()}
        assert runtime.statistics().active_links == 1

    await run_in(runtime, a_body)


async def test_link_to_self_does_nothing(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        await process.link(process.self())
        assert links_of(runtime, process.self()) == set()

    await run_in(runtime, body)
    assert runtime.statistics().active_links == 0


@pytest.mark.parametrize("what", ["link", "unlink"])
async def test_link_and_unlink_need_a_calling_process(runtime: AsyncIOBackend, what: str) -> None:
    pid = await runtime.spawn(idle)
    with pytest.raises(
        NotInProcessError,
        match=not_in_process(what),
    ):
        await getattr(runtime, what)(pid)


def not_a_pid(what: str, value: object) -> str:
    """The whole message of the TypeError ``what(value)`` raises for a non-pid."""
    return (
        rf"^{what}\(\) takes a Pid, got {type(value).__name__}: {re.escape(repr(value))}; "
        r"for a registered name, look the pid up first with whereis\(name\)$"
    )


@pytest.mark.parametrize("what", ["link", "unlink"])
@pytest.mark.parametrize("value", ["linked_by_name", atom.ensure("linked_by_name"), None])
async def test_link_and_unlink_take_a_pid_not_a_name(
    runtime: AsyncIOBackend, what: str, value: object
) -> None:
    # As in Erlang, where link(Name) is badarg: the caller resolves the name.
    named = await runtime.spawn(idle, name="linked_by_name")

    async def body() -> None:
        with pytest.raises(TypeError, match=not_a_pid(what, value)):
            await getattr(process, what)(value)
        assert links_of(runtime, process.self()) == set()

    await run_in(runtime, body)
    assert runtime.is_alive(named)
    assert runtime.statistics().active_links == 0


async def test_a_crash_takes_a_linked_process_with_the_same_reason(
    runtime: AsyncIOBackend,
) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, _ = await spawn_collector(runtime, trap_exits=False, link_to=a)
    down_b = await watch(runtime, b)
    error = ValueError("a failed")
    await runtime.send(a, (CRASH, error))
    assert await exit_reason(down_b) is error
    assert runtime.statistics().active_links == 0


async def test_a_normal_exit_leaves_a_linked_process_running(runtime: AsyncIOBackend) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, b_queue = await spawn_collector(runtime, trap_exits=False, link_to=a)
    down_a = await watch(runtime, a)
    await runtime.send(a, (CRASH, NORMAL))
    assert await exit_reason(down_a) is NORMAL
    await runtime.send(b, "still here?")
    assert await next_message(b_queue) == "still here?"
    assert links_of(runtime, b) == set()
    assert runtime.statistics().active_links == 0


@pytest.mark.parametrize("reason", [NORMAL, SHUTDOWN, ("custom", 1)])
async def test_a_trapping_linked_process_gets_the_exit_as_a_message(
    runtime: AsyncIOBackend, reason: object
) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, b_queue = await spawn_collector(runtime, link_to=a)
    await runtime.send(a, (CRASH, reason))
    msg = await next_message(b_queue)
    assert msg == (EXIT, a, reason)
    assert msg[2] is reason
    assert runtime.is_alive(b)
    assert links_of(runtime, b) == set()


async def test_a_trapping_linked_process_gets_the_crash_exception(
    runtime: AsyncIOBackend,
) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    _b, b_queue = await spawn_collector(runtime, link_to=a)
    error = KeyError("k")
    await runtime.send(a, (CRASH, error))
    assert await next_message(b_queue) == (EXIT, a, error)


async def test_link_to_a_dead_pid_kills_a_non_trapping_caller_with_noproc(
    runtime: AsyncIOBackend,
) -> None:
    went_on = asyncio.Event()
    go = asyncio.Event()

    async def body() -> None:
        await go.wait()
        await process.link(NEVER_SPAWNED)
        went_on.set()

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    go.set()
    assert await exit_reason(down) is NOPROC
    assert not went_on.is_set()


@pytest.mark.parametrize("dead", [NEVER_SPAWNED, REMOTE_PID], ids=["local", "other node"])
async def test_link_to_a_dead_pid_is_a_noproc_message_when_trapping(
    runtime: AsyncIOBackend, dead: Pid
) -> None:
    async def body() -> object:
        await process.link(dead)
        assert links_of(runtime, process.self()) == set()
        return await process.receive(timeout=0)

    assert await run_in(runtime, body, trap_exits=True) == (EXIT, dead, NOPROC)
    assert runtime.statistics().active_links == 0


async def test_link_to_a_process_that_has_ended_is_noproc(runtime: AsyncIOBackend) -> None:
    async def quick() -> None:
        return None

    gone = await runtime.spawn(quick)
    await wait_gone(runtime, gone)

    async def body() -> object:
        await process.link(gone)
        return await process.receive(timeout=0)

    assert await run_in(runtime, body, trap_exits=True) == (EXIT, gone, NOPROC)


@pytest.mark.parametrize("trap_exits", [False, True])
async def test_after_unlink_the_others_crash_does_not_reach_us(
    runtime: AsyncIOBackend, trap_exits: bool
) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    down_a = await watch(runtime, a)

    async def body() -> None:
        await process.link(a)
        await process.unlink(a)
        assert links_of(runtime, a) == set()
        await runtime.send(a, (CRASH, RuntimeError("a failed")))
        await exit_reason(down_a)
        # Still running, and no EXIT message even when trapping.
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0.05)

    await run_in(runtime, body, trap_exits=trap_exits)
    assert runtime.statistics().active_links == 0


async def test_unlink_by_the_side_that_did_not_link_removes_the_link(
    runtime: AsyncIOBackend,
) -> None:
    unlinked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def b_body() -> None:
        await process.unlink(await process.receive())
        unlinked.set_result(None)
        await process.receive()

    b = await runtime.spawn(b_body)
    a, _ = await spawn_collector(runtime, trap_exits=False, link_to=b)
    await runtime.send(b, a)
    await unlinked
    assert links_of(runtime, a) == set()
    assert links_of(runtime, b) == set()
    assert runtime.statistics().active_links == 0
    down_a = await watch(runtime, a)
    await runtime.send(a, (CRASH, RuntimeError("a failed")))
    await exit_reason(down_a)
    assert runtime.is_alive(b)


async def test_unlink_of_an_unlinked_or_dead_pid_does_nothing(runtime: AsyncIOBackend) -> None:
    other = await runtime.spawn(idle)

    async def body() -> None:
        await process.unlink(other)
        await process.unlink(NEVER_SPAWNED)
        await process.unlink(REMOTE_PID)

    await run_in(runtime, body)
    assert runtime.is_alive(other)
    assert runtime.statistics().active_links == 0


async def test_a_crash_travels_down_a_chain_of_links(runtime: AsyncIOBackend) -> None:
    # A - B - C linked; C crashes: B and A die with C's reason.
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, _ = await spawn_collector(runtime, trap_exits=False, link_to=a)
    c, _ = await spawn_collector(runtime, trap_exits=False, link_to=b)
    downs = [await watch(runtime, pid) for pid in (a, b, c)]
    error = ValueError("c failed")
    await runtime.send(c, (CRASH, error))
    reasons = [await exit_reason(d) for d in downs]
    assert all(reason is error for reason in reasons), reasons
    assert runtime.statistics().active_links == 0


async def test_a_trapping_middle_of_a_chain_stops_the_crash(runtime: AsyncIOBackend) -> None:
    # A - B - C linked, B traps exits; C crashes: B gets the EXIT, A is untouched.
    a, a_queue = await spawn_collector(runtime, trap_exits=False)
    b, b_queue = await spawn_collector(runtime, trap_exits=True, link_to=a)
    c, _ = await spawn_collector(runtime, trap_exits=False, link_to=b)
    error = ValueError("c failed")
    await runtime.send(c, (CRASH, error))
    assert await next_message(b_queue) == (EXIT, c, error)
    assert links_of(runtime, b) == {a}
    assert links_of(runtime, a) == {b}
    await runtime.send(a, "a alive")
    assert await next_message(a_queue) == "a alive"
    assert runtime.statistics().active_links == 1


async def test_linked_processes_see_a_killed_process_as_killed(runtime: AsyncIOBackend) -> None:
    victim = await runtime.spawn(idle)
    plain, _ = await spawn_collector(runtime, trap_exits=False, link_to=victim)
    _trapping, trap_queue = await spawn_collector(runtime, link_to=victim)
    down_plain = await watch(runtime, plain)
    await runtime.exit(victim, KILL)
    assert await next_message(trap_queue) == (EXIT, victim, KILLED)
    assert await exit_reason(down_plain) is KILLED


async def test_kill_as_a_link_signal_is_an_ordinary_reason(
    runtime: AsyncIOBackend,
) -> None:
    # A process that exits with reason kill sends kill (not killed) along its
    # links, and there kill is an ordinary reason: trapped, or the reason of death.
    a, _ = await spawn_collector(runtime, trap_exits=False)
    plain, _ = await spawn_collector(runtime, trap_exits=False, link_to=a)
    _trapping, trap_queue = await spawn_collector(runtime, link_to=a)
    down_plain = await watch(runtime, plain)
    await runtime.send(a, (CRASH, KILL))
    msg = await next_message(trap_queue)
    assert msg == (EXIT, a, KILL)
    assert msg[2] is KILL
    assert await exit_reason(down_plain) is KILL


async def test_every_linked_process_is_signalled(runtime: AsyncIOBackend) -> None:
    hub, _ = await spawn_collector(runtime, trap_exits=False)
    spokes = [(await spawn_collector(runtime, trap_exits=False, link_to=hub))[0] for _ in range(5)]
    assert runtime.statistics().active_links == 5
    downs = [await watch(runtime, pid) for pid in spokes]
    await runtime.send(hub, (CRASH, SHUTDOWN))
    assert [await exit_reason(d) for d in downs] == [SHUTDOWN] * 5
    assert runtime.statistics().active_links == 0


async def test_a_process_waiting_in_receive_dies_with_its_linked_partner(
    runtime: AsyncIOBackend,
) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)

    async def waiter() -> None:
        await process.link(a)
        await process.receive()

    w = await runtime.spawn(waiter)
    await wait_waiting(runtime, w)
    down = await watch(runtime, w)
    await runtime.send(a, (CRASH, SHUTDOWN))
    assert await exit_reason(down) is SHUTDOWN
