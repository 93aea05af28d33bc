"""Large messages travel in fragments: they arrive whole and do not hold up small ones.

What must hold (``protocol/fragments.py``): a large message arrives
byte-exact; a small message of another process, sent after a large one,
does not wait for it; one process's frames (messages and signals) stay in
order behind its own large message; the size limit is enforced at both
ends with a clear outcome; a peer that did not ask for fragments gets none;
the window holds when the peer does not acknowledge; fragments that do not
add up close the connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, collector, run_in
from raw_peer import authenticated
from waiting import wait_until

from otpylib import EXIT, process
from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.errors import EncodeError
from otpylib_dist.protocol.fragments import FRAGMENT_SIZE, WINDOW
from otpylib_dist.protocol.framing import TICK, FrameReader
from otpylib_dist.protocol.handshake import Flags

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
COOKIE = "cluster-test-cookie"
MSG = atom.ensure("msg")


async def test_large_messages_arrive_whole_by_pid_and_by_name(make_cluster: ClusterFactory) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 3)
    await b.register("big_sink", sink)
    payloads = [bytes(range(256)) * 1200, b"n" * (3 << 20) + b"end", "t" * (1 << 20)]

    async def send() -> None:
        await process.send(sink, (MSG, payloads[0]))
        await process.send(("big_sink", b.node_name), (MSG, payloads[1]))
        await process.send(sink, (MSG, payloads[2]))

    await run_in(a, send)
    got = await asyncio.wait_for(done, DEADLINE)
    assert got == [(MSG, p) for p in payloads]


async def test_a_small_message_of_another_process_does_not_wait_for_a_large_one(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    arrivals: list[Any] = []
    big_sink, big_done = await collector(b, 1, arrivals)
    small_sink, small_done = await collector(b, 1, arrivals)
    big_started = asyncio.Event()

    async def big_sender() -> None:
        big_started.set()  # the send below encodes, queues and waits for room
        await process.send(big_sink, ("big", bytes(32 << 20)))

    async def small_sender() -> None:
        await big_started.wait()
        await process.send(small_sink, ("small", 1))

    await a.spawn(big_sender)
    await a.spawn(small_sender)
    await asyncio.wait_for(big_done, DEADLINE)
    await asyncio.wait_for(small_done, DEADLINE)
    assert [m[0] for m in arrivals] == ["small", "big"]


async def test_one_process_frames_stay_in_order_behind_its_large_message(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    sink, done = await collector(b, 4)

    async def sender() -> None:
        await process.link(sink)
        await process.send(sink, (MSG, "small before"))
        await process.send(sink, (MSG, bytes(4 << 20)))
        await process.send(sink, (MSG, "small after"))
        await process.exit(sink, "after the large one")  # a signal: after it too

    await run_in(a, sender)
    got = await asyncio.wait_for(done, DEADLINE)
    assert got[0] == (MSG, "small before")
    assert got[1][0] is MSG and len(got[1][1]) == 4 << 20
    assert got[2] == (MSG, "small after")
    assert got[3][0] is EXIT and got[3][2] == "after the large one"


async def test_a_message_over_max_message_size_raises_at_its_sender(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2, max_message_size=1 << 20)
    sink, done = await collector(b, 1)

    async def send() -> None:
        with pytest.raises(EncodeError, match=r"exceeds the limit of 1048576 bytes.*max_message"):
            await process.send(sink, (MSG, bytes(2 << 20)))
        await process.send(sink, (MSG, "still connected"))

    await run_in(a, send)
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, "still connected")]


async def test_a_receiver_with_a_lower_limit_drops_the_message_and_says_so(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    (a,) = await make_cluster(1, max_message_size=8 << 20)
    (b,) = await make_cluster(1, max_message_size=1 << 20)
    sink, done = await collector(b, 1)

    async def send() -> None:
        await process.send(sink, (MSG, bytes(2 << 20)))
        await process.send(sink, (MSG, "next"))

    await run_in(a, send)
    assert await asyncio.wait_for(done, DEADLINE) == [(MSG, "next")]
    await wait_until(lambda: "over max_message_size" in caplog.text, "the drop logged")
    assert a.node_name in b.nodes()


async def _raw_peer(
    node: DistributedBackend, flags: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Pid]:
    """An authenticated raw peer with ``flags``, and a pid of its own to send to."""
    name = f"raw{flags}@127.0.0.1"
    reader, writer = await authenticated(node, name, COOKIE, flags=flags)
    return reader, writer, Pid(name, 1, 7)  # creation 7, as in the raw peer's Hello


async def _read_frames(
    reader: asyncio.StreamReader, frames: FrameReader, until: Callable[[list[Any]], bool]
) -> list[Any]:
    decoder = control.ControlDecoder()
    got: list[Any] = []
    while not until(got):
        frames.receive_data(await asyncio.wait_for(reader.read(1 << 20), DEADLINE))
        got += [decoder.decode(f) for f in frames.frames() if f is not TICK]
    return got


async def test_a_peer_that_did_not_ask_for_fragments_gets_whole_frames(
    make_cluster: ClusterFactory,
) -> None:
    (node,) = await make_cluster(1)
    reader, writer, to = await _raw_peer(node, int(Flags.RUNS))

    async def send() -> None:
        await process.send(to, (MSG, bytes(1 << 20)))
        with pytest.raises(EncodeError, match="exceeds the limit of 67108864 bytes"):
            await process.send(to, (MSG, bytes(64 << 20)))

    await run_in(node, send)
    (msg,) = await _read_frames(reader, FrameReader(1 << 26), lambda got: bool(got))
    assert type(msg) is control.Send and decode_term(msg.payload) == (MSG, bytes(1 << 20))
    writer.close()


async def test_the_window_holds_until_the_peer_acknowledges_and_others_pass(
    make_cluster: ClusterFactory,
) -> None:
    (node,) = await make_cluster(1)
    reader, writer, to = await _raw_peer(node, int(Flags.RUNS | Flags.FRAGMENTS))
    payload = bytes(range(256)) * ((WINDOW + 4) * FRAGMENT_SIZE // 256)
    frames = FrameReader(1 << 26)

    def fragments(got: list[Any]) -> int:
        return sum(type(m) is control.Fragment for m in got)

    async def big() -> None:
        await process.send(to, (MSG, payload))

    await node.spawn(big)
    got = await _read_frames(reader, frames, lambda got: fragments(got) >= WINDOW)
    assert fragments(got) == WINDOW

    async def small() -> None:
        await process.send(to, (MSG, "small"))

    await run_in(node, small)
    got += await _read_frames(reader, frames, lambda more: bool(more))
    assert type(got[-1]) is control.Send  # passed the stalled large message
    assert fragments(got) == WINDOW  # and no fragment came without an acknowledgement
    total = got[0].total
    while sum(len(m.data) for m in got if type(m) is control.Fragment) < total:
        out = bytearray()  # acknowledge each window, as a receiver does
        ControlEncoder().encode_into(control.FragmentAck(WINDOW), out)
        writer.write(bytes(out))
        got += await _read_frames(reader, frames, lambda more: fragments(more) > 0)
    body = b"".join(bytes(m.data) for m in got if type(m) is control.Fragment)
    whole = control.ControlDecoder().decode(body)
    assert type(whole) is control.Send and decode_term(whole.payload) == (MSG, payload)
    writer.close()


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (Flags.FRAGMENTS, [(1, 100, b"abc"), (2, 100, b"def")]),  # another message in between
        (Flags.FRAGMENTS, [(1, 4, b"abc"), (1, 4, b"de")]),  # more than announced
        (0, [(1, 100, b"abc")]),  # fragments from a peer that did not say it sends them
    ],
)
async def test_fragments_that_do_not_add_up_close_the_connection(
    make_cluster: ClusterFactory, flags: int, fragments: list[tuple[int, int, bytes]]
) -> None:
    (node,) = await make_cluster(1)
    reader, writer, to = await _raw_peer(node, int(flags))
    await wait_until(lambda: to.node in node.nodes(), "the raw peer is up")
    out = bytearray()
    encoder = ControlEncoder()
    for seq, total, data in fragments:
        encoder.encode_into(control.Fragment(seq, total, memoryview(data)), out)
    writer.write(bytes(out))
    while await asyncio.wait_for(reader.read(65536), DEADLINE):
        pass  # the node closes the connection: EOF
    await wait_until(lambda: to.node not in node.nodes(), "the peer is down")
    writer.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_mixes_of_large_and_small_keep_every_pair_in_order(
    make_cluster: ClusterFactory, seed: int
) -> None:
    """Four senders, three receivers, sizes from 10 B to 1.5 MiB: every message
    arrives, and each (sender, receiver) pair sees its messages in sending order."""
    rng = random.Random(seed)
    a, b = await make_cluster(2)
    plans = [
        [(rng.randrange(3), rng.choice((10, 100, 5000, 300_000, 1_500_000))) for _ in range(25)]
        for _ in range(4)
    ]
    counts = [sum(1 for plan in plans for to, _ in plan if to == r) for r in range(3)]
    sinks = [await collector(b, count) for count in counts]

    async def sender(me: int) -> None:
        for i, (to, size) in enumerate(plans[me]):
            await process.send(sinks[to][0], (me, i, b"x" * size))

    for me in range(4):
        await a.spawn(sender, (me,))
    for r, (_pid, done) in enumerate(sinks):
        got = await asyncio.wait_for(done, DEADLINE * 3)
        for me in range(4):
            sent = [(i, size) for i, (to, size) in enumerate(plans[me]) if to == r]
            assert [(i, len(data)) for who, i, data in got if who == me] == sent


async def test_frames_from_outside_any_process_keep_their_order_behind_a_large_one(
    make_cluster: ClusterFactory,
) -> None:
    """Code outside any process (main) sends by pid, by name and exit signals as one
    sender: a small message by name and an exit signal wait behind its large message."""
    a, b = await make_cluster(2)
    sink, done = await collector(b, 3)
    await b.register("outside_sink", sink)
    await a.send(sink, (MSG, "large", bytes(8 << 20)))  # from main: in fragments
    await a.send(("outside_sink", b.node_name), (MSG, "small by name", b""))
    await a.exit(sink, "after both")
    got = await asyncio.wait_for(done, DEADLINE)
    assert [m[1] for m in got[:2]] == ["large", "small by name"]
    assert got[2][0] is EXIT and got[2][2] == "after both"


async def test_a_spawn_reply_is_not_held_behind_a_large_message_of_main(
    make_cluster: ClusterFactory,
) -> None:
    """A remote spawn_link's reply speaks for the child: the child's EXIT (it dies at
    once) must not overtake it while the node's main code sends a large message."""
    a, b = await make_cluster(2)
    sink, _done = await collector(a, 1)
    loop = asyncio.get_running_loop()
    sends: list[asyncio.Future[None]] = []

    def from_main() -> None:  # a fresh context: outside any process of b
        sends.append(asyncio.ensure_future(b.send(sink, (MSG, bytes(32 << 20)))))

    async def parent() -> Any:
        loop.call_soon(from_main, context=contextvars.Context())
        await asyncio.sleep(0)  # main's large message is queued first
        child = await process.spawn_link("behaviour_procs:boom", node=b.node_name)
        return child, await process.receive(timeout=DEADLINE)

    child, exit_msg = await run_in(a, parent, trap_exits=True)
    assert exit_msg[0] is EXIT and exit_msg[1] == child
    await asyncio.wait_for(sends[0], DEADLINE)


async def test_small_messages_in_the_step_of_a_large_one_stay_after_it(
    make_cluster: ClusterFactory,
) -> None:
    """A large message under the drain mark does not end its sender's step: the small
    ones after it must not form a run that overtakes it."""
    a, b = await make_cluster(2)
    sink, done = await collector(b, 4)
    assert await a.connect(b.node_name)  # up already: the four sends share one step

    async def sender() -> None:
        await process.send(sink, (MSG, 0, b"x"))
        await process.send(sink, (MSG, 1, b"x" * 300_000))
        await process.send(sink, (MSG, 2, b"x"))
        await process.send(sink, (MSG, 3, b"x"))

    await run_in(a, sender)
    got = await asyncio.wait_for(done, DEADLINE)
    assert [m[1] for m in got] == [0, 1, 2, 3]


async def test_fragments_go_on_when_the_transport_resumes(make_cluster: ClusterFactory) -> None:
    """Acknowledgements that arrive while the transport is paused (its buffer full)
    open the window, but nothing may be written: the resume must send the next fragments."""
    (node,) = await make_cluster(1)
    reader, writer, to = await _raw_peer(node, int(Flags.RUNS | Flags.FRAGMENTS))
    conn = node.connections.up[to.node]
    frames = FrameReader(1 << 26)

    def fragments(got: list[Any]) -> int:
        return sum(type(m) is control.Fragment for m in got)

    async def big() -> None:
        await process.send(to, (MSG, bytes(2 * WINDOW * FRAGMENT_SIZE)))

    await node.spawn(big)
    got = await _read_frames(reader, frames, lambda got: fragments(got) >= WINDOW)
    assert fragments(got) == WINDOW
    conn.pause_writing()  # as the transport does when its buffer is full
    written = conn.bytes_out
    out = bytearray()
    ControlEncoder().encode_into(control.FragmentAck(WINDOW), out)
    writer.write(bytes(out))
    await wait_until(lambda: conn._outbox._unacked == 0, "the acknowledgement to be read")
    await asyncio.sleep(0)  # a scheduled flush, if any, has run
    assert conn.bytes_out == written  # paused: the open window waits
    conn.resume_writing()
    more = await _read_frames(reader, frames, lambda more: fragments(more) > 0)
    assert fragments(more) > 0
    writer.close()
