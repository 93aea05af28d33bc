"""shutdown: every process ends with reason shutdown, links and monitors fire, nothing leaks."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pytest
from runtime_support import (
    DEADLINE,
    idle,
    is_down,
    wait_until,
    wait_waiting,
)

from otpylib import process
from otpylib.runtime.atoms import EXIT, SHUTDOWN
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.backends.base import DEFAULT_SHUTDOWN_TIMEOUT, RuntimeBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import RuntimeClosedError

BACKEND_LOGGER = "otpylib.runtime.backends.asyncio_backend.backend"
SHUT_DOWN = (
    r"^the runtime has been shut down; call 'await runtime\.initialize\(\)' first "
    r"and use it only until 'await runtime\.shutdown\(\)'$"
)


def assert_nothing_left(runtime: AsyncIOBackend) -> None:
    assert runtime.processes() == []
    assert runtime.registered() == []
    stats = runtime.statistics()
    assert (
        stats.active_processes,
        stats.active_links,
        stats.active_monitors,
        stats.registered_names,
    ) == (0, 0, 0, 0)


async def test_shutdown_ends_every_process_with_reason_shutdown(
    runtime: AsyncIOBackend,
) -> None:
    release = asyncio.Event()

    async def sleeper() -> None:
        await release.wait()

    async def linked_pair() -> None:
        await process.spawn_link(idle)
        await process.receive()

    targets = [
        await runtime.spawn(idle),
        await runtime.spawn(idle, name="named"),
        await runtime.spawn(sleeper),
        await runtime.spawn(linked_pair),
    ]
    reasons: asyncio.Future[dict[Pid, Any]] = asyncio.get_running_loop().create_future()
    watching = asyncio.Event()

    async def observer() -> None:
        refs = {await process.monitor(pid): pid for pid in targets}
        watching.set()
        seen: dict[Pid, Any] = {}
        while len(seen) < len(refs):
            msg = await process.receive(match=lambda m: any(is_down(m, r) for r in refs))
            seen[refs[msg[1]]] = msg[3]
        reasons.set_result(seen)

    await runtime.spawn(observer, trap_exits=True)
    await asyncio.wait_for(watching.wait(), DEADLINE)
    await runtime.shutdown()
    seen = await asyncio.wait_for(reasons, DEADLINE)
    assert set(seen) == set(targets)
    assert all(reason is SHUTDOWN for reason in seen.values()), seen
    assert_nothing_left(runtime)


async def test_nothing_is_left_after_shutdown(runtime: AsyncIOBackend) -> None:
    async def busy() -> None:
        await process.register(f"busy{process.self().id}")
        await process.spawn_link(idle)
        await process.monitor(await process.spawn(idle))
        await process.send(process.self(), "unread")
        await process.receive(match=lambda m: m == "never")

    for _ in range(10):
        await runtime.spawn(busy)
    await wait_until(lambda: len(runtime.registered()) == 10, "all registered")
    stats = runtime.statistics()
    assert (stats.active_links, stats.active_monitors) == (10, 10)
    await runtime.shutdown()
    assert_nothing_left(runtime)


async def test_a_trapping_process_gets_the_shutdown_signal_and_exits_gracefully(
    runtime: AsyncIOBackend,
) -> None:
    got: list[Any] = []
    cleaned_up = asyncio.Event()

    async def graceful() -> None:
        got.append(await process.receive())
        await asyncio.sleep(0.01)  # the point: clean-up that awaits, which shutdown waits for
        cleaned_up.set()

    pid = await runtime.spawn(graceful, trap_exits=True)
    await wait_waiting(runtime, pid)
    await runtime.shutdown()
    assert got == [(EXIT, runtime.runtime_pid, SHUTDOWN)]
    assert got[0][2] is SHUTDOWN
    assert cleaned_up.is_set()
    assert_nothing_left(runtime)


async def test_a_trapping_process_that_ignores_the_signal_is_still_ended(
    runtime: AsyncIOBackend,
) -> None:
    got: list[Any] = []
    ended = asyncio.Event()

    async def deaf() -> None:
        try:
            while True:
                got.append(await process.receive())
        finally:
            ended.set()

    pid = await runtime.spawn(deaf, trap_exits=True)
    await wait_waiting(runtime, pid)
    await runtime.shutdown(timeout=0.1)
    assert got == [(EXIT, runtime.runtime_pid, SHUTDOWN)]
    assert ended.is_set()
    assert not runtime.is_alive(pid)
    assert_nothing_left(runtime)


async def test_links_and_monitors_fire_during_shutdown(runtime: AsyncIOBackend) -> None:
    worker = await runtime.spawn(idle)
    watched = await runtime.spawn(idle)
    got: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
    ready = asyncio.Event()

    async def supervisor() -> None:
        await process.link(worker)
        ref = await process.monitor(watched)
        ready.set()
        seen: list[Any] = []
        while len(seen) < 3:
            seen.append(await process.receive())
        got.set_result([ref, *seen])

    await runtime.spawn(supervisor, trap_exits=True)
    await asyncio.wait_for(ready.wait(), DEADLINE)
    await runtime.shutdown()
    ref, *messages = await asyncio.wait_for(got, DEADLINE)
    assert (EXIT, runtime.runtime_pid, SHUTDOWN) in messages
    assert (EXIT, worker, SHUTDOWN) in messages
    assert any(is_down(m, ref) and m[2] == watched and m[3] is SHUTDOWN for m in messages)
    assert_nothing_left(runtime)


async def test_processes_that_never_ran_are_ended_without_running(
    runtime: AsyncIOBackend,
) -> None:
    ran = asyncio.Event()

    async def body() -> None:
        ran.set()

    for i in range(5):
        await runtime.spawn(body, name=f"p{i}")
    await runtime.shutdown()
    assert not ran.is_set()
    assert_nothing_left(runtime)
    assert runtime.statistics().total_spawned == 5


async def test_a_trapping_process_that_never_ran_still_gets_to_exit_gracefully(
    runtime: AsyncIOBackend,
) -> None:
    got: list[Any] = []

    async def body() -> None:
        got.append(await process.receive(timeout=DEADLINE))

    await runtime.spawn(body, trap_exits=True)
    await runtime.shutdown()
    assert got == [(EXIT, runtime.runtime_pid, SHUTDOWN)]
    assert_nothing_left(runtime)


async def test_shutdown_twice_is_safe(runtime: AsyncIOBackend) -> None:
    await runtime.spawn(idle)
    await runtime.shutdown()
    await runtime.shutdown()
    assert_nothing_left(runtime)


async def test_spawn_after_shutdown_is_refused(runtime: AsyncIOBackend) -> None:
    await runtime.shutdown()
    with pytest.raises(RuntimeClosedError, match=SHUT_DOWN):
        await runtime.spawn(idle)
    assert runtime.processes() == []


async def test_shutdown_of_a_runtime_never_initialized_is_safe() -> None:
    rt = AsyncIOBackend()
    await rt.shutdown()
    with pytest.raises(RuntimeClosedError, match=SHUT_DOWN):
        await rt.spawn(idle)


async def test_a_process_that_swallows_cancellation_is_abandoned_with_a_warning(
    runtime: AsyncIOBackend, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        finished.set()

    pid = await runtime.spawn(stubborn, name="stubborn")
    # Killed before its first step it would end at once, ignoring nothing.
    await asyncio.wait_for(started.wait(), DEADLINE)
    await runtime.shutdown(timeout=0.05)
    warnings = [r for r in caplog.records if r.name == BACKEND_LOGGER]
    assert [r.getMessage() for r in warnings] == [
        f"shutdown: 1 process(es) ignored cancellation and were abandoned: [{pid!r}]"
    ]
    assert warnings[0].levelno == logging.WARNING
    assert_nothing_left(runtime)
    release.set()
    await asyncio.wait_for(finished.wait(), DEADLINE)


async def test_100k_processes_are_spawned_and_all_cleaned_up(runtime: AsyncIOBackend) -> None:
    count = 100_000

    async def quick() -> None:
        return None

    for i in range(count):
        await runtime.spawn(quick if i % 2 else idle)
    stats = runtime.statistics()
    assert (stats.total_spawned, stats.active_processes) == (count, count)
    await wait_until(
        lambda: runtime.statistics().active_processes == count // 2, "the quick half has ended"
    )
    await runtime.shutdown()
    assert_nothing_left(runtime)
    assert runtime.statistics().total_spawned == count


def test_every_backend_has_the_same_default_shutdown_timeout() -> None:
    for cls in (RuntimeBackend, AsyncIOBackend):
        default = inspect.signature(cls.shutdown).parameters["timeout"].default
        assert default == DEFAULT_SHUTDOWN_TIMEOUT, cls


async def observe_downs(
    runtime: AsyncIOBackend, targets: list[Pid]
) -> asyncio.Future[dict[Pid, Any]]:
    """Monitor ``targets`` from a trapping process; the future gets each one's exit reason."""
    reasons: asyncio.Future[dict[Pid, Any]] = asyncio.get_running_loop().create_future()
    watching = asyncio.Event()

    async def observer() -> None:
        refs = {await process.monitor(pid): pid for pid in targets}
        watching.set()
        seen: dict[Pid, Any] = {}
        while len(seen) < len(refs):
            msg = await process.receive(match=lambda m: any(is_down(m, r) for r in refs))
            seen[refs[msg[1]]] = msg[3]
        reasons.set_result(seen)

    await runtime.spawn(observer, trap_exits=True)
    await asyncio.wait_for(watching.wait(), DEADLINE)
    return reasons


async def test_shutdown_called_by_a_process_ends_it_and_every_other_with_shutdown(
    runtime: AsyncIOBackend,
) -> None:
    # A shutdown cannot wait for its own caller to end: from inside a process
    # it runs in a task of its own, and the caller is signalled like the rest.
    went_on = asyncio.Event()

    async def stopper() -> None:
        await process.receive()
        # A timeout far past DEADLINE: waiting on the caller would show.
        await runtime.shutdown(timeout=60.0)
        went_on.set()

    others = [await runtime.spawn(idle), await runtime.spawn(idle, name="named")]
    caller = await runtime.spawn(stopper)
    reasons = await observe_downs(runtime, [*others, caller])
    await runtime.send(caller, "go")
    seen = await asyncio.wait_for(reasons, DEADLINE)
    assert seen == {pid: SHUTDOWN for pid in [*others, caller]}
    assert not went_on.is_set()
    # Called from main meanwhile, shutdown waits for the one in progress.
    await asyncio.wait_for(runtime.shutdown(), DEADLINE)
    assert_nothing_left(runtime)
    with pytest.raises(RuntimeClosedError, match=SHUT_DOWN):
        await runtime.spawn(idle)


async def test_a_trapping_process_that_calls_shutdown_gets_the_signal_as_a_message(
    runtime: AsyncIOBackend,
) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def stopper() -> None:
        await runtime.shutdown(timeout=60.0)
        got.set_result(await process.receive(timeout=DEADLINE))

    await runtime.spawn(stopper, trap_exits=True)
    assert await asyncio.wait_for(got, DEADLINE) == (EXIT, runtime.runtime_pid, SHUTDOWN)
    # The caller returned on the message: nothing is left to wait for.
    await asyncio.wait_for(runtime.shutdown(), DEADLINE)
    assert_nothing_left(runtime)


async def test_a_shutdown_goes_on_when_the_main_caller_stops_waiting(
    runtime: AsyncIOBackend,
) -> None:
    released = asyncio.Event()

    async def slow() -> None:
        await process.receive()
        await released.wait()

    await runtime.spawn(slow, trap_exits=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(runtime.shutdown(), 0.01)
    released.set()
    await asyncio.wait_for(runtime.shutdown(), DEADLINE)
    assert_nothing_left(runtime)


async def test_a_process_spawned_during_shutdown_gets_the_shutdown_signal_too(
    runtime: AsyncIOBackend,
) -> None:
    seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def late_child() -> None:
        seen.set_result(await process.receive(timeout=DEADLINE))

    async def restarter() -> None:
        # Like a supervisor restarting a child while the runtime stops.
        await process.receive()
        await process.spawn(late_child, trap_exits=True)

    await runtime.spawn(restarter, trap_exits=True)
    await runtime.shutdown(timeout=DEADLINE)
    msg = await asyncio.wait_for(seen, DEADLINE)
    assert msg[0] is EXIT and msg[2] is SHUTDOWN
    assert_nothing_left(runtime)
