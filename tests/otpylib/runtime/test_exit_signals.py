"""exit/2 and exit reasons, by Erlang's rules (the table in backend.py's docstring).

=====================  =====================  ==========================
signal reason          target traps exits     target does not trap
=====================  =====================  ==========================
kill                   dies, reason killed    dies, reason killed
normal                 (EXIT, from, normal)   ignored (unless from itself)
anything else          (EXIT, from, R)        dies with reason R
=====================  =====================  ==========================
"""

from __future__ import annotations

import asyncio
import logging
import re
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
    not_in_process,
    run_in,
    spawn_collector,
    wait_gone,
    wait_waiting,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import (
    EXIT,
    KILL,
    KILLED,
    NORMAL,
    SHUTDOWN,
    TRAP_EXIT,
    atom,
)
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE, Pid
from otpylib.runtime.errors import NotInProcessError, ProcessExit

#: Crash records come from the module that runs processes.
BACKEND_LOGGER = "otpylib.runtime.backends.asyncio_backend.spawning"
CUSTOM = ("custom", 1)
BOOM = atom.ensure("boom")

DIES = "dies"
MESSAGE = "message"
IGNORED = "ignored"

# (reason sent, target traps exits, what happens, the reason seen)
EXIT_TABLE = [
    (KILL, False, DIES, KILLED),
    (KILL, True, DIES, KILLED),
    ("kill", False, DIES, KILLED),
    ("kill", True, DIES, KILLED),
    (NORMAL, False, IGNORED, None),
    ("normal", False, IGNORED, None),
    (NORMAL, True, MESSAGE, NORMAL),
    ("normal", True, MESSAGE, NORMAL),
    (SHUTDOWN, False, DIES, SHUTDOWN),
    ("shutdown", False, DIES, SHUTDOWN),
    (SHUTDOWN, True, MESSAGE, SHUTDOWN),
    ("shutdown", True, MESSAGE, SHUTDOWN),
    (KILLED, False, DIES, KILLED),
    (KILLED, True, MESSAGE, KILLED),
    (BOOM, False, DIES, BOOM),
    (BOOM, True, MESSAGE, BOOM),
    (CUSTOM, False, DIES, CUSTOM),
    (CUSTOM, True, MESSAGE, CUSTOM),
    ("other text", False, DIES, "other text"),
    ("other text", True, MESSAGE, "other text"),
]


EXIT_IDS = [f"{r!r} to {'trapping' if t else 'plain'}" for r, t, _, _ in EXIT_TABLE]


async def check_outcome(
    runtime: AsyncIOBackend,
    target: Pid,
    queue: asyncio.Queue[Any],
    down: asyncio.Future[Any],
    sender: Pid,
    outcome: str,
    expected: Any,
) -> None:
    if outcome == DIES:
        reason = await exit_reason(down)
        assert reason == expected
        assert type(reason) is type(expected)
        assert not runtime.is_alive(target)
    elif outcome == MESSAGE:
        msg = await next_message(queue)
        assert msg == (EXIT, sender, expected)
        assert type(msg[2]) is type(expected)
        if is_runtime_shutdown_from(runtime, msg):
            # The collector stops by itself, cleanly, on the runtime's shutdown.
            assert await exit_reason(down) is NORMAL
        else:
            assert runtime.is_alive(target)
    else:
        await runtime.send(target, "still there?")
        assert await next_message(queue) == "still there?"
        assert not down.done()
        assert runtime.process_info(target).state != "exiting"  # type: ignore[union-attr]


def is_runtime_shutdown_from(runtime: AsyncIOBackend, msg: Any) -> bool:
    return msg == (EXIT, runtime.runtime_pid, SHUTDOWN)


@pytest.mark.parametrize(("reason", "trapping", "outcome", "expected"), EXIT_TABLE, ids=EXIT_IDS)
async def test_exit_from_main(
    runtime: AsyncIOBackend, reason: Any, trapping: bool, outcome: str, expected: Any
) -> None:
    target, queue = await spawn_collector(runtime, trap_exits=trapping)
    down = await watch(runtime, target)
    await runtime.exit(target, reason)
    await check_outcome(runtime, target, queue, down, runtime.runtime_pid, outcome, expected)


@pytest.mark.parametrize(("reason", "trapping", "outcome", "expected"), EXIT_TABLE, ids=EXIT_IDS)
async def test_exit_from_another_process(
    runtime: AsyncIOBackend, reason: Any, trapping: bool, outcome: str, expected: Any
) -> None:
    target, queue = await spawn_collector(runtime, trap_exits=trapping)
    down = await watch(runtime, target)

    async def sender() -> Pid:
        await process.exit(target, reason)
        return process.self()

    sender_pid = await run_in(runtime, sender)
    await check_outcome(runtime, target, queue, down, sender_pid, outcome, expected)


async def test_exit_from_main_is_sent_by_the_runtime_pid(runtime: AsyncIOBackend) -> None:
    target, queue = await spawn_collector(runtime)
    await runtime.exit(target, "shutdown")
    msg = await next_message(queue)
    assert msg[1] == runtime.runtime_pid == Pid(LOCAL_NODE, 0, 0)


async def test_normal_exit_to_self_ends_a_non_trapping_process(runtime: AsyncIOBackend) -> None:
    went_on = asyncio.Event()
    go = asyncio.Event()

    async def body() -> None:
        await go.wait()
        await process.exit(process.self(), NORMAL)
        went_on.set()

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    go.set()
    assert await exit_reason(down) is NORMAL
    assert not went_on.is_set()


async def test_normal_exit_to_self_is_a_message_when_trapping(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        await process.exit(process.self(), "normal")
        return process.self(), await process.receive(timeout=0)

    me, msg = await run_in(runtime, body, trap_exits=True)
    assert msg == (EXIT, me, NORMAL)


async def test_exit_to_self_ends_the_process_before_the_next_line(
    runtime: AsyncIOBackend,
) -> None:
    went_on = asyncio.Event()
    go = asyncio.Event()

    async def body() -> None:
        await go.wait()
        await process.exit(process.self(), CUSTOM)
        went_on.set()

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    go.set()
    assert await exit_reason(down) == CUSTOM
    assert not went_on.is_set()


async def test_kill_to_self_ends_even_a_trapping_process(runtime: AsyncIOBackend) -> None:
    go = asyncio.Event()

    async def body() -> None:
        await go.wait()
        await process.exit(process.self(), KILL)

    pid = await runtime.spawn(body, trap_exits=True)
    down = await watch(runtime, pid)
    go.set()
    assert await exit_reason(down) is KILLED


@pytest.mark.parametrize("dead", [NEVER_SPAWNED, REMOTE_PID], ids=["local", "other node"])
async def test_exit_to_a_dead_pid_does_nothing(runtime: AsyncIOBackend, dead: Pid) -> None:
    bystander = await runtime.spawn(idle)
    await runtime.exit(dead, KILL)

    async def body() -> None:
        await process.exit(dead, SHUTDOWN)

    await run_in(runtime, body)
    assert runtime.is_alive(bystander)


async def test_an_exiting_process_ignores_further_signals(runtime: AsyncIOBackend) -> None:
    # Erlang: once a process is exiting, its reason is fixed.
    release = asyncio.Event()
    cleaning = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await process.receive()
        finally:
            cleaning.set()
            await release.wait()

    pid = await runtime.spawn(slow_cleanup)
    await wait_waiting(runtime, pid)
    down = await watch(runtime, pid)
    await runtime.exit(pid, SHUTDOWN)
    await asyncio.wait_for(cleaning.wait(), DEADLINE)
    assert runtime.process_info(pid).state == "exiting"  # type: ignore[union-attr]
    await runtime.exit(pid, KILL)
    await runtime.exit(pid, CUSTOM)
    release.set()
    assert await exit_reason(down) is SHUTDOWN


# ------------------------------------------------- trap_exit at run time


@pytest.mark.parametrize("flag", [TRAP_EXIT, "trap_exit"])
async def test_trap_exit_can_be_switched_on_and_off(runtime: AsyncIOBackend, flag: Any) -> None:
    switched = asyncio.Event()
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    step = asyncio.Event()

    async def body() -> None:
        assert process.flag(flag, True) is False
        assert process.process_info(process.self()).trap_exits is True  # type: ignore[union-attr]
        switched.set()
        got.set_result(await process.receive(timeout=DEADLINE))
        assert process.flag(flag, False) is True
        step.set()
        await process.receive()

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    await asyncio.wait_for(switched.wait(), DEADLINE)
    await runtime.exit(pid, CUSTOM)
    assert await asyncio.wait_for(got, DEADLINE) == (EXIT, runtime.runtime_pid, CUSTOM)
    await asyncio.wait_for(step.wait(), DEADLINE)
    assert runtime.process_info(pid).trap_exits is False  # type: ignore[union-attr]
    await runtime.exit(pid, CUSTOM)
    assert await exit_reason(down) == CUSTOM


async def test_trap_exit_switched_on_turns_a_link_crash_into_a_message(
    runtime: AsyncIOBackend,
) -> None:
    partner, _ = await spawn_collector(runtime, trap_exits=False)

    async def body() -> Any:
        await process.link(partner)
        process.flag(TRAP_EXIT, True)
        await process.send(partner, (CRASH, CUSTOM))
        return await process.receive(timeout=DEADLINE)

    assert await run_in(runtime, body) == (EXIT, partner, CUSTOM)


async def test_an_unknown_process_flag_is_refused(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        with pytest.raises(
            ValueError, match=r"^unknown process flag 'priority'; supported: trap_exit$"
        ):
            process.flag("priority", "high")

    await run_in(runtime, body)


async def test_process_flag_needs_a_calling_process(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        NotInProcessError,
        match=not_in_process("process_flag"),
    ):
        runtime.process_flag(TRAP_EXIT, True)


# ------------------------------------------------------ exit reasons


async def test_an_escaping_exception_is_the_reason_and_is_logged_once(
    runtime: AsyncIOBackend, caplog: pytest.LogCaptureFixture
) -> None:
    go = asyncio.Event()
    error = ValueError("boom")

    async def crasher() -> None:
        await go.wait()
        raise error

    pid = await runtime.spawn(crasher)
    linked, _ = await spawn_collector(runtime, trap_exits=False, link_to=pid)
    down = await watch(runtime, pid)
    down_linked = await watch(runtime, linked)
    go.set()
    assert await exit_reason(down) is error
    assert await exit_reason(down_linked) is error
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (record,) = errors
    assert record.name == BACKEND_LOGGER
    assert re.fullmatch(
        rf"process {re.escape(repr(pid))} \(test_exit_signals\."
        r"test_an_escaping_exception_is_the_reason_and_is_logged_once\.<locals>\.crasher\) "
        r"crashed: ValueError: boom",
        record.getMessage(),
    )
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert "Traceback" in caplog.text
    assert "in crasher" in caplog.text


@pytest.mark.parametrize("reason", [SHUTDOWN, CUSTOM, NORMAL, BOOM])
async def test_exit_self_ends_with_the_reason_and_logs_nothing(
    runtime: AsyncIOBackend, caplog: pytest.LogCaptureFixture, reason: Any
) -> None:
    go = asyncio.Event()

    async def body() -> None:
        await go.wait()
        process.exit_self(reason)

    pid = await runtime.spawn(body)
    down = await watch(runtime, pid)
    go.set()
    assert await exit_reason(down) == reason
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_exit_self_raises_process_exit_that_can_be_caught(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        try:
            process.exit_self(CUSTOM)
        except ProcessExit as exc:
            return exc.reason
        return None

    assert await run_in(runtime, body) == CUSTOM


async def test_exit_self_normal_leaves_linked_processes_alone(runtime: AsyncIOBackend) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, b_queue = await spawn_collector(runtime, trap_exits=False, link_to=a)
    down_a = await watch(runtime, a)
    await runtime.send(a, (CRASH, NORMAL))
    assert await exit_reason(down_a) is NORMAL
    await runtime.send(b, "alive")
    assert await next_message(b_queue) == "alive"


# Bug: exit_self("normal") ends the process with the *string* "normal", which
# linked processes treat as an abnormal reason and die of, although exit(pid,
# "normal") and the rest of the API read that string as the atom normal.
async def test_exit_self_with_the_string_normal_means_normal(runtime: AsyncIOBackend) -> None:
    a, _ = await spawn_collector(runtime, trap_exits=False)
    b, b_queue = await spawn_collector(runtime, trap_exits=False, link_to=a)
    down_a = await watch(runtime, a)
    down_b = await watch(runtime, b)
    await runtime.send(a, (CRASH, "normal"))
    assert await exit_reason(down_a) is NORMAL
    # a's exit signal reached b when a ended: b still answering means it ignored it.
    await runtime.send(b, "alive")
    assert await next_message(b_queue) == "alive"
    assert not down_b.done(), f"b died with {down_b.result()!r}"


# ---------------------------------------------------------- edge cases


async def test_kill_before_the_process_ever_ran(runtime: AsyncIOBackend) -> None:
    ran = asyncio.Event()

    async def body() -> None:
        ran.set()

    for trapping in (False, True):
        pid = await runtime.spawn(body, trap_exits=trapping, name="early")
        await runtime.exit(pid, KILL)
        # Gone at once: no step of the loop was needed.
        assert not runtime.is_alive(pid)
        assert runtime.process_info(pid) is None
        assert runtime.whereis("early") is None
    # Anything spawned later has run, so the killed ones had their turn too.
    await run_in(runtime, asyncio.sleep, 0)
    assert not ran.is_set()
    stats = runtime.statistics()
    assert stats.active_processes == 0
    assert stats.total_spawned == 3


async def test_a_process_killed_before_it_ran_takes_its_linked_parent(
    runtime: AsyncIOBackend,
) -> None:
    async def parent() -> None:
        child = await process.spawn_link(idle)
        await process.exit(child, KILL)
        await process.receive()

    pid = await runtime.spawn(parent)
    down = await watch(runtime, pid)
    assert await exit_reason(down) is KILLED


async def test_a_process_killed_while_blocked_in_receive(runtime: AsyncIOBackend) -> None:
    pid, _ = await spawn_collector(runtime, trap_exits=True)
    await wait_waiting(runtime, pid)
    down = await watch(runtime, pid)
    await runtime.exit(pid, KILL)
    assert await exit_reason(down) is KILLED
    await wait_gone(runtime, pid)


# Bug: _run() ends a process that returns with reason normal even when it was
# killed and merely swallowed the cancellation on its way out; kill must not
# be trappable, so the reason must stay killed.
async def test_a_killed_process_that_swallows_the_cancellation_still_ends_killed(
    runtime: AsyncIOBackend,
) -> None:
    async def stubborn() -> None:
        try:
            await process.receive()
        except asyncio.CancelledError:
            return

    pid = await runtime.spawn(stubborn)
    linked, _ = await spawn_collector(runtime, trap_exits=False, link_to=pid)
    await wait_waiting(runtime, pid)
    down = await watch(runtime, pid)
    down_linked = await watch(runtime, linked)
    await runtime.exit(pid, KILL)
    assert await exit_reason(down) is KILLED
    assert await exit_reason(down_linked) is KILLED


# Bug: is_alive() is true for a process that has been killed but whose task
# has not run yet. Erlang's is_process_alive/1 is false once the kill signal
# is delivered ("exit(P, kill), false = is_process_alive(P)"), and exit/2 here
# delivers it at once.
async def test_is_alive_is_false_right_after_a_kill(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    await wait_waiting(runtime, pid)
    await runtime.exit(pid, KILL)
    assert not runtime.is_alive(pid)


async def test_a_killed_process_is_not_alive_once_it_is_gone(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle)
    await wait_waiting(runtime, pid)
    await runtime.exit(pid, KILL)
    await wait_gone(runtime, pid)
    assert not runtime.is_alive(pid)
    assert pid not in runtime.processes()


async def test_is_alive_is_false_right_after_an_exit_signal_that_ends_the_target(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle)
    await wait_waiting(runtime, pid)
    await runtime.exit(pid, BOOM)
    assert not runtime.is_alive(pid)
    # Still in the table until its task has run its clean-up, as "exiting".
    info = runtime.process_info(pid)
    assert info is None or info.state == "exiting"


async def test_exit_self_with_the_string_shutdown_means_shutdown(runtime: AsyncIOBackend) -> None:
    pid, _ = await spawn_collector(runtime, trap_exits=False)
    down = await watch(runtime, pid)
    await runtime.send(pid, (CRASH, "shutdown"))
    assert await exit_reason(down) is SHUTDOWN


@pytest.mark.parametrize("value", ["exited_by_name", atom.ensure("exited_by_name"), None])
async def test_exit_takes_a_pid_not_a_name(runtime: AsyncIOBackend, value: object) -> None:
    # As in Erlang, where exit(Name, R) is badarg: the caller resolves the name.
    message = (
        rf"^exit\(\) takes a Pid, got {type(value).__name__}: {re.escape(repr(value))}; "
        r"for a registered name, look the pid up first with whereis\(name\)$"
    )
    named = await runtime.spawn(idle, name="exited_by_name")
    with pytest.raises(TypeError, match=message):
        await runtime.exit(value, KILL)  # type: ignore[arg-type]

    async def body() -> None:
        with pytest.raises(TypeError, match=message):
            await process.exit(value, KILL)  # type: ignore[arg-type]

    await run_in(runtime, body)
    assert runtime.is_alive(named)
