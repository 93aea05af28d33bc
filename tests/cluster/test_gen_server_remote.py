"""gen_server across nodes: call, cast and stop by ``(name, node)`` or remote pid,
every way a remote call fails, and servers started on another node.

Nodes share one event loop and talk over loopback TCP. Each test waits for
events (answers, reports, DOWN and EXIT messages) with generous deadlines.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from behaviour_procs import GO, Counter
from remote_helpers import ClusterFactory, Reports, mailbox_len, run_in

from otpylib import gen_server, process
from otpylib.gen_server import ALREADY_STARTED, CallError, StartError
from otpylib.runtime.atoms import EXIT, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, TIMEOUT
from otpylib.runtime.data import Pid
from otpylib_dist.protocol.codec import RemoteException

# ---------------------------------------------------------- call, cast, stop


async def test_a_named_server_on_another_node_answers_calls_and_casts(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Counter, 5, name="counter", runtime=b)
    where = ("counter", b.node_name)

    async def body() -> Any:
        first = await gen_server.call(where, "incr")
        by_pid = await gen_server.call(server, "incr", timeout=None)
        await gen_server.cast(where, "reset")
        after_cast = await gen_server.call(where, "get")
        caller = await gen_server.call(where, "caller")
        return first, by_pid, after_cast, caller, process.self(), mailbox_len()

    first, by_pid, after_cast, caller, me, left = await run_in(a, body)
    assert (first, by_pid, after_cast) == (6, 7, 0)
    # from_[0] is the real caller on node a, as an OTP server sees it.
    assert caller == me and caller.node == a.node_name
    assert left == 0  # no answer and no DOWN left behind


async def test_main_on_one_node_calls_a_server_on_another(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    await gen_server.start(Counter, 1, name="counter", runtime=b)
    assert await gen_server.call(("counter", b.node_name), "incr", runtime=a) == 2
    await gen_server.cast(("counter", b.node_name), "reset", runtime=a)
    assert await gen_server.call(("counter", b.node_name), "get", runtime=a) == 0


async def test_stop_of_a_remote_server_runs_terminate_and_waits(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)
    by_name = await gen_server.start(Counter, 0, reports.pid, name="c1", runtime=b)
    by_pid = await gen_server.start(Counter, 0, reports.pid, runtime=b)

    async def body() -> None:
        await gen_server.stop(("c1", b.node_name))
        await gen_server.stop(by_pid, reason="bye")

    await run_in(a, body)
    # stop returned only once each server was gone, after its terminate.
    assert not b.is_alive(by_name) and not b.is_alive(by_pid)
    assert await reports.next("terminate") == ("terminate", by_name, NORMAL)
    assert await reports.next("terminate") == ("terminate", by_pid, "bye")


async def test_stop_of_an_unknown_remote_name_raises_noproc(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)

    async def body() -> None:
        await gen_server.stop(("nobody", b.node_name))

    with pytest.raises(CallError) as e:
        await run_in(a, body)
    assert e.value.reason is NOPROC


async def test_a_cast_to_an_unreachable_node_is_dropped(make_cluster: ClusterFactory) -> None:
    (a,) = await make_cluster(1)

    async def body() -> Any:
        results = [
            await gen_server.cast(("counter", "nowhere@127.0.0.1"), "reset"),
            await gen_server.cast(Pid("nowhere@127.0.0.1", 5, 1), "reset"),
        ]
        return results, process.process_info(process.self())

    results, me = await run_in(a, body)  # returns: nothing raised, nothing waited for
    assert results == [None, None]
    # No error came back to the caster, nothing was set up on its behalf.
    assert me is not None
    assert (me.message_queue_len, me.links, me.monitors) == (0, (), ())
    assert a.nodes() == []


# ------------------------------------------------------------- failed calls


async def test_calling_an_unknown_name_on_another_node_raises_noproc(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    where = ("nobody", b.node_name)

    async def body() -> None:
        await gen_server.call(where, "get")

    with pytest.raises(
        CallError, match=r"^call to \('nobody', 'b@127.0.0.1'\) failed: no such"
    ) as e:
        await run_in(a, body)
    assert e.value.reason is NOPROC
    assert e.value.target == where


async def test_calling_a_dead_remote_pid_raises_noproc(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Counter, runtime=b)
    await gen_server.stop(server, runtime=b)

    async def body() -> None:
        await gen_server.call(server, "get")

    with pytest.raises(CallError) as e:
        await run_in(a, body)
    assert e.value.reason is NOPROC


async def test_calling_a_pid_of_an_earlier_incarnation_raises_noproc(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Counter, runtime=b)
    stale = Pid(server.node, server.id, server.creation + 1)

    async def body() -> None:
        await gen_server.call(stale, "get")

    with pytest.raises(CallError) as e:
        await run_in(a, body)
    assert e.value.reason is NOPROC


async def test_calling_a_node_that_cannot_be_reached_raises_noconnection(
    make_cluster: ClusterFactory,
) -> None:
    (a,) = await make_cluster(1)

    async def body(target: Any) -> None:
        await gen_server.call(target, "get")

    for target in (("counter", "nowhere@127.0.0.1"), Pid("nowhere@127.0.0.1", 5, 1)):
        with pytest.raises(CallError, match=r"the connection to its node was lost") as e:
            await run_in(a, body, target)
        assert e.value.reason is NOCONNECTION


@pytest.mark.parametrize("side", ["caller", "server"])
async def test_losing_the_connection_during_a_call_raises_noconnection(
    make_cluster: ClusterFactory, side: str
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)
    await gen_server.start(Counter, 0, reports.pid, name="counter", runtime=b)

    async def body() -> None:
        await gen_server.call(("counter", b.node_name), "wait_for_go", timeout=None)

    task = asyncio.ensure_future(run_in(a, body))
    await reports.next("waiting")  # the server holds the call now
    if side == "caller":
        assert await a.disconnect(b.node_name)
    else:
        assert await b.disconnect(a.node_name)
    with pytest.raises(CallError, match=r"connection to its node was lost \(noconnection\)$") as e:
        await task
    assert e.value.reason is NOCONNECTION


async def test_a_remote_crash_during_the_call_raises_its_reason(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    await gen_server.start(Counter, name="counter", runtime=b)

    async def body() -> None:
        await gen_server.call(("counter", b.node_name), "crash")

    with pytest.raises(CallError, match=r"ValueError.*asked to crash") as e:
        await run_in(a, body)
    # An exception cannot cross nodes; its type name and message do.
    assert e.value.reason == RemoteException("builtins.ValueError", "asked to crash")


async def test_a_remote_server_stopping_during_the_call_raises_its_reason(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)
    server = await gen_server.start(Counter, 0, reports.pid, runtime=b)

    async def body() -> None:
        await gen_server.call(server, "wait_for_go")

    task = asyncio.ensure_future(run_in(a, body))
    await reports.next("waiting")
    await b.shutdown()  # the server ends with shutdown before the connection closes
    with pytest.raises(CallError) as e:
        await task
    assert e.value.reason is SHUTDOWN


# ------------------------------------------------------- timeouts, late replies


async def test_a_timed_out_remote_call_raises_and_its_late_reply_never_arrives(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Counter, 3, name="counter", runtime=b)
    where = ("counter", b.node_name)

    async def body() -> Any:
        with pytest.raises(CallError, match=r"timed out after 0.2 s \(timeout\)") as e:
            await gen_server.call(where, "wait_for_go", timeout=0.2)
        assert e.value.reason is TIMEOUT
        # The server answers the abandoned call now. Its answer to the next
        # call travels after it on the same connection, so once that answer
        # is here, the late one has arrived too, and was dropped.
        await process.send(server, GO)
        value = await gen_server.call(where, "get")
        return value, mailbox_len()

    assert await run_in(a, body) == (3, 0)


async def test_an_answer_delegated_by_a_remote_server_that_died_is_dropped(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)
    server = await gen_server.start(Counter, 0, reports.pid, runtime=b)
    answerer = await b.spawn("behaviour_procs:answer_later")

    async def body() -> Any:
        with pytest.raises(CallError) as e:
            await gen_server.call(server, "defer", timeout=None)
        # The server stopped after handing the call over: the call failed
        # with its reason. Now let the other process answer anyway.
        await process.send(answerer, GO)
        await process.receive(timeout=10, match=lambda m: m == ("answered",))
        return e.value.reason, mailbox_len()

    task = asyncio.ensure_future(run_in(a, body))
    await reports.next("deferred")
    await gen_server.cast(server, ("hand_over", answerer), runtime=b)
    # The answer was addressed to the call's alias, inactive by then: dropped.
    assert await task == ("handed_over", 0)
    assert await reports.next("terminate") == ("terminate", server, "handed_over")


# --------------------------------------------------------- starting elsewhere


async def test_start_with_node_runs_the_server_there_under_its_name(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def body() -> Any:
        pid = await gen_server.start(Counter, 4, name="counter", node=b.node_name)
        answer = await gen_server.call(("counter", b.node_name), "node")
        return pid, answer

    pid, answer = await run_in(a, body)
    assert pid.node == b.node_name and answer == b.node_name
    assert b.whereis("counter") == pid
    assert await gen_server.call(pid, "get", runtime=a) == 4


async def test_start_from_main_on_another_node(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    pid = await gen_server.start(Counter, 9, node=b.node_name, runtime=a)
    assert pid.node == b.node_name
    assert await gen_server.call(pid, "get", runtime=a) == 9


async def test_a_remote_start_whose_init_fails_raises_start_error(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def body(start: str) -> None:
        await gen_server.start_link(Counter, start, node=b.node_name)

    with pytest.raises(StartError) as e:
        await run_in(a, body, "raise")
    assert e.value.reason == RemoteException("builtins.ValueError", "bad start value")
    with pytest.raises(StartError, match=r"init stopped with reason 'refused'$") as e:
        await run_in(a, body, "stop")
    assert e.value.reason == "refused"


async def test_a_remote_start_under_a_taken_name_reports_the_holder(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    holder = await gen_server.start(Counter, name="counter", runtime=b)

    async def body() -> None:
        await gen_server.start(Counter, name="counter", node=b.node_name)

    with pytest.raises(StartError, match=r"the name 'counter' is already registered there") as e:
        await run_in(a, body)
    assert e.value.reason == (ALREADY_STARTED, holder)
    assert e.value.pid == holder


async def test_a_remote_start_of_a_class_the_node_cannot_import_fails(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    class Local(gen_server.GenServer):
        pass

    async def body() -> None:
        await gen_server.start(Local, node=b.node_name)

    with pytest.raises(TypeError, match=r"must be defined at module level"):
        await run_in(a, body)


async def test_a_remote_start_on_an_unreachable_node_raises_noconnection(
    make_cluster: ClusterFactory,
) -> None:
    (a,) = await make_cluster(1)

    async def body() -> None:
        await gen_server.start(Counter, node="nowhere@127.0.0.1")

    with pytest.raises(StartError, match=r"^Counter not started on nowhere@127.0.0.1: node") as e:
        await run_in(a, body)
    assert e.value.reason is NOCONNECTION


async def test_a_remotely_linked_server_terminates_with_its_parents_reason(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)

    async def parent() -> Pid:
        pid = await gen_server.start_link(Counter, 0, reports.pid, node=b.node_name)
        assert await gen_server.call(pid, "incr") == 1
        return pid

    pid = await run_in(a, parent)
    # The parent process ended normally right after: a normal exit of the
    # parent reaches the trapping server, which terminates with it.
    assert await reports.next("terminate") == ("terminate", pid, NORMAL)


async def test_a_remotely_linked_server_and_its_parent_both_see_noconnection(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(b)

    async def body() -> Any:
        pid = await gen_server.start_link(Counter, 0, reports.pid, node=b.node_name)
        await reports_started(pid)
        assert await a.disconnect(b.node_name)
        exit_msg = await process.receive(
            timeout=10, match=lambda m: type(m) is tuple and m[0] is EXIT
        )
        return pid, exit_msg

    async def reports_started(pid: Pid) -> None:
        assert await gen_server.call(pid, "get") == 0

    pid, exit_msg = await run_in(a, body, trap_exits=True)
    assert exit_msg == (EXIT, pid, NOCONNECTION)
    assert await reports.next("terminate") == ("terminate", pid, NOCONNECTION)


async def test_the_nodes_stay_usable_after_failed_remote_calls(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    await gen_server.start(Counter, name="counter", runtime=b)

    async def body() -> Any:
        for _ in range(3):
            with pytest.raises(CallError):
                await gen_server.call(("nobody", b.node_name), "get")
        return await gen_server.call(("counter", b.node_name), "incr")

    assert await run_in(a, body) == 1
