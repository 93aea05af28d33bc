"""A peer speaks only for its own pids, and remote spawn runs only async functions.

A cookie holder is trusted as in Erlang, but every signal it sends is
checked against the connection it came on: a forged sender closes that
connection (a protocol error, logged) and the signal has no effect.
Each test forges one control message on a real, authenticated connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import run_in
from waiting import wait_until

from otpylib import process
from otpylib.runtime.atoms import DOWN, EXIT, NODEDOWN, NORMAL, atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist import DistributedBackend, Node, this_node
from otpylib_dist.errors import RemoteSpawnError
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import RemoteException, encode_reason, encode_term

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]

PROTOCOL_ERROR = atom.ensure("protocol_error")


async def _watch_nodes(node: Node) -> tuple[Pid, list[Any]]:
    """A process on ``node`` that records every nodeup/nodedown it is told of."""
    seen: list[Any] = []
    ready = asyncio.Event()

    async def watcher() -> None:
        await process.runtime().monitor_nodes(True)  # type: ignore[attr-defined]
        ready.set()
        while True:
            seen.append(await process.receive())

    pid = await node.spawn(watcher)
    await ready.wait()
    return pid, seen


async def _forge(sender: Node, to: Node, message: Any) -> None:
    """Send ``message`` from ``sender`` to ``to`` on their real connection."""
    assert await sender.connect(to.node_name)
    sender.connections.up[to.node_name].send_control(message)


async def _closed_for_forgery(victim: Node, rogue: Node, seen: list[Any]) -> None:
    await wait_until(
        lambda: any(m[:2] == (NODEDOWN, rogue.node_name) for m in seen), "the nodedown"
    )
    down = next(m for m in seen if m[:2] == (NODEDOWN, rogue.node_name))
    assert down[2] == {"reason": PROTOCOL_ERROR}


async def test_an_exit_signal_forged_from_a_local_pid_is_refused(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_cluster(2)
    _, seen = await _watch_nodes(a)
    victim = await a.spawn("cluster_procs:sleeper")
    # exit(victim, normal) "from" the victim itself would end it.
    await _forge(b, a, control.Exit2(victim, victim, encode_reason(NORMAL)))
    await _closed_for_forgery(a, b, seen)
    assert a.is_alive(victim)
    assert "spoke for a pid not its own" in caplog.text


async def test_a_link_exit_forged_from_a_local_pid_neither_arrives_nor_unlinks(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    _, seen = await _watch_nodes(a)
    partner = await a.spawn("cluster_procs:sleeper")
    got: list[Any] = []

    async def trapper() -> None:
        process.flag("trap_exit", True)
        await process.link(partner)
        while True:
            got.append(await process.receive())

    victim = await a.spawn(trapper)
    await wait_until(lambda: partner in (a.process_info(victim) or _NO).links, "the link")
    await _forge(b, a, control.Exit(partner, victim, encode_reason("fake")))
    await _closed_for_forgery(a, b, seen)
    assert got == []
    info = a.process_info(victim)
    assert info is not None and partner in info.links
    # The real partner's end still reaches it.
    await a.exit(partner, "real")
    await wait_until(lambda: bool(got), "the real EXIT")
    assert got == [(EXIT, partner, "real")]


class _NoInfo:
    links: tuple[Pid, ...] = ()


_NO = _NoInfo()


async def test_a_down_with_a_guessed_ref_does_not_cancel_a_monitor_on_another_node(
    make_cluster: ClusterFactory,
) -> None:
    a, b, c = await make_cluster(3)
    _, seen = await _watch_nodes(a)
    watched = await c.spawn("cluster_procs:sleeper")
    got: list[Any] = []
    refs: list[Ref] = []

    async def owner() -> None:
        refs.append(await process.monitor(watched))
        while True:
            got.append(await process.receive())

    me = await a.spawn(owner)
    await wait_until(lambda: bool(refs), "the monitor")
    # b answers for c's process: a DOWN b has no business sending.
    await _forge(b, a, control.MonitorExit(watched, me, refs[0], encode_reason("fake")))
    await _closed_for_forgery(a, b, seen)
    assert got == []
    await c.exit(watched, "real")
    await wait_until(lambda: bool(got), "the real DOWN")
    assert got == [(DOWN, refs[0], watched, "real")]


async def test_a_monitor_request_owned_by_a_local_pid_is_refused(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    _, seen = await _watch_nodes(a)
    target = await a.spawn("cluster_procs:sleeper")
    local_owner = await a.spawn("cluster_procs:sleeper")
    await _forge(b, a, control.Monitor(local_owner, target, b.make_ref()))
    await _closed_for_forgery(a, b, seen)
    info = a.process_info(target)
    assert info is not None and info.monitored_by == ()


async def test_an_unlink_forged_from_a_local_pid_leaves_the_link(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    _, seen = await _watch_nodes(a)
    partner = await a.spawn("cluster_procs:sleeper")
    linked = asyncio.Event()

    async def link_them() -> None:
        await process.link(partner)
        linked.set()
        await process.receive(match=lambda m: False)

    victim = await a.spawn(link_them)
    await linked.wait()
    await _forge(b, a, control.Unlink(partner, victim))
    await _closed_for_forgery(a, b, seen)
    info = a.process_info(victim)
    assert info is not None and partner in info.links


async def test_a_spawn_request_in_a_local_pids_name_is_refused(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    _, seen = await _watch_nodes(a)
    local = await a.spawn("cluster_procs:sleeper")
    before = set(a.processes())
    # spawn_link "from" a local process would tie a peer's child to it.
    await _forge(
        b,
        a,
        control.SpawnRequest(
            ref=b.make_ref(),
            sender=local,
            function="cluster_procs:sleeper",
            args=encode_term(((), {})),
            link=True,
        ),
    )
    await _closed_for_forgery(a, b, seen)
    assert set(a.processes()) == before
    info = a.process_info(local)
    assert info is not None and info.links == ()


async def test_signals_from_the_peers_own_pids_still_work(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    target = await a.spawn("cluster_procs:sleeper")

    async def killer() -> None:
        await process.exit(target, "bye")

    await run_in(b, killer)
    await wait_until(lambda: not a.is_alive(target), "the exit")
    assert b.node_name in a.nodes()


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("time:sleep", r"'time:sleep' is not an async function; remote spawn runs only those"),
        ("os:system", r"'os:system' is not an async function; remote spawn runs only those"),
        ("sys:exit", r"'sys:exit' is not an async function; remote spawn runs only those"),
    ],
)
async def test_remote_spawn_refuses_plain_functions(
    make_cluster: ClusterFactory, function: str, error: str
) -> None:
    a, b = await make_cluster(2)
    with pytest.raises(RemoteSpawnError, match=error) as refused:
        await a.spawn(function, [1], node=b.node_name)
    assert refused.value.reason[0] == "not_async"
    assert await a.ping(b.node_name)


async def test_the_spawn_allow_list_narrows_what_peers_may_run(
    make_cluster: ClusterFactory,
) -> None:
    (a,) = await make_cluster(1)
    (b,) = await make_cluster(1, spawn_allow=("behaviour_procs",))
    a.add_address(b.node_name, "127.0.0.1", b.port)
    with pytest.raises(RemoteSpawnError, match=r"not in this node's spawn allow-list") as no:
        await a.spawn("cluster_procs:sleeper", node=b.node_name)
    assert no.value.reason[0] == "not_allowed"
    pid = await a.spawn("behaviour_procs:boom", node=b.node_name)
    assert pid.node == b.node_name


async def test_a_process_raising_systemexit_does_not_end_the_node(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def body() -> Any:
        _, ref = await process.spawn_monitor("cluster_procs:exit_program", node=b.node_name)
        return await process.receive(timeout=5, match=lambda m: m[0] is DOWN and m[1] == ref)

    down = await run_in(a, body)
    assert down[3] == RemoteException("builtins.SystemExit", "3")  # its reason, sent over
    assert await a.ping(b.node_name)
    assert b.is_alive(await b.spawn("cluster_procs:sleeper"))


async def test_this_node_reaches_node_operations_from_a_process(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def body() -> bool:
        return await this_node().ping(b.node_name)

    assert await run_in(a, body) is True
    with pytest.raises(TypeError, match=r"runs on a local runtime, not a node"):
        from otpylib import Runtime

        async with Runtime() as rt:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            async def plain() -> None:
                try:
                    this_node()
                except TypeError as exc:
                    done.set_exception(exc)

            await rt.spawn(plain)
            await done


async def test_nodes_monitor_subscriptions_end_with_their_process(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    (a,) = await make_cluster(1)

    async def subscribe_and_die() -> None:
        await this_node().monitor_nodes(True)
        await this_node().monitor_node("nowhere@127.0.0.1")  # fails at once: one nodedown

    for _ in range(1000):
        await run_in(a, subscribe_and_die)
    monitors = a._node_monitors
    assert monitors is not None
    # Swept as the table grows: bounded by a small multiple of the live ones (none).
    assert len(monitors) <= 2 * 16 + 2


async def test_the_allow_list_applies_to_a_remote_gen_server_class(
    make_cluster: ClusterFactory,
) -> None:
    from behaviour_procs import Counter

    from otpylib import gen_server

    (a,) = await make_cluster(1)
    (b,) = await make_cluster(1, spawn_allow=("cluster_procs",))
    a.add_address(b.node_name, "127.0.0.1", b.port)

    async def start() -> Any:
        return await gen_server.start(Counter, 0, None, node=b.node_name)

    with pytest.raises(gen_server.StartError, match=r"not in this node's spawn allow-list"):
        await run_in(a, start)
