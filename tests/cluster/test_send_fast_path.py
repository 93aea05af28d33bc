"""The remote send fast path under stress: ``process.send`` -> ``RemoteChannel.send_message``.

A message that continues the open run is appended by the connection itself,
and a run that fills up is written at once (``outgoing.py``). What must
still hold across bursts longer than a run: signals keep their place among
messages, pid and name sends of one sender keep their order, large and
oversize items leave the run without reordering it, a paused peer bounds
the sender's memory, and targets of our own node behave as before. (Written
by a review of that change, as probes that fail if those claims break.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, collector, run_in
from waiting import wait_until

from otpylib import EXIT, process
from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend
from otpylib_dist.connection import TRANSPORT_HIGH_WATER
from otpylib_dist.protocol.errors import EncodeError
from otpylib_dist.protocol.fragments import FRAGMENT_ABOVE

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
MSG = atom.ensure("msg")
COUNT = 20_000


def _small(me: Any, i: int) -> tuple[Any, ...]:
    return (MSG, me, i, b"p")


async def test_exit_signals_in_the_middle_of_long_bursts_keep_their_place(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    marks = {3000, 3001, 9999, 15000}
    sink, done = await collector(b, COUNT + len(marks))

    async def burst() -> Any:
        me = process.self()
        for i in range(COUNT):
            if i in marks:
                await process.exit(sink, ("mark", i))
            await process.send(sink, _small(me, i))
        return me

    me = await run_in(a, burst)
    got = await asyncio.wait_for(done, DEADLINE)
    want: list[Any] = []
    for i in range(COUNT):
        if i in marks:
            want.append(("mark", i))
        want.append(_small(me, i))
    norm = [(m[2] if m[0] is EXIT else m) for m in got]
    assert norm == want


async def test_pid_and_name_sends_interleaved_in_a_long_burst(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, COUNT)
    await b.register("rv_sink", sink)

    async def burst() -> Any:
        me = process.self()
        by_name = ("rv_sink", b.node_name)
        for i in range(COUNT):
            await process.send(by_name if i % 7 < 3 else sink, _small(me, i))
        return me

    me = await run_in(a, burst)
    assert await asyncio.wait_for(done, DEADLINE) == [_small(me, i) for i in range(COUNT)]


async def test_two_bursting_senders_each_keep_their_order(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 2 * COUNT)
    await b.register("rv_sink", sink)

    async def burst(by_name: bool) -> Any:
        me = process.self()
        to: Any = ("rv_sink", b.node_name) if by_name else sink
        for i in range(COUNT):
            await process.send(to, _small(me, i))
            if i % 997 == 0:
                await asyncio.sleep(0)
        return me

    one, two = await asyncio.gather(run_in(a, burst, False), run_in(a, burst, True))
    got = await asyncio.wait_for(done, DEADLINE)
    assert [m[2] for m in got if m[1] == one] == list(range(COUNT))
    assert [m[2] for m in got if m[1] == two] == list(range(COUNT))


@pytest.mark.parametrize("by_name", [False, True], ids=["pid", "name"])
async def test_large_messages_in_the_middle_of_a_burst_keep_their_place(
    make_cluster: ClusterFactory, by_name: bool
) -> None:
    a, b = await make_cluster(2)
    big_at = {1, 2, 5000, 5001, 12345}
    sink, done = await collector(b, COUNT)
    await b.register("rv_sink", sink)
    big = b"x" * (300 << 10)  # fragments (over FRAGMENT_ABOVE), same element types

    async def burst() -> Any:
        me = process.self()
        to: Any = ("rv_sink", b.node_name) if by_name else sink
        for i in range(COUNT):
            await process.send(to, (MSG, me, i, big if i in big_at else b"p"))
        return me

    await run_in(a, burst)
    got = await asyncio.wait_for(done, DEADLINE * 2)
    assert [m[2] for m in got] == list(range(COUNT))
    assert [m[2] for m in got if len(m[3]) > 1] == sorted(big_at)


async def test_message_over_the_limit_in_a_run_raises_and_the_rest_arrive(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2, max_message_size=FRAGMENT_ABOVE)
    sink, done = await collector(b, 3000)
    too_big = b"x" * (FRAGMENT_ABOVE + 100)

    async def burst() -> Any:
        me = process.self()
        raised = 0
        for i in range(3000):
            await process.send(sink, _small(me, i))
            if i % 1000 == 500:
                with pytest.raises(EncodeError):
                    await process.send(sink, (MSG, me, -1, too_big))
                raised += 1
            if i % 1000 == 700:  # an int beyond 64 bits: a plain Send mid-run
                await process.send(sink, (MSG, me, 2**70, b"p"))
        return me, raised

    me, raised = await run_in(a, burst)
    assert raised == 3
    got = await asyncio.wait_for(done, DEADLINE)
    want: list[Any] = []
    for i in range(3000):
        want.append(_small(me, i))
        if i % 1000 == 700:
            want.append((MSG, me, 2**70, b"p"))
    assert got == want[:3000]


async def test_small_messages_to_a_paused_peer_stay_bounded(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    count = 400_000
    sink, done = await collector(b, count)
    assert await a.connect(b.node_name)
    b_side = b.connections.up[a.node_name]
    assert b_side._transport is not None
    b_side._transport.pause_reading()
    conn = a.connections.up[b.node_name]
    sent = 0
    peak = 0

    async def sender() -> None:
        nonlocal sent, peak
        me = process.self()
        for i in range(count):
            await process.send(sink, (MSG, me, i, b"y" * 100))
            sent += 1
            assert conn._transport is not None
            peak = max(peak, len(conn._out) + conn._transport.get_write_buffer_size())

    await a.spawn(sender)
    await wait_until(lambda: bool(conn._drain_waiters), "the sender to wait for room")
    stalled_at = sent
    await asyncio.sleep(0.3)
    assert sent == stalled_at < count
    assert peak <= TRANSPORT_HIGH_WATER + (128 << 10), peak
    b_side._transport.resume_reading()
    got = await asyncio.wait_for(done, DEADLINE * 3)
    assert [m[2] for m in got] == list(range(count))


async def test_stale_pid_four_tuple_unencodable_raises(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 3)
    stale = Pid(b.node_name, sink.id, b.creation ^ 1)

    class NotSendable:
        pass

    async def send() -> None:
        await process.send(sink, (MSG, 0, "x", 1.5))
        await process.send(sink, (MSG, 1, "x", 1.5))  # opens a run to sink
        await process.send(stale, (MSG, 9, "x", 1.5))  # dropped
        with pytest.raises(EncodeError):
            await process.send(stale, (MSG, NotSendable(), "x", 1.5))
        await process.send(sink, (MSG, 2, "x", 1.5))

    await run_in(a, send)
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, i, "x", 1.5) for i in range(3)]


async def test_burst_on_a_blocked_loop_with_the_tick_guard_arrives_whole(
    make_cluster: ClusterFactory,
) -> None:
    import time

    a, b = await make_cluster(2, net_ticktime=1.0)
    count = 6000
    sink, done = await collector(b, count + 1)
    assert await a.connect(b.node_name)
    conn = a.connections.up[b.node_name]

    async def burst() -> Any:
        me = process.self()
        for i in range(count):
            await process.send(sink, (MSG, me, i, b"z" * 100))
            if i % 200 == 0:
                time.sleep(0.03)  # the loop is blocked: the guard thread ticks
            if i == 3000:
                await process.exit(sink, "mid")
        return me

    before = conn.bytes_out
    me = await run_in(a, burst)
    got = await asyncio.wait_for(done, DEADLINE)
    norm = [m[2] if m[0] is EXIT else m for m in got]
    want: list[Any] = [(MSG, me, i, b"z" * 100) for i in range(3001)] + ["mid"]
    want += [(MSG, me, i, b"z" * 100) for i in range(3001, count)]
    assert norm == want
    assert conn.bytes_out > before
    assert a.nodes()  # still connected


async def test_tls_burst_with_signal_and_large_message_in_order(tmp_path: Any) -> None:
    from otpylib_dist.pki import generate_test_pki

    pki = generate_test_pki(tmp_path / "pki", ["a", "b"])
    b = DistributedBackend("b@127.0.0.1", cookie="c", tls=pki.config("b"), setup_time=3.0)
    await b.initialize()
    a = DistributedBackend("a@127.0.0.1", cookie="c", tls=pki.config("a"), setup_time=3.0)
    await a.initialize()
    a.add_address(b.node_name, "127.0.0.1", b.port)
    try:
        sink, done = await collector(b, COUNT + 1)
        big = b"x" * (300 << 10)

        async def burst() -> Any:
            me = process.self()
            for i in range(COUNT):
                await process.send(sink, (MSG, me, i, big if i == 7000 else b"p"))
                if i == 9000:
                    await process.exit(sink, "mid")
            return me

        await run_in(a, burst)
        got = await asyncio.wait_for(done, DEADLINE * 2)
        norm = [m[2] for m in got]
        assert norm == [*range(9001), "mid", *range(9001, COUNT)]
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_local_targets_through_process_send_on_a_connected_node(
    make_cluster: ClusterFactory,
) -> None:
    from otpylib.runtime.atoms import atom as atoms

    a, b = await make_cluster(2)
    local, local_done = await collector(a, 4)
    remote, remote_done = await collector(b, 1)
    await a.register("rv_local", local)
    await b.register("rv_remote", remote)
    assert await a.connect(b.node_name)
    dead = Pid(a.node_name, 999_999, a.creation)

    async def body() -> None:
        await process.send(dead, (MSG, "dropped"))
        await process.send(atoms.ensure("rv_local"), (MSG, 0))
        await process.send(("rv_local", a.node_name), (MSG, 1))
        await process.send(local, (MSG, 2))
        await process.send((atoms.ensure("rv_remote"), b.node_name), (MSG, "r"))

    await run_in(a, body)

    async def aliased() -> None:
        me = process.alias()
        await process.send(me, (MSG, 3))
        assert await process.receive() == (MSG, 3)

    await run_in(a, aliased)
    await process_send_outside(a, local)
    assert await asyncio.wait_for(local_done, DEADLINE) == [(MSG, i) for i in range(4)]
    assert await asyncio.wait_for(remote_done, DEADLINE) == [(MSG, "r")]


async def process_send_outside(node: DistributedBackend, to: Pid) -> None:
    await node.send(to, (MSG, 3))


async def test_not_distributed_runtime_keeps_its_send_behaviour() -> None:
    from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend
    from otpylib.runtime.errors import UnknownNameError

    rt = AsyncIOBackend()
    await rt.initialize()
    try:

        async def body() -> list[str]:
            seen = []
            await process.send(Pid("x@y", 1, 1), (MSG, 0))  # another node: dropped
            seen.append("pid")
            try:
                await process.send(("n", "x@y"), (MSG, 0))
            except UnknownNameError:
                seen.append("unknown")
            # A node name that is not a str is no target: a clear TypeError.
            try:
                await process.send(("n", ["x"]), (MSG, 0))
            except TypeError as exc:
                seen.append("typeerror" if "node's name as a str" in str(exc) else str(exc))
            return seen

        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def wrap() -> None:
            done.set_result(await body())

        await rt.spawn(wrap)
        assert await asyncio.wait_for(done, DEADLINE) == ["pid", "unknown", "typeerror"]
    finally:
        await rt.shutdown()
