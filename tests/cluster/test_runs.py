"""Runs: a burst of messages of one shape to one pid travels as one SendRun frame.

What must hold whatever the batching: per-pair order of messages and
signals, an unencodable message raising at its sender without taking the
rest of the run with it, a bad item dropping only itself at the receiver,
and no run sent to a peer that did not say it reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from cluster_helpers import DEADLINE, collector, run_in
from raw_peer import authenticated
from waiting import wait_until

from otpylib import EXIT, process
from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol import control
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import EncodeError
from otpylib_dist.protocol.framing import TICK, FrameReader
from otpylib_dist.protocol.handshake import Flags
from otpylib_dist.protocol.shapes import FLAT_SHAPES

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
COOKIE = "cluster-test-cookie"
MSG = atom.ensure("msg")


async def test_bursts_to_two_pids_and_signals_between_keep_their_order(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    first, first_done = await collector(b, 301)
    second, second_done = await collector(b, 300)

    async def burst() -> None:
        await process.link(first)
        for i in range(300):
            await process.send(first if i % 100 < 60 else second, (MSG, i))
        await process.exit(first, "after the burst")  # a signal after 300 messages
        for i in range(300, 600):
            await process.send(second if i % 100 < 60 else first, (MSG, i))

    await run_in(a, burst)
    got_first = await asyncio.wait_for(first_done, DEADLINE)
    got_second = await asyncio.wait_for(second_done, DEADLINE)
    exit_at = next(i for i, m in enumerate(got_first) if m[0] is EXIT)
    before = [m[1] for m in got_first[:exit_at]]
    assert before == [i for i in range(300) if i % 100 < 60]  # all before the signal, in order
    assert [m[1] for m in got_second] == sorted(m[1] for m in got_second)
    assert len(got_second) == 300


class NotSendable:
    pass


def _message(size: int, i: Any) -> tuple[Any, ...]:
    """A message of ``size`` elements carrying ``i``: (msg, i) or (msg, i, "x", 1.5)."""
    return (MSG, i) if size == 2 else (MSG, i, "x", 1.5)


@pytest.mark.parametrize("by_name", [False, True], ids=["pid", "name"])
@pytest.mark.parametrize("size", [2, 4])  # 4: Outgoing.send_message's inlined fast path
async def test_an_unencodable_message_raises_and_its_run_neighbours_arrive(
    make_cluster: ClusterFactory, size: int, by_name: bool
) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 5)
    if by_name:
        await b.register("runs_sink", sink)
    to: Any = ("runs_sink", b.node_name) if by_name else sink

    async def burst() -> Any:
        await process.send(to, _message(size, 0))  # leaves at once; the rest are batched
        await process.send(to, _message(size, 1))
        with pytest.raises(EncodeError):
            await process.send(to, _message(size, NotSendable()))
        await process.send(to, _message(size, 2))
        # An int past 64 bits cannot go in the run: it leaves as a Send of its own.
        await process.send(to, _message(size, 2**70))
        await process.send(to, _message(size, 3))

    await run_in(a, burst)
    want = [_message(size, i) for i in (0, 1, 2, 2**70, 3)]
    assert await asyncio.wait_for(done, DEADLINE) == want


@pytest.mark.parametrize("by_name", [False, True], ids=["pid", "name"])
async def test_a_burst_longer_than_a_run_arrives_whole_and_in_order(
    make_cluster: ClusterFactory, by_name: bool
) -> None:
    # 20,000 messages of ~30 bytes fill several runs (RUN_BYTES each) and the
    # high-water mark: the message that crosses a run's end, and the drain,
    # take the whole path from the fast one.
    count = 20_000
    a, b = await make_cluster(2)
    sink, done = await collector(b, count)
    if by_name:
        await b.register("runs_sink", sink)
    to: Any = ("runs_sink", b.node_name) if by_name else sink

    async def burst() -> Pid:
        me = process.self()
        for i in range(count):
            await process.send(to, (MSG, me, i, "payload"))
        return me

    me = await run_in(a, burst)
    got = await asyncio.wait_for(done, DEADLINE)
    assert got == [(MSG, me, i, "payload") for i in range(count)]


async def test_a_message_to_a_pid_of_an_earlier_incarnation_is_dropped_but_still_checked(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 2)
    stale = Pid(b.node_name, sink.id, b.creation ^ 1)  # the same id, another incarnation

    async def send() -> None:
        await process.send(sink, (MSG, 0))
        await process.send(stale, (MSG, "lost"))  # dropped, as Erlang drops it
        with pytest.raises(EncodeError):  # an unencodable message raises all the same
            await process.send(stale, (MSG, NotSendable()))
        await process.send(sink, (MSG, 1))

    await run_in(a, send)
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, 0), (MSG, 1)]


async def _raw_peer(
    node: DistributedBackend, flags: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """An authenticated raw peer with the given capability flags."""
    name = f"raw{flags}@127.0.0.1"
    reader, writer = await authenticated(node, name, COOKIE, flags=flags)
    return reader, writer, name


async def _frames_from(node: DistributedBackend, flags: int, count: int) -> list[type]:
    """Kinds of the frames ``node`` sends a raw peer for a burst of ``count`` messages."""
    reader, writer, name = await _raw_peer(node, flags)
    to = Pid(name, 1, 7)  # a pid of the raw peer (creation 7, as in its Hello)

    async def burst() -> None:
        for i in range(count):
            await process.send(to, (MSG, i))

    await run_in(node, burst)
    frames = FrameReader(1 << 26)
    decoder = control.ControlDecoder()
    kinds: list[type] = []
    messages = 0
    while messages < count:
        frames.receive_data(await asyncio.wait_for(reader.read(65536), DEADLINE))
        for frame in frames.frames():
            if frame is TICK:
                continue
            msg = decoder.decode(frame)
            kinds.append(type(msg))
            messages += (
                len(msgspec.msgpack.decode(msg.items)) if type(msg) is control.SendRun else 1
            )
    writer.close()
    return kinds


async def test_runs_go_only_to_peers_that_read_them(make_cluster: ClusterFactory) -> None:
    (node,) = await make_cluster(1)
    with_runs = await _frames_from(node, int(Flags.RUNS), 200)
    without = await _frames_from(node, 0, 200)
    assert control.SendRun in with_runs and len(with_runs) < 200
    assert set(without) == {control.Send} and len(without) == 200


async def test_a_bad_item_in_a_run_drops_only_itself(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    (node,) = await make_cluster(1)
    sink, done = await collector(node, 2)
    _reader, writer, _name = await _raw_peer(node, int(Flags.RUNS))
    encoder = ControlEncoder()
    out = bytearray()
    encoder.send_into(sink, (MSG, 0), out)  # caches the (ax) shape
    shape = FLAT_SHAPES[(type(MSG), int)]
    good = [msgspec.msgpack.encode(("msg", i)) for i in (1, 2)]
    bad = msgspec.msgpack.encode(("msg", msgspec.msgpack.Ext(99, b"?")))
    items = b"\x93" + good[0] + bad + good[1]
    out = bytearray()
    encoder.encode_into(control.SendRun(sink, shape, msgspec.Raw(items)), out)
    writer.write(bytes(out))
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, 1), (MSG, 2)]
    await wait_until(lambda: "dropped a message" in caplog.text, "the bad item logged")
    assert node.nodes(hidden=True)  # the connection stays
    writer.close()


async def test_the_first_message_of_a_step_is_written_before_send_returns(
    make_cluster: ClusterFactory,
) -> None:
    """One event-loop pass per hop: the frame is handed to the transport inside ``send``.

    Only later messages of the same step are batched (and written at the end of the
    step), so a reply never waits a loop iteration for its write.
    """
    a, b = await make_cluster(2)
    sink, done = await collector(b, 2)
    assert await a.connect(b.node_name)
    conn = a.connections.up[b.node_name]

    async def send() -> tuple[int, int, int]:
        await asyncio.sleep(0)  # start a fresh loop step: no batch open
        before = conn.bytes_out
        first = process.send(sink, (MSG, 0))
        after_first = conn.bytes_out
        second = process.send(sink, (MSG, 1))
        after_second = conn.bytes_out
        await first
        await second
        return before, after_first, after_second

    before, after_first, after_second = await run_in(a, send)
    assert after_first > before  # written at once
    assert after_second == after_first  # batched until the end of the step
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, 0), (MSG, 1)]


async def test_peer_counters_count_every_message_of_a_run(make_cluster: ClusterFactory) -> None:
    # Run items are counted by the encoder, not per message by the
    # connection: a burst's statistics must still add up on both sides.
    a, b = await make_cluster(2)
    sink, done = await collector(b, 1000)

    async def burst() -> None:
        for i in range(1000):
            await process.send(sink, (MSG, i))

    await run_in(a, burst)
    assert len(await asyncio.wait_for(done, DEADLINE)) == 1000
    [sent] = [p for p in a.peer_statistics() if p.peer == b.node_name]
    [got] = [p for p in b.peer_statistics() if p.peer == a.node_name]
    assert sent.messages_out == 1000
    assert got.messages_in == 1000


async def test_a_message_after_signals_takes_them_along_at_once(
    make_cluster: ClusterFactory,
) -> None:
    """A call is a monitor then a message: both leave in one write, inside ``send``."""
    a, b = await make_cluster(2)
    sink, done = await collector(b, 2)
    assert await a.connect(b.node_name)
    conn = a.connections.up[b.node_name]

    async def call_like() -> tuple[int, int, int, Any]:
        await asyncio.sleep(0)  # a fresh loop step: no batch open
        before = conn.bytes_out
        monitoring = process.runtime().monitor(sink)  # a plain def: queued here
        after_signal = conn.bytes_out
        sending = process.send(sink, (MSG, 0))
        after_message = conn.bytes_out
        ref = await monitoring
        await sending
        await process.send(sink, (MSG, 1))
        return before, after_signal, after_message, ref

    before, after_signal, after_message, ref = await run_in(a, call_like)
    assert after_signal == before  # the monitor alone waits for company
    assert after_message > before  # the message takes it along at once
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, 0), (MSG, 1)]
    assert ref is not None


async def test_a_run_that_fills_up_is_written_at_once(make_cluster: ClusterFactory) -> None:
    """A burst reaches the wire run by run (RUN_BYTES), not at the end of its loop step.

    Otherwise the peer would wait, idle, for the high-water mark (1 MiB).
    """
    a, b = await make_cluster(2)
    count = 20_000
    sink, done = await collector(b, count)
    assert await a.connect(b.node_name)
    conn = a.connections.up[b.node_name]

    async def burst() -> tuple[int | None, bool]:
        await asyncio.sleep(0)  # a fresh loop step
        stepped = asyncio.Event()
        asyncio.get_running_loop().call_soon(stepped.set)  # set once the step ends
        await process.send(sink, _message(4, 0))  # written at once, opens the batch
        base = conn.bytes_out
        written_at = None
        for i in range(1, count):
            sending = process.send(sink, _message(4, i))
            if written_at is None and conn.bytes_out > base:
                written_at, in_step = i, not stepped.is_set()
            await sending
        return written_at, in_step

    written_at, in_step = await run_in(a, burst)
    assert written_at is not None and written_at < count // 2  # ~3,000 messages of ~22 bytes
    assert in_step  # written inside send, before the step ended
    assert await asyncio.wait_for(done, DEADLINE) == [_message(4, i) for i in range(count)]
