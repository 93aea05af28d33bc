"""gen_server: start, call, cast, info, stop, deferred replies and every way a call fails.

Each test names the OTP behaviour it mirrors. Tests wait for events (replies,
DOWN and EXIT messages, reports from the server) with generous deadlines and
never assert how long something took.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from behaviour_helpers import WAIT, RunInProcess

from otpylib import gen_server, process
from otpylib.gen_server import NOREPLY, REPLY, STOP, CallError, StartError
from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILL,
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    atom,
)
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NotInProcessError, ProcessExit

GO = atom.ensure("go")


class Counter(gen_server.GenServer):
    """A number, with requests that exercise every callback answer.

    With an ``observer`` pid it reports ``("info", msg)`` and
    ``("terminate", reason, state)`` there, so tests can wait for them.
    """

    async def init(self, start: int = 0, observer: Pid | None = None) -> Any:
        self.observer = observer
        self.pending: Any = None
        if start == "stop":
            return (STOP, "refused")
        if start == "raise":
            raise ValueError("bad start value")
        if start == "hang":
            await process.receive()
        return start

    async def handle_call(self, request: Any, from_: Any, n: Any) -> Any:
        if request == "get":
            return (REPLY, n, n)
        if request == "incr":
            return (REPLY, n + 1, n + 1)
        if request == "caller":
            return (REPLY, from_[0], n)
        if request == "crash":
            raise ValueError("asked to crash")
        if request == "bad":
            return "not a valid answer"
        if request == "defer":
            self.pending = from_
            if self.observer is not None:
                await process.send(self.observer, ("deferred",))
            return (NOREPLY, n)
        if request == "wait_for_go":
            await process.receive(match=lambda m: m is GO)
            return (REPLY, "late", n)
        if request[0] == "stop_reply":
            return (STOP, request[1], "bye", n)
        if request[0] == "stop":
            return (STOP, request[1], n)
        raise AssertionError(f"unexpected request {request!r}")

    async def handle_cast(self, request: Any, n: Any) -> Any:
        if request == "reset":
            return (NOREPLY, 0)
        if request[0] == "answer":
            await gen_server.reply(self.pending, request[1])
            return (NOREPLY, n)
        if request[0] == "hand_over":
            # Give the pending call to another process to answer.
            await process.send(request[1], self.pending)
            return (NOREPLY, n)
        if request[0] == "stop":
            return (STOP, request[1], n)
        raise AssertionError(f"unexpected cast {request!r}")

    async def handle_info(self, message: Any, n: Any) -> Any:
        if self.observer is not None:
            await process.send(self.observer, ("info", message))
        return (NOREPLY, n + 100)

    async def terminate(self, reason: Any, n: Any) -> None:
        if self.observer is not None:
            await process.send(self.observer, ("terminate", reason, n))


async def next_report(kind: str) -> tuple[Any, ...]:
    """The next ``(kind, ...)`` report a server sent to the calling process."""
    msg: tuple[Any, ...] = await process.receive(
        timeout=WAIT, match=lambda m: type(m) is tuple and m[0] == kind
    )
    return msg


async def down_of(pid: Pid) -> Any:
    """Monitor ``pid`` and return the reason it exits with."""
    ref = await process.monitor(pid)
    msg = await process.receive(
        timeout=WAIT, match=lambda m: type(m) is tuple and m[0] is DOWN and m[1] == ref
    )
    return msg[3]


def mailbox_len() -> int:
    info = process.process_info(process.self())
    assert info is not None
    return info.message_queue_len


# ----------------------------------------------------------- call, cast, info


async def test_call_cast_and_info_reach_their_callbacks(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 5, process.self())
        assert await gen_server.call(pid, "incr") == 6
        await gen_server.cast(pid, "reset")
        assert await gen_server.call(pid, "get") == 0
        await process.send(pid, "hello")
        assert await next_report("info") == ("info", "hello")
        assert await gen_server.call(pid, "get") == 100

    await run(body)


async def test_call_with_no_timeout_leaves_nothing_behind(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 1)
        assert await gen_server.call(pid, "incr", timeout=None) == 2
        # Neither the answer nor the server's DOWN is left behind.
        assert mailbox_len() == 0

    await run(body)


async def test_from_names_the_real_caller_with_and_without_timeout(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        assert await gen_server.call(pid, "caller") == process.self()
        assert await gen_server.call(pid, "caller", timeout=None) == process.self()

    await run(body)


async def test_a_registered_name_and_name_node_both_reach_the_server(
    run: RunInProcess, runtime: AsyncIOBackend
) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 7, name="counter")
        assert runtime.whereis("counter") == pid
        assert await gen_server.call("counter", "get") == 7
        assert await gen_server.call(("counter", runtime.node_name), "get") == 7
        await gen_server.cast(("counter", runtime.node_name), "reset")
        assert await gen_server.call("counter", "get") == 0

    await run(body)


async def test_main_calls_casts_and_stops_through_the_runtime(runtime: AsyncIOBackend) -> None:
    pid = await gen_server.start(Counter, 1, name="c", runtime=runtime)
    assert await gen_server.call("c", "incr", runtime=runtime) == 2
    assert await gen_server.call(pid, "incr", timeout=None, runtime=runtime) == 3
    await gen_server.cast(pid, "reset", runtime=runtime)
    assert await gen_server.call(pid, "get", runtime=runtime) == 0
    await gen_server.stop(pid, runtime=runtime)
    assert not runtime.is_alive(pid)


async def test_main_without_a_runtime_is_told_to_pass_one() -> None:
    with pytest.raises(NotInProcessError, match=r"pass it: 'await gen_server.call\(\.\.\."):
        await gen_server.call("anything", "get")


async def test_start_link_from_main_is_refused_with_advice(runtime: AsyncIOBackend) -> None:
    with pytest.raises(NotInProcessError, match=r"use 'await gen_server.start\(Cls"):
        await gen_server.start_link(Counter)


async def test_cast_to_nobody_is_silently_dropped(
    run: RunInProcess, runtime: AsyncIOBackend
) -> None:
    async def body() -> Any:
        results = [
            await gen_server.cast("nobody", "reset"),
            await gen_server.cast(Pid("nonode@nohost", 999_999, 0), "reset"),
        ]
        return results, process.process_info(process.self())

    results, me = await run(body)
    assert results == [None, None]
    # Nothing came back to the caster, and nothing was set up on its behalf.
    assert me is not None
    assert (me.message_queue_len, me.links, me.monitors) == (0, (), ())
    # Dropped, not kept for the name: a server that takes it later was never reset.
    await gen_server.start(Counter, 7, name="nobody", runtime=runtime)
    assert await gen_server.call("nobody", "get", runtime=runtime) == 7


# --------------------------------------------------------------- deferred reply


async def call_from_another_process(server: Pid, request: Any, timeout: Any = 5.0) -> Pid:
    """Spawn a process that calls ``server`` and sends us ``("result", answer)``."""
    me = process.self()

    async def caller() -> None:
        await process.send(me, ("result", await gen_server.call(server, request, timeout)))

    return await process.spawn(caller)


async def test_a_deferred_reply_answers_the_waiting_caller(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 0, process.self())
        await call_from_another_process(pid, "defer")
        await next_report("deferred")
        await gen_server.cast(pid, ("answer", 42))
        assert await next_report("result") == ("result", 42)

    await run(body)


async def test_another_process_can_answer_a_call_it_was_handed(run: RunInProcess) -> None:
    async def answerer() -> None:
        from_ = await process.receive()
        await gen_server.reply(from_, "from elsewhere")

    async def body() -> None:
        pid = await gen_server.start_link(Counter, 0, process.self())
        other = await process.spawn(answerer)
        for timeout in (5.0, None):
            await call_from_another_process(pid, "defer", timeout)
            await next_report("deferred")
            await gen_server.cast(pid, ("hand_over", other))
            assert await next_report("result") == ("result", "from elsewhere")
            other = await process.spawn(answerer)

    await run(body)


async def test_an_answer_handed_over_by_a_server_that_then_died_is_dropped(
    run: RunInProcess,
) -> None:
    async def answerer() -> None:
        from_ = await process.receive(match=lambda m: m is not GO)
        await process.receive(match=lambda m: m is GO)
        await gen_server.reply(from_, "too late")
        await process.send(from_[0], ("answered",))

    async def body() -> None:
        other = await process.spawn(answerer)

        async def conductor() -> None:
            _, server = await process.receive(match=lambda m: m[0] == "server")
            await process.receive(match=lambda m: m == ("deferred",))
            await gen_server.cast(server, ("hand_over", other))
            await gen_server.cast(server, ("stop", "handed_over"))

        cond = await process.spawn(conductor)
        pid = await gen_server.start(Counter, 0, cond)
        await process.send(cond, ("server", pid))
        with pytest.raises(CallError) as e:
            await gen_server.call(pid, "defer", timeout=None)
        assert e.value.reason == "handed_over"
        # The call is over; the process it was handed to answers anyway,
        # then tells us. The answer went to the call's alias: dropped.
        await process.send(other, GO)
        await next_report("answered")
        assert mailbox_len() == 0

    await run(body)


# ------------------------------------------------------------------- timeouts


async def test_a_timed_out_call_raises_timeout_and_its_late_reply_never_arrives(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 3)
        with pytest.raises(CallError, match=r"^call to <0\.\d+\.0> timed out after 0.05 s") as e:
            await gen_server.call(pid, "wait_for_go", timeout=0.05)
        assert e.value.reason is TIMEOUT
        assert e.value.target == pid
        # Let the server answer the abandoned call, then make sure it has:
        # it handles our next call only after that answer was sent.
        await process.send(pid, GO)
        assert await gen_server.call(pid, "get") == 3
        assert mailbox_len() == 0
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0.05)

    await run(body)


async def test_a_timed_out_call_from_main_leaves_nothing_behind(runtime: AsyncIOBackend) -> None:
    pid = await gen_server.start(Counter, 3, runtime=runtime)
    with pytest.raises(CallError) as e:
        await gen_server.call(pid, "wait_for_go", timeout=0.05, runtime=runtime)
    assert e.value.reason is TIMEOUT
    await runtime.send(pid, GO)
    assert await gen_server.call(pid, "get", runtime=runtime) == 3
    # Only the server and nothing else (no helper or proxy) is alive.
    assert runtime.processes() == [pid]


# -------------------------------------------------------------- failed calls


async def test_calling_an_unknown_name_raises_noproc_naming_it(run: RunInProcess) -> None:
    async def body() -> None:
        with pytest.raises(CallError, match=r"^call to 'nobody' failed: no such process") as e:
            await gen_server.call("nobody", "get")
        assert e.value.reason is NOPROC

    await run(body)


async def test_calling_a_dead_pid_raises_noproc_with_and_without_timeout(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        await gen_server.stop(pid)
        for timeout in (5.0, None):
            with pytest.raises(CallError, match=rf"^call to {pid!r} failed: no such") as e:
                await gen_server.call(pid, "get", timeout=timeout)
            assert e.value.reason is NOPROC
        assert mailbox_len() == 0

    await run(body)


async def test_a_crash_during_the_call_raises_the_crash_reason(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 9, process.self())
        with pytest.raises(CallError, match=r"exited with reason ValueError: asked to crash") as e:
            await gen_server.call(pid, "crash")
        assert isinstance(e.value.reason, ValueError)
        _, reason, state = await next_report("terminate")
        assert reason is e.value.reason
        assert state == 9

    await run(body, trap_exits=True)


async def test_a_crash_during_a_call_without_timeout_raises_the_crash_reason(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        with pytest.raises(CallError) as e:
            await gen_server.call(pid, "crash", timeout=None)
        assert isinstance(e.value.reason, ValueError)

    await run(body, trap_exits=True)


async def test_a_node_that_cannot_be_reached_raises_noconnection(run: RunInProcess) -> None:
    async def body() -> None:
        with pytest.raises(CallError, match=r"connection to its node was lost") as e:
            await gen_server.call(("counter", "elsewhere@host"), "get")
        assert e.value.reason is NOCONNECTION

    await run(body)


async def test_a_server_cannot_call_itself(run: RunInProcess) -> None:
    async def body() -> None:
        with pytest.raises(CallError, match=r"it is the calling process itself") as e:
            await gen_server.call(process.self(), "get")
        assert e.value.reason is gen_server.CALLING_SELF

    await run(body)


async def test_a_bad_callback_answer_crashes_the_server_with_bad_return(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        with pytest.raises(CallError) as e:
            await gen_server.call(pid, "bad")
        reason = e.value.reason
        assert isinstance(reason, gen_server.BadReturnError)
        assert str(reason).startswith("handle_call returned 'not a valid answer'; expected")

    await run(body, trap_exits=True)


# ----------------------------------------------------------------- stopping


async def test_stop_runs_terminate_and_waits_for_the_exit(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 4, process.self())
        await gen_server.stop(pid, "enough")
        assert not process.is_alive(pid)
        assert await next_report("terminate") == ("terminate", "enough", 4)

    await run(body, trap_exits=True)


async def test_stop_of_nobody_raises_noproc(run: RunInProcess) -> None:
    async def body() -> None:
        with pytest.raises(CallError) as e:
            await gen_server.stop("nobody")
        assert e.value.reason is NOPROC

    await run(body)


async def test_stop_with_a_reply_answers_then_exits(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 1, process.self())
        ref = await process.monitor(pid)
        assert await gen_server.call(pid, ("stop_reply", "done")) == "bye"
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, pid, "done")
        assert await next_report("terminate") == ("terminate", "done", 1)

    await run(body, trap_exits=True)


async def test_stop_without_a_reply_fails_the_call_with_the_reason(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        with pytest.raises(CallError) as e:
            await gen_server.call(pid, ("stop", NORMAL))
        assert e.value.reason is NORMAL

    await run(body)


async def test_a_cast_can_stop_the_server(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter)
        ref = await process.monitor(pid)
        await gen_server.cast(pid, ("stop", SHUTDOWN))
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, pid, SHUTDOWN)

    await run(body, trap_exits=True)  # the link would pass shutdown on to us


async def test_the_parents_exit_makes_the_server_terminate_with_its_reason(
    run: RunInProcess,
) -> None:
    async def parent(observer: Pid) -> None:
        pid = await gen_server.start_link(Counter, 2, observer)
        await process.send(observer, ("started", pid))
        await process.receive()  # until told to go
        process.exit_self("parent gone")

    async def body() -> None:
        me = process.self()
        parent_pid = await process.spawn(parent, (me,))
        _, server = await next_report("started")
        ref = await process.monitor(server)
        await process.send(parent_pid, GO)
        assert await next_report("terminate") == ("terminate", "parent gone", 2)
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, server, "parent gone")

    await run(body)


async def test_an_exit_from_another_linked_process_goes_to_handle_info(
    run: RunInProcess,
) -> None:
    async def linker(server: Pid) -> None:
        await process.link(server)
        process.exit_self("gone")

    async def body() -> None:
        pid = await gen_server.start_link(Counter, 0, process.self())
        other = await process.spawn(linker, (pid,))
        assert await next_report("info") == ("info", (EXIT, other, "gone"))
        assert await gen_server.call(pid, "get") == 100

    await run(body)


class TrappingCounter(Counter):
    """A Counter that traps exits even when started without a parent."""

    async def init(self, start: int = 0, observer: Pid | None = None) -> Any:
        process.flag("trap_exit", True)
        return await super().init(start, observer)


async def reports_to_queue(runtime: AsyncIOBackend) -> tuple[Pid, asyncio.Queue[Any]]:
    """A process whose mailbox main can read: everything it gets goes to the queue."""
    reports: asyncio.Queue[Any] = asyncio.Queue()

    async def collector() -> None:
        while True:
            reports.put_nowait(await process.receive())

    return await runtime.spawn(collector), reports


async def test_a_server_without_parent_obeys_an_exit_from_the_runtime(
    runtime: AsyncIOBackend,
) -> None:
    observer, reports = await reports_to_queue(runtime)
    pid = await gen_server.start(TrappingCounter, 6, observer, runtime=runtime)
    await runtime.exit(pid, SHUTDOWN)  # from main: the sender is the runtime itself
    assert await asyncio.wait_for(reports.get(), WAIT) == ("terminate", SHUTDOWN, 6)


async def test_a_server_with_a_parent_waits_for_the_parent_not_the_runtime(
    runtime: AsyncIOBackend,
) -> None:
    observer, reports = await reports_to_queue(runtime)

    async def parent() -> None:
        pid = await gen_server.start_link(Counter, 3, observer)
        await process.send(observer, ("started", pid))
        await process.receive()

    parent_pid = await runtime.spawn(parent)
    _, server = await asyncio.wait_for(reports.get(), WAIT)
    await runtime.exit(server, SHUTDOWN)
    assert await gen_server.call(server, "get", runtime=runtime) == 3
    await runtime.exit(parent_pid, "done")
    assert await asyncio.wait_for(reports.get(), WAIT) == ("terminate", "done", 3)


# ------------------------------------------------------------------ starting


async def test_init_that_raises_fails_the_start_with_the_exception(run: RunInProcess) -> None:
    async def body() -> None:
        with pytest.raises(StartError, match=r"^Counter not started: init raised ValueError") as e:
            await gen_server.start_link(Counter, "raise")
        assert isinstance(e.value.reason, ValueError)
        assert e.value.__cause__ is e.value.reason

    await run(body)


async def test_init_that_stops_fails_the_start_without_killing_the_caller(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        # The caller does not trap exits, yet survives: the server unlinked.
        with pytest.raises(StartError, match=r"init stopped with reason 'refused'") as e:
            await gen_server.start_link(Counter, "stop", name="taken_then_freed")
        assert e.value.reason == "refused"
        # The name is free again as soon as start_link returns.
        pid = await gen_server.start_link(Counter, 1, name="taken_then_freed")
        assert await gen_server.call("taken_then_freed", "get") == 1
        assert process.whereis("taken_then_freed") == pid
        assert mailbox_len() == 0

    await run(body)


async def test_a_trapping_caller_gets_no_exit_message_from_a_failed_init(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        with pytest.raises(StartError):
            await gen_server.start_link(Counter, "raise")
        assert mailbox_len() == 0

    await run(body, trap_exits=True)


async def test_starting_under_a_taken_name_fails_with_already_started(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        first = await gen_server.start_link(Counter, name="only")
        with pytest.raises(StartError, match=r"already registered to") as e:
            await gen_server.start_link(Counter, name="only")
        assert e.value.reason == (gen_server.ALREADY_STARTED, first)
        assert e.value.pid == first

    await run(body)


async def test_an_init_that_takes_too_long_is_killed_and_fails_with_timeout(
    run: RunInProcess, runtime: AsyncIOBackend
) -> None:
    async def body() -> None:
        before = set(runtime.processes())
        with pytest.raises(StartError, match=r"init did not return within 0.05 s") as e:
            await gen_server.start_link(Counter, "hang", name="slow", timeout=0.05)
        assert e.value.reason is TIMEOUT
        assert set(runtime.processes()) == before
        assert runtime.whereis("slow") is None

    await run(body)


async def test_start_refuses_a_class_that_is_not_a_gen_server(runtime: AsyncIOBackend) -> None:
    with pytest.raises(TypeError, match=r"needs a subclass of gen_server.GenServer"):
        await gen_server.start(dict, runtime=runtime)  # type: ignore[arg-type]


async def test_a_killed_server_gives_no_terminate_and_exits_killed(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 0, process.self())
        ref = await process.monitor(pid)
        await process.exit(pid, "kill")
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, pid, KILLED)
        await process.receive(timeout=WAIT, match=lambda m: m[0] is EXIT)
        assert mailbox_len() == 0

    await run(body, trap_exits=True)


async def test_call_accepts_an_atom_as_the_server_name(run: RunInProcess) -> None:
    async def body() -> None:
        await gen_server.start_link(Counter, 5, name="atom_counter")
        assert await gen_server.call(atom.ensure("atom_counter"), "get") == 5
        local = (atom.ensure("atom_counter"), process.runtime().node_name)
        assert await gen_server.call(local, "get") == 5

    await run(body)


# ------------------------------------------------- review fixes (exit reasons)


async def test_a_client_that_does_not_catch_a_failed_call_crashes_with_a_wrapped_reason(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        server = await gen_server.start_link(Counter, 1)

        async def client() -> None:
            await gen_server.call(server, ("stop", "normal"))  # server ends normal mid-call

        pid = await process.spawn(client)
        # Not the bare `normal`: a failed call is a failure of the client.
        assert await down_of(pid) == (NORMAL, (atom.ensure("call"), server))

    await run(body)


async def test_stop_with_a_string_reason_means_the_atom(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start(Counter, 3, process.self())
        await gen_server.stop(pid, "shutdown")  # no CallError: same reason
        assert await next_report("terminate") == ("terminate", SHUTDOWN, 3)
        other = await gen_server.start_link(Counter, 4, process.self())
        assert await gen_server.call(other, ("stop_reply", "normal")) == "bye"
        assert await next_report("terminate") == ("terminate", NORMAL, 4)

    await run(body)


async def test_a_stop_reply_is_sent_after_terminate_has_run(run: RunInProcess) -> None:
    async def body() -> None:
        pid = await gen_server.start_link(Counter, 5, process.self())
        assert await gen_server.call(pid, ("stop_reply", "normal")) == "bye"
        # terminate's report was sent before the reply, so it is already here.
        info = process.process_info(process.self())
        assert info is not None and info.message_queue_len >= 1
        assert await process.receive(timeout=0) == ("terminate", NORMAL, 5)

    await run(body)


async def test_a_call_from_main_racing_shutdown_does_not_hang(runtime: AsyncIOBackend) -> None:
    pid = await gen_server.start(Counter, 1, runtime=runtime)
    outcome = await asyncio.wait_for(
        asyncio.gather(
            gen_server.call(pid, "get", runtime=runtime), runtime.shutdown(), return_exceptions=True
        ),
        WAIT,
    )
    # Either answered before the shutdown reached the helper, or told why not.
    assert outcome[0] == 1 or isinstance(outcome[0], ProcessExit)


async def test_a_call_from_main_whose_helper_is_killed_before_it_runs_is_told_so(
    runtime: AsyncIOBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper dies without running a line: the caller learns it, it does not hang."""
    server = await gen_server.start(Counter, 1, runtime=runtime)
    spawn = runtime.spawn
    killed: list[Pid] = []

    async def spawn_then_kill(*args: Any, **kwargs: Any) -> Pid:
        pid = await spawn(*args, **kwargs)
        await runtime.exit(pid, KILL)  # before the new process takes its first step
        killed.append(pid)
        return pid

    monkeypatch.setattr(runtime, "spawn", spawn_then_kill)
    with pytest.raises(ProcessExit, match=r"killed before it started") as e:
        await asyncio.wait_for(gen_server.call(server, "get", runtime=runtime), WAIT)
    assert e.value.reason is KILLED
    assert len(killed) == 1 and not runtime.is_alive(killed[0])
    monkeypatch.undo()
    assert await gen_server.call(server, "get", runtime=runtime) == 1
