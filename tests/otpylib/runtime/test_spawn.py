"""initialize, spawn (by function and by "module:function"), spawn_link, spawn_monitor, self."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from runtime_support import (
    DEADLINE,
    exit_reason,
    idle,
    is_down,
    not_in_process,
    run_in,
    wait_waiting,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import DOWN, KILLED, NORMAL
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE, Pid, Ref
from otpylib.runtime.errors import (
    NameAlreadyRegistered,
    NotInProcessError,
    RuntimeClosedError,
)

CLOSED = (
    r"; call 'await runtime\.initialize\(\)' first and use it only until "
    r"'await runtime\.shutdown\(\)'$"
)


# ------------------------------------------------------------- initialize


async def test_spawn_before_initialize_is_refused() -> None:
    rt = AsyncIOBackend()
    with pytest.raises(RuntimeClosedError, match=r"^the runtime is not initialized" + CLOSED):
        await rt.spawn(idle)
    assert rt.processes() == []


async def test_initialize_twice_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(RuntimeError, match=r"^this runtime is already initialized$"):
        await runtime.initialize()


async def test_a_new_runtime_is_the_nonode_node_with_runtime_pid_zero(
    runtime: AsyncIOBackend,
) -> None:
    assert runtime.node_name == LOCAL_NODE
    assert runtime.runtime_pid == Pid(LOCAL_NODE, 0, 0)
    assert runtime.processes() == []


# ------------------------------------------------------------------ spawn


async def test_spawn_runs_the_function_with_args_and_kwargs(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body(a: int, b: str, *, c: list[int]) -> None:
        got.set_result((process.self(), a, b, c))

    pid = await runtime.spawn(body, args=[1, "two"], kwargs={"c": [3]})
    me, a, b, c = await asyncio.wait_for(got, DEADLINE)
    assert (me, a, b, c) == (pid, 1, "two", [3])


async def test_spawn_accepts_args_as_a_tuple(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body(*args: Any) -> None:
        got.set_result(args)

    await runtime.spawn(body, (1, 2))
    assert await asyncio.wait_for(got, DEADLINE) == (1, 2)


async def test_spawn_returns_a_local_pid_before_the_process_runs(
    runtime: AsyncIOBackend,
) -> None:
    ran = asyncio.Event()

    async def body() -> None:
        ran.set()

    pid = await runtime.spawn(body)
    assert type(pid) is Pid
    assert pid.node == LOCAL_NODE
    assert pid.creation == 0
    assert pid != runtime.runtime_pid
    assert runtime.is_alive(pid)
    assert not ran.is_set()
    await asyncio.wait_for(ran.wait(), DEADLINE)


async def test_every_spawn_gets_a_new_pid(runtime: AsyncIOBackend) -> None:
    pids = [await runtime.spawn(idle) for _ in range(50)]
    assert len(set(pids)) == 50
    assert set(runtime.processes()) == set(pids)


async def test_a_pid_rebuilt_from_its_fields_finds_the_process(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    same = Pid(pid.node, pid.id, pid.creation)
    assert runtime.is_alive(same)
    info = runtime.process_info(same)
    assert info is not None
    assert info.pid == pid


async def test_spawn_with_a_name_registers_it_before_the_process_runs(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle, name="worker")
    assert runtime.whereis("worker") == pid
    info = runtime.process_info(pid)
    assert info is not None
    assert info.name == "worker"


async def test_spawn_with_a_taken_name_is_refused_and_starts_nothing(
    runtime: AsyncIOBackend,
) -> None:
    holder = await runtime.spawn(idle, name="worker")
    before = runtime.statistics()
    with pytest.raises(
        NameAlreadyRegistered,
        match=rf"^cannot spawn with name 'worker': it is registered to {holder!r}$",
    ):
        await runtime.spawn(idle, name="worker")
    after = runtime.statistics()
    assert after.total_spawned == before.total_spawned
    assert runtime.processes() == [holder]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", r"^registered names are non-empty str, got ''$"),
        (7, r"^registered names are non-empty str, got 7$"),
    ],
)
async def test_spawn_with_an_invalid_name_is_refused(
    runtime: AsyncIOBackend, bad: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        await runtime.spawn(idle, name=bad)
    assert runtime.processes() == []


async def test_spawn_of_something_not_callable_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(TypeError, match=r"^spawn\(\) needs an async function, got int$"):
        await runtime.spawn(42)  # type: ignore[arg-type]
    assert runtime.statistics().total_spawned == 0


async def test_spawn_with_trap_exits_starts_trapping(runtime: AsyncIOBackend) -> None:
    trapping = await runtime.spawn(idle, trap_exits=True)
    plain = await runtime.spawn(idle)
    assert runtime.process_info(trapping).trap_exits is True  # type: ignore[union-attr]
    assert runtime.process_info(plain).trap_exits is False  # type: ignore[union-attr]


async def test_process_info_names_the_function_by_module_and_qualname(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle)
    info = runtime.process_info(pid)
    assert info is not None
    assert info.function == "runtime_support.idle"


async def test_spawn_on_this_nodes_name_is_a_local_spawn(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, node=LOCAL_NODE)
    assert runtime.is_alive(pid)


async def test_spawn_on_another_node_needs_distribution(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^cannot spawn on node 'b@host': this runtime is not distributed "
        r"\(use otpylib_dist\.DistributedBackend\)$",
    ):
        await runtime.spawn(idle, node="b@host")
    assert runtime.processes() == []


async def test_a_process_that_returns_ends_with_reason_normal(runtime: AsyncIOBackend) -> None:
    release = asyncio.Event()

    async def body() -> None:
        await release.wait()

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    release.set()
    assert await exit_reason(down) is NORMAL
    assert not runtime.is_alive(pid)


async def test_a_process_spawned_by_a_process_is_a_separate_process(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> tuple[Pid, Pid]:
        child_pid: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

        async def child() -> None:
            child_pid.set_result(process.self())

        spawned = await process.spawn(child)
        return spawned, await asyncio.wait_for(child_pid, DEADLINE)

    spawned, seen_by_child = await run_in(runtime, body)
    assert spawned == seen_by_child


# --------------------------------------------------------- by reference


async def test_spawn_by_module_function_reference(runtime: AsyncIOBackend) -> None:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pid = await runtime.spawn("runtime_support:report", args=[done, 1], kwargs={"k": "v"})
    info = runtime.process_info(pid)
    assert info is not None
    assert info.function == "runtime_support:report"
    assert await asyncio.wait_for(done, DEADLINE) == (pid, (1,), {"k": "v"})


async def test_spawn_by_reference_to_a_nested_attribute(runtime: AsyncIOBackend) -> None:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await runtime.spawn("runtime_support:Namespace.nested", args=[done])
    assert await asyncio.wait_for(done, DEADLINE) == "nested"


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        (
            "runtime_support.report",
            ValueError,
            r"^function reference 'runtime_support\.report' is not of the form "
            r"'package\.module:function'$",
        ),
        (
            ":report",
            ValueError,
            r"^function reference ':report' is not of the form 'package\.module:function'$",
        ),
        (
            "runtime_support:",
            ValueError,
            r"^function reference 'runtime_support:' is not of the form "
            r"'package\.module:function'$",
        ),
        ("no_such_module_xyz:fn", ModuleNotFoundError, r"^No module named 'no_such_module_xyz'$"),
        (
            "runtime_support:no_such_function",
            AttributeError,
            r"^module 'runtime_support' has no attribute 'no_such_function'$",
        ),
        (
            "runtime_support:NOT_CALLABLE",
            TypeError,
            r"^'runtime_support:NOT_CALLABLE' is not callable \(it is a int\)$",
        ),
    ],
    ids=["no colon", "no module", "no function", "no such module", "no such name", "not callable"],
)
async def test_a_bad_function_reference_is_refused_and_starts_nothing(
    runtime: AsyncIOBackend, ref: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await runtime.spawn(ref)
    assert runtime.statistics().total_spawned == 0
    assert runtime.processes() == []


# ------------------------------------------------------ spawn_link / monitor


@pytest.mark.parametrize("what", ["spawn_link", "spawn_monitor"])
async def test_spawn_link_and_spawn_monitor_need_a_calling_process(
    runtime: AsyncIOBackend, what: str
) -> None:
    with pytest.raises(NotInProcessError, match=not_in_process(what)):
        await getattr(runtime, what)(idle)
    assert runtime.processes() == []


async def test_spawn_link_links_both_ways(runtime: AsyncIOBackend) -> None:
    async def stays() -> None:
        await process.spawn_link(idle)
        await process.receive()

    parent = await runtime.spawn(stays)
    await wait_waiting(runtime, parent)
    info = runtime.process_info(parent)
    assert info is not None
    (child,) = info.links
    child_info = runtime.process_info(child)
    assert child_info is not None
    assert child_info.links == (parent,)
    assert runtime.statistics().active_links == 1


async def test_spawn_link_child_crash_takes_the_parent_with_the_same_reason(
    runtime: AsyncIOBackend,
) -> None:
    go = asyncio.Event()

    async def child() -> None:
        await go.wait()
        raise ValueError("child failed")

    async def parent() -> None:
        await process.spawn_link(child)
        await process.receive()

    parent_pid = await runtime.spawn(parent)
    await wait_waiting(runtime, parent_pid)
    down = await watch(runtime, parent_pid)
    go.set()
    reason = await exit_reason(down)
    assert type(reason) is ValueError
    assert reason.args == ("child failed",)


async def test_spawn_link_with_a_taken_name_makes_no_link(runtime: AsyncIOBackend) -> None:
    await runtime.spawn(idle, name="taken")

    async def body() -> None:
        with pytest.raises(NameAlreadyRegistered):
            await process.spawn_link(idle, name="taken")
        info = process.process_info(process.self())
        assert info is not None
        assert info.links == ()

    await run_in(runtime, body)
    assert runtime.statistics().active_links == 0


async def test_spawn_monitor_returns_pid_and_ref_and_delivers_down(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> tuple[Pid, Ref, Any]:
        pid, ref = await process.spawn_monitor(idle)
        info = process.process_info(process.self())
        assert info is not None
        assert info.monitors == (pid,)
        await process.exit(pid, "kill")
        return pid, ref, await process.receive(timeout=DEADLINE)

    pid, ref, msg = await run_in(runtime, body)
    assert type(pid) is Pid
    assert type(ref) is Ref
    assert msg == (DOWN, ref, pid, KILLED)
    assert msg[0] is DOWN
    assert msg[3] is KILLED


async def test_spawn_monitor_of_a_child_that_returns_at_once_still_reports_normal(
    runtime: AsyncIOBackend,
) -> None:
    async def quick() -> None:
        return None

    async def body() -> Any:
        _pid, ref = await process.spawn_monitor(quick)
        return await process.receive(match=lambda m: is_down(m, ref), timeout=DEADLINE)

    msg = await run_in(runtime, body)
    assert msg[3] is NORMAL


async def test_spawn_monitor_options_are_passed_on(runtime: AsyncIOBackend) -> None:
    async def body() -> Pid:
        pid, _ref = await process.spawn_monitor(idle, name="monitored", trap_exits=True)
        return pid

    pid = await run_in(runtime, body)
    info = runtime.process_info(pid)
    assert info is not None
    assert info.name == "monitored"
    assert info.trap_exits is True


# ------------------------------------------------------------------- self


async def test_self_from_main_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(NotInProcessError, match=not_in_process("self")):
        runtime.self()


async def test_self_is_the_pid_spawn_returned(runtime: AsyncIOBackend) -> None:
    seen: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        seen.set_result(runtime.self())

    pid = await runtime.spawn(body)
    assert await asyncio.wait_for(seen, DEADLINE) == pid


async def test_created_at_is_the_wall_clock_time_of_the_spawn(runtime: AsyncIOBackend) -> None:
    before = time.time()
    pid = await runtime.spawn(idle)
    after = time.time()
    info = runtime.process_info(pid)
    assert info is not None
    assert before <= info.created_at <= after
