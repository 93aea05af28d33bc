"""Supervisors whose children live on other nodes: a lost node is a child exit
with reason ``noconnection``, and the strategy restarts the child (on a node
that survived, or on the same node once it is back).

Nodes share one event loop and talk over loopback TCP; ``crash`` makes a
node vanish as a killed OS process would (tests/faults does it for real).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest
from behaviour_procs import Counter, start_on_first_reachable, start_when_reachable
from remote_helpers import WAIT, ClusterFactory, Reports, crash, run_in

from otpylib import gen_server, process, supervisor
from otpylib._gen import describe_reason
from otpylib.runtime.atoms import DOWN, NOCONNECTION, SHUTDOWN
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol.codec import RemoteException

#: How a child's ``ValueError("asked to crash")`` on another node reaches its supervisor.
CRASH = RemoteException("builtins.ValueError", "asked to crash")


async def down_reason(node: DistributedBackend, pid: Pid) -> Any:
    """Wait (from a process on ``node``) for ``pid`` to end; return its reason."""

    async def body() -> Any:
        ref = await process.monitor(pid)
        msg = await process.receive(
            timeout=WAIT, match=lambda m: type(m) is tuple and m[0] is DOWN and m[1] == ref
        )
        return msg[3]

    return await run_in(node, body)


def restart_logged(caplog: pytest.LogCaptureFixture, child: str, reason: Any) -> bool:
    """Whether a supervisor logged restarting ``child`` after an exit with ``reason``."""
    wanted = f"child {child!r} exited with reason {describe_reason(reason)}; restarting"
    return any(wanted in r.getMessage() for r in caplog.records)


async def test_a_child_on_a_lost_node_restarts_on_a_surviving_node(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = await make_cluster(3)
    reports = await Reports.on(a)
    start = partial(start_on_first_reachable, [b.node_name, c.node_name], reports.pid, "worker")
    sup = await supervisor.start([supervisor.ChildSpec("worker", start)], name="sup", runtime=a)
    _, first, where = await reports.next("started")
    assert where == b.node_name
    assert await gen_server.call(("worker", b.node_name), "incr", runtime=a) == 1

    await crash(b)

    _, second, where = await reports.next("started")
    assert where == c.node_name and second != first
    assert restart_logged(caplog, "worker", NOCONNECTION)
    assert await gen_server.call(("worker", c.node_name), "incr", runtime=a) == 1
    # The supervisor's own API answers from another node too.
    children = await supervisor.which_children(("sup", a.node_name), runtime=c)
    assert [(ch.id, ch.pid) for ch in children] == [("worker", second)]
    assert a.is_alive(sup)


async def test_a_child_whose_node_shuts_down_terminates_and_moves(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = await make_cluster(3)
    reports = await Reports.on(a)
    start = partial(start_on_first_reachable, [b.node_name, c.node_name], reports.pid)
    await supervisor.start([supervisor.ChildSpec("worker", start)], runtime=a)
    _, first, _ = await reports.next("started")

    await b.shutdown()

    # Its parent is on another node, so the child obeys its own node's
    # shutdown: terminate runs, the supervisor sees shutdown and restarts it.
    assert await reports.next("terminate") == ("terminate", first, SHUTDOWN)
    _, second, where = await reports.next("started")
    assert where == c.node_name and second != first
    assert restart_logged(caplog, "worker", SHUTDOWN)


async def test_a_child_restarts_on_its_node_once_that_node_is_back(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_cluster(2)
    port = b.port
    reports = await Reports.on(a)
    start = partial(start_when_reachable, b.node_name, reports.pid, "worker")
    await supervisor.start([supervisor.ChildSpec("worker", start)], runtime=a)
    _, first, _ = await reports.next("started")

    await crash(b)
    # The same node name comes back on the same address: a new incarnation.
    b2 = DistributedBackend(b.node_name, cookie=b.cookie, port=port)
    await b2.initialize()
    try:
        _, second, where = await reports.next("started")
        assert where == b.node_name
        assert second.creation == b2.creation != first.creation
        assert restart_logged(caplog, "worker", NOCONNECTION)
        assert await gen_server.call(second, "incr", runtime=a) == 1
    finally:
        await a.shutdown()  # stop the supervisor while b2 is still there
        await b2.shutdown()


async def test_one_for_all_restarts_the_local_children_when_a_remote_one_is_lost(
    make_cluster: ClusterFactory,
) -> None:
    a, b, c = await make_cluster(3)
    reports = await Reports.on(a)
    children = [
        supervisor.ChildSpec("local", partial(gen_server.start_link, Counter, 0, reports.pid)),
        supervisor.ChildSpec(
            "remote", partial(start_on_first_reachable, [b.node_name, c.node_name], reports.pid)
        ),
    ]
    await supervisor.start(children, strategy=supervisor.ONE_FOR_ALL, runtime=a)
    _, local1, _ = await reports.next("started")
    _, remote1, where = await reports.next("started")
    assert where == b.node_name

    await crash(b)

    # The local child is stopped as the strategy says (it runs terminate),
    # then both start again in order.
    assert await reports.next("terminate") == ("terminate", local1, SHUTDOWN)
    _, local2, where = await reports.next("started")
    assert where == a.node_name and local2 != local1
    _, remote2, where = await reports.next("started")
    assert where == c.node_name and remote2 != remote1


async def test_stopping_and_restarting_a_remote_child(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(a)
    start = partial(gen_server.start_link, Counter, 0, reports.pid, node=b.node_name)
    sup = await supervisor.start([supervisor.ChildSpec("worker", start)], runtime=a)
    _, first, _ = await reports.next("started")

    await supervisor.terminate_child(sup, "worker", runtime=a)
    # The child on b got the shutdown signal from its supervisor and ran terminate.
    assert await reports.next("terminate") == ("terminate", first, SHUTDOWN)
    assert not b.is_alive(first)
    second = await supervisor.restart_child(sup, "worker", runtime=a)
    assert second.node == b.node_name and second != first
    assert await gen_server.call(second, "get", runtime=a) == 0

    await a.exit(sup, SHUTDOWN)
    assert await reports.next("terminate") == ("terminate", second, SHUTDOWN)


async def test_a_remote_child_that_crashes_is_restarted_with_the_crash_as_reason(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_cluster(2)
    reports = await Reports.on(a)
    start = partial(gen_server.start_link, Counter, 0, reports.pid, node=b.node_name)
    await supervisor.start([supervisor.ChildSpec("worker", start)], runtime=a)
    _, first, _ = await reports.next("started")
    with pytest.raises(gen_server.CallError):
        await gen_server.call(first, "crash", runtime=a)
    _, second, where = await reports.next("started")
    assert where == b.node_name and second != first
    assert restart_logged(caplog, "worker", CRASH)


async def test_a_plain_remote_process_that_dies_at_once_is_seen_by_its_supervisor(
    make_cluster: ClusterFactory,
) -> None:
    # Regression: a remote spawn_link's link was recorded only when the
    # spawner resumed, after the EXIT of a child that died at once had been
    # read from the same chunk and ignored; the supervisor never noticed.
    a, b = await make_cluster(2)
    start = partial(process.spawn_link, "behaviour_procs:boom", node=b.node_name)
    sup = await supervisor.start(
        [supervisor.ChildSpec("boom", start)], max_restarts=2, max_seconds=60, runtime=a
    )
    # Each start dies at once; the third restart exceeds the intensity.
    assert await down_reason(a, sup) is SHUTDOWN


async def test_a_dynamic_supervisor_starts_children_on_the_nodes_it_is_told(
    make_cluster: ClusterFactory,
) -> None:
    a, b, c = await make_cluster(3)
    reports = await Reports.on(a)

    async def start(node: str) -> Pid:
        if node == "bad":
            raise ValueError("no node called bad")
        return await gen_server.start_link(Counter, 0, reports.pid, node=node)

    sup = await supervisor.start(
        [supervisor.ChildSpec("w", start, restart=supervisor.TEMPORARY)],
        strategy=supervisor.SIMPLE_ONE_FOR_ONE,
        name="pool",
        runtime=a,
    )
    on_b = await supervisor.start_child(sup, [b.node_name], runtime=a)
    # Asked from node c, by (name, node); the child goes where c says.
    on_c = await supervisor.start_child(("pool", a.node_name), [c.node_name], runtime=c)
    assert (on_b.node, on_c.node) == (b.node_name, c.node_name)
    # A failure reason that is an exception reaches a caller on another node
    # as its text (an exception cannot travel), and the supervisor lives on.
    with pytest.raises(supervisor.SupervisorError) as e:
        await supervisor.start_child(("pool", a.node_name), ["bad"], runtime=c)
    assert e.value.reason == "ValueError: no node called bad"
    with pytest.raises(supervisor.SupervisorError) as e:
        await supervisor.start_child(sup, ["bad"], runtime=a)
    assert isinstance(e.value.reason, ValueError)  # a local caller gets the exception
    await crash(b)
    # Node a delivers the DOWN below in the same step as the supervisor's
    # EXIT, so the supervisor has the EXIT before the call that follows.
    assert await down_reason(a, on_b) is NOCONNECTION
    # A temporary child lost with its node is forgotten; the other stays.
    counts = await supervisor.count_children(sup, runtime=a)
    assert (counts.specs, counts.active) == (1, 1)
    children = await supervisor.which_children(sup, runtime=a)
    assert [ch.pid for ch in children] == [on_c]


@pytest.fixture(autouse=True)
def _quiet_supervisor_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="otpylib._supervisor_server")
