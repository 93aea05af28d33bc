"""supervisor: strategies, restart intensity, restart types, shutdown, the child API.

Children report ``("started", id, pid)`` and ``("terminated", id, reason)``
to the test process, so each test reads what happened, in the order it
happened, from its own mailbox. Nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import math
from functools import partial
from typing import Any

import pytest
from behaviour_helpers import WAIT, RunInProcess

from otpylib import gen_server, process, supervisor
from otpylib.gen_server import REPLY, STOP, StartError
from otpylib.runtime.atoms import DOWN, EXIT, KILLED, NOCONNECTION, NORMAL, SHUTDOWN, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid
from otpylib.supervisor import (
    BRUTAL_KILL,
    ONE_FOR_ALL,
    REST_FOR_ONE,
    SIMPLE_ONE_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    SupervisorError,
)


class Worker(gen_server.GenServer):
    """Reports its start and its end to ``observer``; crashes or stops on request."""

    async def init(self, wid: str, observer: Pid, log: list[str] | None = None) -> Any:
        if wid == "bad":
            raise ValueError("this child cannot start")
        self.wid, self.observer, self.log = wid, observer, log
        await process.send(observer, ("started", wid, process.self()))
        return None

    async def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return (REPLY, ("pong", self.wid), state)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        if request == "crash":
            raise RuntimeError(f"{self.wid} crashed on purpose")
        return (STOP, request[1], state)  # ("exit", reason)

    async def terminate(self, reason: Any, state: Any) -> None:
        if self.log is not None:
            self.log.append(self.wid)
        await process.send(self.observer, ("terminated", self.wid, reason))


class Crasher(Worker):
    """Crashes as soon as it has started: a restart storm by itself."""

    async def init(self, wid: str, observer: Pid, log: list[str] | None = None) -> Any:
        await super().init(wid, observer, log)
        await process.send(process.self(), "crash now")
        return None

    async def handle_info(self, message: Any, state: Any) -> Any:
        raise RuntimeError("crashing right after start")


def worker(wid: str, observer: Pid, log: list[str] | None = None, **options: Any) -> ChildSpec:
    return ChildSpec(wid, partial(gen_server.start_link, Worker, wid, observer, log), **options)


async def next_event() -> tuple[str, str]:
    """The next ``(kind, id)`` reported by a child (started or terminated)."""
    msg = await process.receive(
        timeout=WAIT, match=lambda m: type(m) is tuple and m[0] in ("started", "terminated")
    )
    return (msg[0], msg[1])


async def events(n: int) -> list[tuple[str, str]]:
    return [await next_event() for _ in range(n)]


async def start_pids(n: int) -> dict[str, Pid]:
    """Wait for ``n`` start reports; return id -> pid."""
    pids = {}
    for _ in range(n):
        msg = await process.receive(
            timeout=WAIT, match=lambda m: type(m) is tuple and m[0] == "started"
        )
        pids[msg[1]] = msg[2]
    return pids


async def no_more_events() -> None:
    """Nothing else was reported (call only once the supervisor answered a later call)."""
    with pytest.raises(TimeoutError):
        await process.receive(
            timeout=0, match=lambda m: type(m) is tuple and m[0] in ("started", "terminated")
        )


async def three_workers(**options: Any) -> tuple[Pid, dict[str, Pid]]:
    me = process.self()
    sup = await supervisor.start_link([worker(w, me) for w in "abc"], **options)
    return sup, await start_pids(3)


# --------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_child_that_crashed(run: RunInProcess) -> None:
    async def body() -> None:
        sup, pids = await three_workers()
        await gen_server.cast(pids["b"], "crash")
        assert await events(2) == [("terminated", "b"), ("started", "b")]
        children = await supervisor.which_children(sup)
        assert [c.id for c in children] == ["a", "b", "c"]
        assert children[0].pid == pids["a"] and children[2].pid == pids["c"]
        assert children[1].pid not in (None, pids["b"])
        await no_more_events()

    await run(body)


async def test_one_for_all_restarts_every_child_in_order(run: RunInProcess) -> None:
    async def body() -> None:
        sup, pids = await three_workers(strategy=ONE_FOR_ALL)
        await gen_server.cast(pids["b"], "crash")
        assert await events(6) == [
            ("terminated", "b"),
            ("terminated", "c"),  # the others stop in reverse start order...
            ("terminated", "a"),
            ("started", "a"),  # ...and all start again in start order
            ("started", "b"),
            ("started", "c"),
        ]
        children = await supervisor.which_children(sup)
        assert not {c.pid for c in children} & set(pids.values())

    await run(body)


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        sup, pids = await three_workers(strategy=REST_FOR_ONE)
        await gen_server.cast(pids["b"], "crash")
        assert await events(4) == [
            ("terminated", "b"),
            ("terminated", "c"),
            ("started", "b"),
            ("started", "c"),
        ]
        children = await supervisor.which_children(sup)
        assert children[0].pid == pids["a"]
        await no_more_events()

    await run(body)


# ------------------------------------------------------------ intensity


async def test_a_restart_storm_stops_the_supervisor_with_shutdown(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        spec = ChildSpec("x", partial(gen_server.start_link, Crasher, "x", me))
        calm = worker("calm", me)
        sup = await supervisor.start_link([calm, spec], max_restarts=3, max_seconds=3600)
        exit_msg = await process.receive(timeout=WAIT, match=lambda m: m[0] is EXIT)
        assert exit_msg == (EXIT, sup, SHUTDOWN)
        # Everything the children reported was sent before that EXIT.
        reported = []
        while True:
            try:
                msg = await process.receive(timeout=0)
            except TimeoutError:
                break
            reported.append(msg[:2])
        # One start and three restarts of x, then the calm child was stopped.
        assert reported.count(("started", "x")) == 4
        assert reported[-1] == ("terminated", "calm")
        assert not process.is_alive(sup)

    await run(body, trap_exits=True)


async def test_a_parent_that_does_not_trap_exits_dies_with_the_supervisor(
    run: RunInProcess,
) -> None:
    async def parent(observer: Pid) -> None:
        spec = ChildSpec("x", partial(gen_server.start_link, Crasher, "x", observer))
        await supervisor.start_link([spec], max_restarts=1, max_seconds=3600)
        await process.receive()

    async def body() -> None:
        pid, ref = await process.spawn_monitor(parent, (process.self(),))
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, pid, SHUTDOWN)

    await run(body)


# ---------------------------------------------------------- restart types


async def test_a_transient_child_is_restarted_only_after_an_abnormal_exit(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        me = process.self()
        sup = await supervisor.start_link([worker("t", me, restart=TRANSIENT)])
        pid = (await start_pids(1))["t"]
        await gen_server.cast(pid, ("exit", "failed"))
        assert await events(2) == [("terminated", "t"), ("started", "t")]
        # A child lost with its node is an abnormal exit too.
        pid = (await supervisor.which_children(sup))[0].pid
        assert pid is not None
        await gen_server.cast(pid, ("exit", NOCONNECTION))
        assert await events(2) == [("terminated", "t"), ("started", "t")]
        for quiet in (NORMAL, SHUTDOWN, (SHUTDOWN, "done")):
            pid = (await supervisor.which_children(sup))[0].pid
            assert pid is not None
            await gen_server.cast(pid, ("exit", quiet))
            assert await next_event() == ("terminated", "t")
            assert await supervisor.which_children(sup) == [ChildInfo("t", None, supervisor.WORKER)]
            await no_more_events()
            await supervisor.restart_child(sup, "t")
            assert await next_event() == ("started", "t")

    await run(body)


async def test_a_permanent_child_is_restarted_even_after_a_normal_exit(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        sup, pids = await three_workers()
        await gen_server.cast(pids["a"], ("exit", NORMAL))
        assert await events(2) == [("terminated", "a"), ("started", "a")]
        assert (await supervisor.count_children(sup)).active == 3

    await run(body)


async def test_a_temporary_child_is_never_restarted_and_is_forgotten(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        sup = await supervisor.start_link([worker("a", me), worker("tmp", me, restart=TEMPORARY)])
        pids = await start_pids(2)
        await gen_server.cast(pids["tmp"], "crash")
        assert await next_event() == ("terminated", "tmp")
        assert [c.id for c in await supervisor.which_children(sup)] == ["a"]
        await no_more_events()

    await run(body)


# ----------------------------------------------------------------- shutdown


async def test_children_stop_in_reverse_start_order(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        log: list[str] = []
        sup = await supervisor.start_link([worker(w, me, log) for w in "abcd"])
        assert [w for w in (await start_pids(4))] == ["a", "b", "c", "d"]
        await gen_server.stop(sup)
        assert log == ["d", "c", "b", "a"]
        assert await events(4) == [("terminated", w) for w in "dcba"]

    await run(body)


async def stubborn(observer: Pid) -> None:
    """Traps exits and ignores them all, reporting each to ``observer``."""
    while True:
        await process.send(observer, ("ignored", await process.receive()))


async def start_stubborn(observer: Pid) -> Pid:
    return await process.spawn_link(stubborn, (observer,), trap_exits=True)


async def test_a_child_ignoring_shutdown_is_killed_after_its_timeout(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        spec = ChildSpec("s", partial(start_stubborn, me), shutdown=0.1)
        sup = await supervisor.start_link([spec])
        pid = (await supervisor.which_children(sup))[0].pid
        assert pid is not None
        ref = await process.monitor(pid)
        await supervisor.terminate_child(sup, "s")
        ignored = await process.receive(timeout=WAIT, match=lambda m: m[0] == "ignored")
        assert ignored == ("ignored", (EXIT, sup, SHUTDOWN))
        down = await process.receive(timeout=WAIT, match=lambda m: m[0] is DOWN)
        assert down == (DOWN, ref, pid, KILLED)

    await run(body)


async def test_brutal_kill_kills_at_once_without_asking(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        spec = ChildSpec("s", partial(start_stubborn, me), shutdown=BRUTAL_KILL)
        sup = await supervisor.start_link([spec])
        pid = (await supervisor.which_children(sup))[0].pid
        assert pid is not None
        ref = await process.monitor(pid)
        await supervisor.terminate_child(sup, "s")
        down = await process.receive(timeout=WAIT)  # no "ignored" report came first
        assert down == (DOWN, ref, pid, KILLED)

    await run(body)


async def test_runtime_shutdown_stops_a_tree_top_down_in_reverse_order(
    runtime: AsyncIOBackend,
) -> None:
    log: list[str] = []

    async def sink() -> None:
        while True:
            await process.receive()

    observer = await runtime.spawn(sink)
    inner = [worker("x", observer, log), worker("y", observer, log)]
    children = [
        worker("a", observer, log),
        ChildSpec("sub", partial(supervisor.start_link, inner), type=supervisor.SUPERVISOR),
        worker("b", observer, log),
    ]
    sup = await supervisor.start(children, runtime=runtime)
    counts = await supervisor.count_children(sup, runtime=runtime)
    assert counts == ChildCounts(specs=3, active=3, supervisors=1, workers=2)
    await runtime.shutdown()
    assert log == ["b", "y", "x", "a"]


# ---------------------------------------------------------------- child API


async def test_which_and_count_children_describe_the_children(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        children = [
            worker("a", me),
            ChildSpec("sub", partial(supervisor.start_link, []), type=supervisor.SUPERVISOR),
            worker("b", me, restart=TRANSIENT),
        ]
        sup = await supervisor.start_link(children)
        pids = await start_pids(2)
        which = await supervisor.which_children(sup)
        assert [(c.id, c.type) for c in which] == [
            ("a", supervisor.WORKER),
            ("sub", supervisor.SUPERVISOR),
            ("b", supervisor.WORKER),
        ]
        assert which[0].pid == pids["a"] and which[2].pid == pids["b"]
        assert await supervisor.count_children(sup) == ChildCounts(4 - 1, 3, 1, 2)
        await supervisor.terminate_child(sup, "b")
        assert await supervisor.count_children(sup) == ChildCounts(3, 2, 1, 2)

    await run(body)


async def test_start_terminate_restart_and_delete_a_child(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        sup = await supervisor.start_link([worker("a", me)])
        await start_pids(1)

        d = await supervisor.start_child(sup, worker("d", me))
        assert await next_event() == ("started", "d")
        assert [c.id for c in await supervisor.which_children(sup)] == ["a", "d"]
        with pytest.raises(SupervisorError, match=r"already running") as e:
            await supervisor.start_child(sup, worker("d", me))
        assert e.value.reason == (supervisor.ALREADY_STARTED, d)

        await supervisor.terminate_child(sup, "d")
        assert await next_event() == ("terminated", "d")
        assert (await supervisor.which_children(sup))[1] == ChildInfo("d", None, supervisor.WORKER)
        with pytest.raises(SupervisorError) as e:
            await supervisor.start_child(sup, worker("d", me))
        assert e.value.reason is supervisor.ALREADY_PRESENT

        d2 = await supervisor.restart_child(sup, "d")
        assert d2 != d and await gen_server.call(d2, "ping") == ("pong", "d")
        with pytest.raises(SupervisorError) as e:
            await supervisor.restart_child(sup, "d")
        assert e.value.reason is supervisor.RUNNING
        with pytest.raises(SupervisorError) as e:
            await supervisor.delete_child(sup, "d")
        assert e.value.reason is supervisor.RUNNING

        await supervisor.terminate_child(sup, "d")
        await supervisor.terminate_child(sup, "d")  # already stopped: nothing to do
        await supervisor.delete_child(sup, "d")
        assert [c.id for c in await supervisor.which_children(sup)] == ["a"]
        for op in (supervisor.terminate_child, supervisor.restart_child, supervisor.delete_child):
            with pytest.raises(SupervisorError, match=r"no child has the id 'd'") as e:
                await op(sup, "d")
            assert e.value.reason is supervisor.NOT_FOUND

    await run(body)


async def test_a_child_that_fails_to_start_is_not_added(run: RunInProcess) -> None:
    async def body() -> None:
        me = process.self()
        sup = await supervisor.start_link([])
        with pytest.raises(SupervisorError, match=r"child 'bad' failed to start") as e:
            await supervisor.start_child(sup, worker("bad", me))
        assert isinstance(e.value.reason, ValueError)
        assert await supervisor.which_children(sup) == []

    await run(body)


async def test_a_child_started_without_a_link_is_still_supervised(run: RunInProcess) -> None:
    async def start_unlinked(observer: Pid) -> Pid:
        return await gen_server.start(Worker, "u", observer)

    async def body() -> None:
        sup = await supervisor.start_link([ChildSpec("u", partial(start_unlinked, process.self()))])
        pid = (await start_pids(1))["u"]
        await gen_server.cast(pid, "crash")
        assert await events(2) == [("terminated", "u"), ("started", "u")]
        assert (await supervisor.which_children(sup))[0].pid not in (None, pid)

    await run(body)


async def test_a_failing_child_makes_the_start_fail_and_stops_the_others(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        me = process.self()
        children = [worker("a", me), worker("bad", me), worker("c", me)]
        with pytest.raises(
            StartError, match=r"^supervisor not started: child 'bad' failed to start: ValueError"
        ) as e:
            await supervisor.start_link(children)
        _, (tag, child_id, reason) = e.value.reason
        assert (tag, child_id) == (supervisor.FAILED_TO_START_CHILD, "bad")
        assert isinstance(reason, ValueError)
        assert await events(2) == [("started", "a"), ("terminated", "a")]

    await run(body)


# ------------------------------------------------------- dynamic supervisor


async def test_a_dynamic_supervisor_starts_children_from_its_template(
    run: RunInProcess,
) -> None:
    async def body() -> None:
        me = process.self()
        template = ChildSpec("w", partial(gen_server.start_link, Worker))
        sup = await supervisor.start_link([template], strategy=SIMPLE_ONE_FOR_ONE)
        assert await supervisor.count_children(sup) == ChildCounts(1, 0, 0, 0)
        pids = [await supervisor.start_child(sup, [w, me]) for w in ("x", "y", "z")]
        assert await events(3) == [("started", w) for w in "xyz"]
        which = await supervisor.which_children(sup)
        assert which == [ChildInfo(None, p, supervisor.WORKER) for p in pids]

        # A crashed child comes back with the same arguments.
        await gen_server.cast(pids[1], "crash")
        assert await events(2) == [("terminated", "y"), ("started", "y")]
        assert await supervisor.count_children(sup) == ChildCounts(1, 3, 0, 3)

        await supervisor.terminate_child(sup, pids[0])
        assert await next_event() == ("terminated", "x")
        assert await supervisor.count_children(sup) == ChildCounts(1, 2, 0, 2)
        with pytest.raises(SupervisorError) as e:
            await supervisor.terminate_child(sup, pids[0])
        assert e.value.reason is supervisor.NOT_FOUND
        for op in (supervisor.restart_child, supervisor.delete_child):
            with pytest.raises(SupervisorError) as e:
                await op(sup, pids[2])
            assert e.value.reason is SIMPLE_ONE_FOR_ONE
        with pytest.raises(SupervisorError, match=r"takes a list of extra arguments") as e:
            await supervisor.start_child(sup, worker("q", me))

        await gen_server.stop(sup)
        assert sorted(await events(2)) == [("terminated", "y"), ("terminated", "z")]

    await run(body)


# --------------------------------------------------------------- arguments


def test_child_specs_refuse_values_a_supervisor_cannot_use() -> None:
    async def start() -> Pid:
        raise AssertionError

    with pytest.raises(ValueError, match=r"restart must be PERMANENT, TRANSIENT or TEMPORARY"):
        ChildSpec("a", start, restart="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shutdown must be seconds >= 0"):
        ChildSpec("a", start, shutdown=-1)
    with pytest.raises(TypeError, match=r"start must be an async callable"):
        ChildSpec("a", "not callable")  # type: ignore[arg-type]
    assert ChildSpec("a", start).shutdown == 5.0
    assert ChildSpec("a", start, type=supervisor.SUPERVISOR).shutdown == math.inf


async def test_start_link_refuses_bad_options_before_starting_anything(
    run: RunInProcess, runtime: AsyncIOBackend
) -> None:
    async def body() -> None:
        me = process.self()
        with pytest.raises(ValueError, match=r"two children have the id 'a'"):
            await supervisor.start_link([worker("a", me), worker("a", me)])
        with pytest.raises(ValueError, match=r"strategy must be"):
            await supervisor.start_link([], strategy=NORMAL)
        with pytest.raises(ValueError, match=r"exactly one template spec"):
            await supervisor.start_link([], strategy=SIMPLE_ONE_FOR_ONE)
        with pytest.raises(ValueError, match=r"max_restarts must be"):
            await supervisor.start_link([], max_restarts=-1)
        assert runtime.processes() == [me]

    await run(body)


async def test_the_supervisor_api_works_from_main(runtime: AsyncIOBackend) -> None:
    async def sink() -> None:
        while True:
            await process.receive()

    observer = await runtime.spawn(sink)
    sup = await supervisor.start([worker("a", observer)], name="top", runtime=runtime)
    assert runtime.whereis("top") == sup
    pid = await supervisor.start_child("top", worker("b", observer), runtime=runtime)
    assert await gen_server.call(pid, "ping", runtime=runtime) == ("pong", "b")
    assert [c.id for c in await supervisor.which_children("top", runtime=runtime)] == ["a", "b"]
    await asyncio.wait_for(gen_server.stop("top", runtime=runtime), WAIT)
    assert not runtime.is_alive(sup)


async def test_unexpected_messages_do_not_disturb_the_supervisor(run: RunInProcess) -> None:
    async def body() -> None:
        sup, _ = await three_workers()
        await process.send(sup, "hello")
        stranger = Pid(process.self().node, 999_999, 0)
        await process.send(sup, (EXIT, stranger, "not a child of it"))
        assert len(await supervisor.which_children(sup)) == 3
        await no_more_events()

    await run(body)


async def test_a_supervisor_answers_an_unknown_request_with_badarg(run: RunInProcess) -> None:
    async def body() -> None:
        sup, _ = await three_workers()
        answer = await gen_server.call(sup, ("what",))
        assert answer[:2] == (atom.ensure("error"), atom.ensure("badarg"))

    await run(body)
