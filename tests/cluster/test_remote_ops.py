"""Remote send, link, monitor, exit and spawn between nodes in one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, node_events, run_in
from waiting import wait_until, watch

from otpylib import process
from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILLED,
    NOCONNECTION,
    NODEDOWN,
    NODEUP,
    NOPROC,
    NORMAL,
    atom,
)
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend
from otpylib_dist.errors import RemoteSpawnError
from otpylib_dist.protocol.errors import EncodeError

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]

PING = atom.ensure("ping")


async def test_registered_send_and_reply_keep_atoms_pids_and_tuples(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    await b.spawn("cluster_procs:echo", name="echo")

    async def ask() -> Any:
        me = process.self()
        await process.send(("echo", b.node_name), (me, (PING, me, 7, "hi", b"\x00")))
        return await process.receive(timeout=5), me

    reply, me = await run_in(a, ask)
    assert reply == ("echo", (PING, me, 7, "hi", b"\x00"))
    assert reply[1][0] is PING
    assert type(reply[1][1]) is Pid and reply[1][1].node == a.node_name


async def test_messages_sent_before_connection_is_up_arrive_in_order(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    got: list[int] = []
    all_in = asyncio.Event()

    async def sink() -> None:
        while len(got) < 500:
            got.append(await process.receive())
        all_in.set()

    sink_pid = await b.spawn(sink)
    assert a.nodes() == []

    async def blast() -> None:
        for i in range(500):
            await process.send(sink_pid, i)

    await run_in(a, blast)
    await asyncio.wait_for(all_in.wait(), 10)
    assert got == list(range(500))
    assert a.nodes() == [b.node_name]
    assert b.nodes() == [a.node_name]


async def test_remote_link_fires_noconnection_once_when_connection_is_lost(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    remote = await b.spawn("cluster_procs:sleeper")
    remote_down = await watch(b, remote)

    def linked_on_b() -> bool:
        info = b.process_info(remote)
        return info is not None and bool(info.links)

    async def linker() -> list[Any]:
        await process.link(remote)
        await process.send(remote, "hello")
        await wait_until(linked_on_b, "the link reached b")
        await a.disconnect(b.node_name)
        first = await process.receive(timeout=5)
        # The point: no second EXIT, so some time must pass with nothing coming.
        with pytest.raises(TimeoutError):
            await process.receive(timeout=0.3)
        return [first]

    msgs = await run_in(a, linker, trap_exits=True)
    assert msgs == [(EXIT, remote, NOCONNECTION)]
    # b's side of the link fired too: the sleeper did not trap, so it died of it.
    assert await asyncio.wait_for(remote_down, DEADLINE) is NOCONNECTION
    assert not b.is_alive(remote)


async def test_remote_monitor_reports_exit_reasons(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)

    async def watch() -> list[Any]:
        crasher = await b.spawn("cluster_procs:crash_when_told", args=["bad"])
        normal = await b.spawn("cluster_procs:end_when_told")
        r1 = await process.monitor(crasher)
        r2 = await process.monitor(normal)
        # Told after the monitors: both travel the one connection, in order.
        await process.send(crasher, "go")
        await process.send(normal, "go")
        downs = [await process.receive(timeout=5), await process.receive(timeout=5)]
        return [*sorted(downs, key=lambda d: d[1] != r1), r1, r2, crasher, normal]

    d1, d2, r1, r2, crasher, normal = await run_in(a, watch)
    assert d1[:3] == (DOWN, r1, crasher)
    assert "ValueError" in str(d1[3]) and "bad" in str(d1[3])
    assert d2 == (DOWN, r2, normal, NORMAL)


async def test_link_and_monitor_to_dead_or_unknown_remote_pid_give_noproc(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    await a.connect(b.node_name)
    unknown = Pid(b.node_name, 999_999, b.creation)
    stale = Pid(b.node_name, 1, b.creation ^ 1)

    async def probe() -> list[Any]:
        out = []
        for pid in (unknown, stale):
            ref = await process.monitor(pid)
            out.append(await process.receive(timeout=5) == (DOWN, ref, pid, NOPROC))
            await process.link(pid)
            out.append(await process.receive(timeout=5) == (EXIT, pid, NOPROC))
        return out

    assert await run_in(a, probe, trap_exits=True) == [True, True, True, True]


async def test_exit_kill_across_nodes_is_untrappable(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    target = await b.spawn("cluster_procs:sleeper", trap_exits=True)

    async def killer() -> Any:
        ref = await process.monitor(target)
        await process.exit(target, "kill")
        return await process.receive(timeout=5), ref

    down, ref = await run_in(a, killer)
    assert down == (DOWN, ref, target, KILLED)


async def test_monitor_nodes_sees_nodeup_then_nodedown_with_reason(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def watcher() -> list[Any]:
        await a.monitor_nodes(True)
        await a.connect(b.node_name)
        up = await process.receive(timeout=5)
        await a.disconnect(b.node_name)
        down = await process.receive(timeout=5)
        return [up, down]

    up, down = await run_in(a, watcher)
    assert up == (NODEUP, b.node_name)
    assert down == (NODEDOWN, b.node_name, {"reason": atom.ensure("disconnect")})


async def test_monitor_node_on_unreachable_node_delivers_nodedown_at_once(
    make_cluster: ClusterFactory,
) -> None:
    (a,) = await make_cluster(1)
    a.add_address("ghost@127.0.0.1", "127.0.0.1", 1)  # nothing listens on port 1

    async def watcher() -> Any:
        await a.monitor_node("ghost@127.0.0.1")
        return await process.receive(timeout=10)

    assert await run_in(a, watcher) == (NODEDOWN, "ghost@127.0.0.1")


async def test_remote_spawn_link_and_refusal(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)

    async def parent() -> Any:
        child = await process.spawn_link(
            "cluster_procs:crash_when_told", ["child failed"], node=b.node_name
        )
        assert child.node == b.node_name
        await process.send(child, "go")
        return child, await process.receive(timeout=5)

    child, msg = await run_in(a, parent, trap_exits=True)
    assert msg[0] is EXIT and msg[1] == child and "child failed" in str(msg[2])

    with pytest.raises(RemoteSpawnError, match=r"no_such_module"):
        await a.spawn("no_such_module:fn", node=b.node_name)


async def test_unencodable_message_raises_at_sender(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    sink = await b.spawn("cluster_procs:sleeper")

    async def bad() -> None:
        await process.send(sink, lambda: 1)

    with pytest.raises(EncodeError, match=r"function"):
        await run_in(a, bad)


async def test_wrong_cookie_is_refused_on_both_sides(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = await make_cluster(1)
    (b,) = await make_cluster(1, cookie="another-cookie")
    caplog.set_level(logging.WARNING)
    assert await a.connect(b.node_name) is False
    assert a.nodes() == [] and b.nodes() == []
    text = caplog.text
    assert "cookie" in text
    assert "another-cookie" not in text and "cluster-test-cookie" not in text


async def test_simultaneous_connect_ends_in_one_connection(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    events = {node: await node_events(node) for node in (a, b)}
    for node in (a, b):
        await node.spawn("cluster_procs:echo", name="echo")
    ok = await asyncio.gather(a.connect(b.node_name), b.connect(a.node_name))
    assert ok == [True, True]
    for node, peer in ((a, b), (b, a)):
        up = await asyncio.wait_for(events[node].get(), DEADLINE)
        assert up == (NODEUP, peer.node_name)

        async def round_trip(peer: DistributedBackend = peer) -> Any:
            await process.send(("echo", peer.node_name), (process.self(), PING))
            return await process.receive(timeout=DEADLINE)

        # Both ways over the one connection left: it works, and the loser's
        # close (sent before these) has been handled without a nodedown.
        assert await run_in(node, round_trip) == ("echo", PING)
    assert events[a].empty() and events[b].empty()
    assert a.nodes() == [b.node_name] and b.nodes() == [a.node_name]
    assert a.connections.up[b.node_name].peer_creation == b.creation


async def test_silent_peer_is_declared_down_with_net_tick_timeout(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2, net_ticktime=1.0)

    async def watcher() -> Any:
        await a.monitor_nodes(True)
        await a.connect(b.node_name)
        await process.receive(timeout=5)  # nodeup
        # b stops reading and ticking: from a's side it went silent.
        conn = b.connections.up[a.node_name]
        conn._ticker = None
        assert conn._transport is not None
        conn._transport.pause_reading()
        return await process.receive(timeout=10)

    down = await run_in(a, watcher)
    assert down == (NODEDOWN, b.node_name, {"reason": atom.ensure("net_tick_timeout")})
