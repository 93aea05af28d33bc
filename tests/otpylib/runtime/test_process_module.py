"""otpylib.process: the process API, bound to the calling process through a context variable."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from runtime_support import (
    DEADLINE,
    NEVER_SPAWNED,
    RuntimeFactory,
    idle,
    is_down,
    next_message,
    not_in_process,
    run_in,
    spawn_collector,
)

from otpylib import process
from otpylib.runtime.atoms import EXIT, KILLED, NORMAL, TRAP_EXIT
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import NotInProcessError, OtpError, ProcessExit

OUTSIDE = (
    r"^otpylib\.process functions work only inside a process; from main, "
    r"call the runtime object directly \(e\.g\. 'await runtime\.send\(pid, msg\)'\)$"
)

#: Every function of otpylib.process that needs a calling process, called with
#: plausible arguments.
CALLS: dict[str, Callable[[], Any]] = {
    "runtime": lambda: process.runtime(),
    "self": lambda: process.self(),
    "send": lambda: process.send(NEVER_SPAWNED, "x"),
    "receive": lambda: process.receive(timeout=0),
    "receive_batch": lambda: process.receive_batch(timeout=0),
    "spawn": lambda: process.spawn(idle),
    "spawn_link": lambda: process.spawn_link(idle),
    "spawn_monitor": lambda: process.spawn_monitor(idle),
    "spawn_opt": lambda: process.spawn_opt(idle, link=True, monitor=True),
    "link": lambda: process.link(NEVER_SPAWNED),
    "unlink": lambda: process.unlink(NEVER_SPAWNED),
    "monitor": lambda: process.monitor(NEVER_SPAWNED),
    "demonitor": lambda: process.demonitor(Ref("nonode@nohost", 1, 0)),
    "exit": lambda: process.exit(NEVER_SPAWNED, "kill"),
    "flag": lambda: process.flag(TRAP_EXIT, True),
    "register": lambda: process.register("name"),
    "unregister": lambda: process.unregister("name"),
    "whereis": lambda: process.whereis("name"),
    "is_alive": lambda: process.is_alive(NEVER_SPAWNED),
    "process_info": lambda: process.process_info(NEVER_SPAWNED),
    "make_ref": lambda: process.make_ref(),
    "alias": lambda: process.alias(),
    "unalias": lambda: process.unalias(NEVER_SPAWNED),
    "set_label": lambda: process.set_label("x"),
}


def test_the_table_covers_every_function_of_the_module() -> None:
    assert set(CALLS) | {"in_process", "exit_self"} == set(process.__all__)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_outside_a_process_every_function_raises_not_in_process(
    runtime: AsyncIOBackend, name: str
) -> None:
    with pytest.raises(NotInProcessError, match=OUTSIDE) as info:
        result = CALLS[name]()
        if inspect.isawaitable(result):
            await result
    assert isinstance(info.value, OtpError)
    assert isinstance(info.value, RuntimeError)
    assert runtime.processes() == []


def test_outside_a_process_in_process_is_false() -> None:
    assert process.in_process() is False


# Bug: exit_self() raises ProcessExit without checking for a calling process,
# so from main it throws an exit reason around instead of the clear error
# every other function of the module gives.
def test_exit_self_outside_a_process_raises_not_in_process() -> None:
    with pytest.raises(NotInProcessError, match=OUTSIDE):
        process.exit_self(NORMAL)


async def test_inside_a_process_the_module_is_bound_to_it(runtime: AsyncIOBackend) -> None:
    async def body() -> tuple[bool, Any, Pid, Pid]:
        return process.in_process(), process.runtime(), process.self(), runtime.self()

    inside, rt, me, me_again = await run_in(runtime, body)
    assert inside is True
    assert rt is runtime
    assert me == me_again


async def test_code_awaited_deep_inside_a_process_sees_that_process(
    runtime: AsyncIOBackend,
) -> None:
    async def level3() -> Pid:
        return process.self()

    async def level2() -> Pid:
        return await level3()

    async def body() -> tuple[Pid, Pid]:
        return process.self(), await level2()

    outer, inner = await run_in(runtime, body)
    assert outer == inner


async def test_a_task_started_inside_a_process_sees_that_process(
    runtime: AsyncIOBackend,
) -> None:
    async def helper() -> Pid:
        return process.self()

    async def body() -> tuple[Pid, Pid]:
        return process.self(), await asyncio.create_task(helper())

    outer, from_task = await run_in(runtime, body)
    assert outer == from_task


async def test_a_spawned_child_sees_itself_not_its_parent(runtime: AsyncIOBackend) -> None:
    async def body() -> tuple[Pid, Pid, Pid]:
        seen: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

        async def child() -> None:
            seen.set_result(process.self())

        child_pid = await process.spawn(child)
        return process.self(), child_pid, await asyncio.wait_for(seen, DEADLINE)

    parent, child_pid, child_self = await run_in(runtime, body)
    assert child_self == child_pid
    assert child_self != parent


async def test_the_module_functions_act_on_the_callers_runtime(runtime: AsyncIOBackend) -> None:
    target, queue = await spawn_collector(runtime)

    async def body() -> None:
        me = process.self()
        # send / receive
        await process.send(me, "hi")
        assert await process.receive(timeout=0) == "hi"
        await process.send(me, 1)
        await process.send(me, 2)
        assert await process.receive(match=lambda m: m == 2, timeout=0) == 2
        assert await process.receive(timeout=0) == 1
        # register / whereis / unregister
        await process.register("mod_test")
        assert process.whereis("mod_test") == me
        await process.unregister("mod_test")
        assert process.whereis("mod_test") is None
        await process.register("target", target)
        assert runtime.whereis("target") == target
        # link / unlink / is_alive / process_info
        await process.link(target)
        assert process.process_info(me).links == (target,)  # type: ignore[union-attr]
        await process.unlink(target)
        assert process.process_info(me).links == ()  # type: ignore[union-attr]
        assert process.is_alive(target) is True
        assert process.is_alive(NEVER_SPAWNED) is False
        # monitor / demonitor
        ref = await process.monitor(target)
        assert await process.demonitor(ref) is True
        # spawn_link / spawn_monitor with options
        linked = await process.spawn_link(idle, name="child", trap_exits=True)
        assert runtime.process_info(linked).name == "child"  # type: ignore[union-attr]
        assert runtime.process_info(linked).trap_exits is True  # type: ignore[union-attr]
        pid, mref = await process.spawn_monitor(idle, args=())
        # exit and the DOWN it causes
        await process.exit(pid, "kill")
        down = await process.receive(match=lambda m: is_down(m, mref), timeout=DEADLINE)
        assert down[3] is KILLED
        await process.exit(target, "custom")
        # flag / make_ref
        assert process.flag("trap_exit", True) is False
        assert process.flag(TRAP_EXIT, False) is True
        assert process.make_ref() != process.make_ref()
        assert type(process.make_ref()) is Ref

    await run_in(runtime, body)
    msg = await next_message(queue)
    assert msg[0] is EXIT
    assert msg[2] == "custom"


async def test_exit_self_ends_the_process_with_its_reason(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        process.exit_self(("done", 42))

    with pytest.raises(ProcessExit) as info:
        await run_in(runtime, body)
    assert info.value.reason == ("done", 42)
    assert str(info.value) == "exit: ('done', 42)"


# --------------------------------------------- two runtimes in one event loop


async def test_two_runtimes_in_one_loop_each_see_their_own_processes(
    runtime: AsyncIOBackend, make_runtime: RuntimeFactory
) -> None:
    other = await make_runtime()
    # Both mint pids from 1: give the name to processes with different ids.
    await runtime.spawn(idle)
    mine = await runtime.spawn(idle)
    theirs = await other.spawn(idle)
    assert mine != theirs
    await runtime.register("svc", mine)
    await other.register("svc", theirs)

    async def inside() -> tuple[Any, Pid | None, Pid]:
        child = await process.spawn(idle)
        return process.runtime(), process.whereis("svc"), child

    rt, found, child = await run_in(runtime, inside)
    assert rt is runtime
    assert found == mine
    assert child in runtime.processes()

    rt, found, child_other = await run_in(other, inside)
    assert rt is other
    assert found == theirs
    assert child_other in other.processes()

    # runtime: two idles, the body and its child (the body has returned).
    assert runtime.statistics().total_spawned == 4
    assert other.statistics().total_spawned == 3


async def test_a_process_of_one_runtime_is_not_a_process_of_another(
    runtime: AsyncIOBackend, make_runtime: RuntimeFactory
) -> None:
    other = await make_runtime()

    async def body() -> None:
        with pytest.raises(NotInProcessError, match=not_in_process("self")):
            other.self()
        with pytest.raises(NotInProcessError, match=not_in_process("receive")):
            await other.receive(timeout=0)
        with pytest.raises(NotInProcessError, match=not_in_process("link")):
            await other.link(NEVER_SPAWNED)

    await run_in(runtime, body)


async def test_a_message_sent_to_another_runtime_comes_from_its_runtime_pid(
    runtime: AsyncIOBackend, make_runtime: RuntimeFactory
) -> None:
    other = await make_runtime()
    target, queue = await spawn_collector(other)

    async def body() -> None:
        await other.exit(target, "custom")

    await run_in(runtime, body)
    assert await next_message(queue) == (EXIT, other.runtime_pid, "custom")


async def test_shutting_one_runtime_down_leaves_the_other_running(
    runtime: AsyncIOBackend, make_runtime: RuntimeFactory
) -> None:
    other = await make_runtime()
    pid = await runtime.spawn(idle)
    await other.spawn(idle)
    await other.shutdown()
    assert other.processes() == []
    assert runtime.processes() == [pid]

    async def body() -> str:
        return "still working"

    assert await run_in(runtime, body) == "still working"
