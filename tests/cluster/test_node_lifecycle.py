"""Node incarnations and the order of nodeup/nodedown around a peer's messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, node_events, run_in
from waiting import wait_until

from otpylib import process
from otpylib.runtime.atoms import DOWN, NOCONNECTION, NODEDOWN, NODEUP, NOPROC, atom
from otpylib.runtime.errors import RuntimeStateError
from otpylib_dist import DistributedBackend

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
HELLO = atom.ensure("hello")
BYE = atom.ensure("bye")


async def _registered_sink(name: str) -> None:
    await process.register(name)
    while True:
        sender, msg = await process.receive()
        await process.send(sender, (msg, process.self()))


async def test_pids_of_an_earlier_incarnation_are_dead(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    await b.spawn(_registered_sink, args=["sink"])

    async def pid_of_sink() -> Any:
        await process.send(("sink", b.node_name), (process.self(), HELLO))
        return (await process.receive(timeout=DEADLINE))[1]

    old = await run_in(a, pid_of_sink)
    port = b.port
    await b.shutdown()
    # The same name comes back on the same port: a new creation.
    b2 = DistributedBackend(b.node_name, cookie="cluster-test-cookie", port=port)
    await b2.initialize()
    try:
        assert b2.creation != old.creation
        await b2.spawn(_registered_sink, args=["sink"])
        new = await run_in(a, pid_of_sink)
        assert new.node == old.node and new.creation == b2.creation

        async def probe_old() -> Any:
            await process.send(old, (process.self(), HELLO))  # dropped, not delivered
            ref = await process.monitor(old)
            down = await process.receive(timeout=DEADLINE)
            return down, ref, a.is_alive(old), a.is_alive(new)

        down, ref, old_alive, new_alive = await run_in(a, probe_old)
        assert down == (DOWN, ref, old, NOPROC)
        assert old_alive is False and new_alive is True
    finally:
        await b2.shutdown()


async def test_nodeup_comes_before_the_first_message_and_nodedown_after_the_last(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    registered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def watcher() -> list[Any]:
        await b.monitor_nodes(True)
        await process.register("watcher")
        registered.set_result(None)
        seen: list[Any] = []
        while len(seen) < 4:
            msg = await process.receive(timeout=DEADLINE)
            is_node_event = isinstance(msg, tuple) and msg[0] in (NODEUP, NODEDOWN)
            seen.append(msg[0] if is_node_event else msg)
        return seen

    async def talker() -> None:
        # Connect and send at once, then send again and disconnect at once.
        await process.send(("watcher", b.node_name), HELLO)
        await process.send(("watcher", b.node_name), BYE)
        await a.disconnect(b.node_name)

    watching = asyncio.ensure_future(run_in(b, watcher))
    await asyncio.wait_for(registered, DEADLINE)
    await run_in(a, talker)
    assert await watching == [NODEUP, HELLO, BYE, NODEDOWN]


async def test_shutdown_asked_by_a_process_of_the_node_stops_the_whole_node(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def quitter() -> None:
        await process.receive()
        await b.shutdown()
        await asyncio.sleep(3600)  # stays alive until the shutdown signal ends it

    pid = await b.spawn(quitter)

    async def watch() -> Any:
        await a.monitor_nodes(True)
        await a.connect(b.node_name)
        up = await process.receive(timeout=DEADLINE)
        ref = await process.monitor(pid)
        await process.send(pid, "go")
        got = [await process.receive(timeout=DEADLINE), await process.receive(timeout=DEADLINE)]
        return up, ref, got

    up, ref, got = await run_in(a, watch)
    assert up == (NODEUP, b.node_name)
    assert (DOWN, ref, pid, atom.ensure("shutdown")) in got
    assert any(isinstance(m, tuple) and m[0] is NODEDOWN for m in got)
    # The node is fully stopped: nobody can connect any more.
    assert b._node_shutdown is not None
    await asyncio.wait_for(b._node_shutdown, DEADLINE)
    assert await a.connect(b.node_name) is False


async def test_a_restarted_node_replaces_its_stale_connection_at_once(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2, net_ticktime=2.0)
    await b.spawn(_registered_sink, args=["sink"])

    async def pid_of_sink() -> Any:
        await process.send(("sink", b.node_name), (process.self(), HELLO))
        return (await process.receive(timeout=DEADLINE))[1]

    old = await run_in(a, pid_of_sink)
    # b's OS process "freezes": its socket stays open but it says nothing more,
    # so a still believes in the old connection (no tick timeout for a minute).
    stale = b.connections.up[a.node_name]
    stale._ticker = None
    if stale._guard is not None:  # a frozen process's tick guard thread is frozen too
        stale._guard.close()
    assert stale._transport is not None
    stale._transport.pause_reading()
    conn = a.connections.up[b.node_name]
    # Silent for half of net_ticktime: taken for dead when a new b shows up
    # (a would declare it down by itself after net_ticktime).
    # The point of the test is this silence, so it is waited for in time.
    loop = asyncio.get_running_loop()
    await wait_until(lambda: loop.time() - conn.last_heard >= 1.1, "a heard nothing for 1.1 s")
    b2 = DistributedBackend(b.node_name, cookie="cluster-test-cookie")
    await b2.initialize()
    try:

        async def watch() -> Any:
            await a.monitor_nodes(True)
            ref = await process.monitor(old)
            assert await b2.connect(a.node_name, "127.0.0.1", a.port)
            got = [await process.receive(timeout=DEADLINE) for _ in range(3)]
            return ref, got

        ref, got = await run_in(a, watch)
        assert (DOWN, ref, old, atom.ensure("noconnection")) in got
        kinds = [m[0] for m in got if m[0] in (NODEUP, NODEDOWN)]
        assert kinds == [NODEDOWN, NODEUP]
        assert a.connections.up[b.node_name].peer_creation == b2.creation
    finally:
        await b2.shutdown()


async def test_repeated_connects_and_disconnects_leave_nothing_behind(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    await b.spawn(_registered_sink, args=["sink"])
    events = {node: await node_events(node) for node in (a, b)}

    async def round_trip() -> Any:
        await process.send(("sink", b.node_name), (process.self(), HELLO))
        return await process.receive(timeout=DEADLINE)

    downs: list[Any] = []

    async def watcher() -> None:
        # Monitors the sink across the connection until it drops.
        ref = await process.monitor(("sink", b.node_name))
        downs.append((ref, await process.receive(timeout=DEADLINE)))

    for i in range(30):
        await a.spawn(watcher)
        # Alternate who dials and who hangs up; sometimes both dial at once.
        if i % 3 == 2:
            assert await asyncio.gather(a.connect(b.node_name), b.connect(a.node_name)) == [
                True,
                True,
            ]
        assert (await run_in(a, round_trip))[0] == HELLO
        await (a if i % 2 else b).disconnect(b.node_name if i % 2 else a.node_name)
        # A message sent while the other side is still closing may be lost (as
        # in Erlang: only the nodedown is promised); wait until both know.
        for node, peer in ((a, b), (b, a)):
            got = [await asyncio.wait_for(events[node].get(), DEADLINE) for _ in range(2)]
            kinds = [m[:2] for m in got]  # nodedown also carries {"reason": ...}
            assert kinds == [(NODEUP, peer.node_name), (NODEDOWN, peer.node_name)], (i, got)
            assert node.nodes() == []
    assert len(downs) == 30
    assert all(msg == (DOWN, ref, ("sink", b.node_name), NOCONNECTION) for ref, msg in downs)
    for node in (a, b):
        assert node.nodes() == []
        assert node.connections.is_idle()  # no handshakes, dials or waiters left
        assert not node._requests and node._node_monitors is not None
        assert not node._node_monitors._node_subs  # no monitor_node left (monitor_nodes: ours)
        stats = node.statistics()
        assert (stats.active_links, stats.active_monitors) == (0, 0)


async def test_connect_and_rpc_before_initialize_say_what_to_do() -> None:
    node = DistributedBackend("early@127.0.0.1", cookie="c")
    # Not a silent False (no failure recorded to explain it), not "unreachable".
    with pytest.raises(RuntimeStateError, match=r"call 'await node.initialize\(\)'"):
        await node.connect("peer@127.0.0.1", "127.0.0.1", 1)
    with pytest.raises(RuntimeStateError, match=r"call 'await node.initialize\(\)'"):
        await node.rpc("peer@127.0.0.1", "ping")
