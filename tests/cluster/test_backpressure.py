"""A peer that stops reading makes senders wait; memory stays bounded; nothing is lost.

Two ways a sender waits: messages of up to 256 KiB fill our buffer and the
transport's until the transport pauses us; larger ones go in fragments
(``protocol/fragments.py``) that stop when the peer stops acknowledging,
and their sender waits while over a megabyte of its own is queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE
from waiting import wait_until

from otpylib import process
from otpylib_dist import DistributedBackend
from otpylib_dist.connection import TRANSPORT_HIGH_WATER
from otpylib_dist.outgoing import HIGH_WATER

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]

#: Message sizes: whole frames, and fragmented ones. 64 MiB in all: far
#: more than the kernel's socket buffers on loopback (a few MiB each way)
#: plus our own buffers, so the sender must block.
SIZES = [(128 * 1024, 512), (1 << 20, 64)]
CHUNK, COUNT = SIZES[0]


@pytest.mark.parametrize(("chunk", "count"), SIZES, ids=["whole", "fragmented"])
async def test_sender_waits_for_a_slow_peer_and_every_message_arrives_in_order(
    make_cluster: ClusterFactory, chunk: int, count: int
) -> None:
    a, b = await make_cluster(2)
    received: list[int] = []
    all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        await process.register("sink")
        while len(received) < count:
            i, data = await process.receive()
            assert len(data) == chunk
            received.append(i)
        all_in.set_result(None)

    await b.spawn(sink)
    assert await a.connect(b.node_name)
    # b stops reading from the socket: the slow receiver.
    b_side = b.connections.up[a.node_name]
    assert b_side._transport is not None
    b_side._transport.pause_reading()

    sent = 0
    peak = 0
    conn = a.connections.up[b.node_name]

    async def sender() -> None:
        nonlocal sent, peak
        payload = b"x" * chunk
        for i in range(count):
            await process.send(("sink", b.node_name), (i, payload))
            sent += 1
            assert conn._transport is not None
            buffered = (
                len(conn._out) + conn._transport.get_write_buffer_size() + conn._outbox.pending
            )
            peak = max(peak, buffered)

    await a.spawn(sender)
    await wait_until(lambda: bool(conn._drain_waiters), "the sender to wait for room")
    stalled_at = sent
    await asyncio.sleep(0.3)  # the sender stays blocked while nobody reads
    assert sent == stalled_at < count
    bound = HIGH_WATER + TRANSPORT_HIGH_WATER + 2 * chunk
    assert peak <= bound, f"buffered {peak} bytes, more than the {bound} allowed"

    b_side._transport.resume_reading()
    await asyncio.wait_for(all_in, DEADLINE * 3)
    assert received == list(range(count))
    assert sent == count


async def test_sender_blocked_on_a_peer_that_dies_is_released(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def sink() -> None:
        await process.register("sink")
        await process.receive()
        await asyncio.sleep(3600)  # stays alive (and reads no more) until the test ends

    await b.spawn(sink)
    assert await a.connect(b.node_name)
    b_side = b.connections.up[a.node_name]
    assert b_side._transport is not None
    b_side._transport.pause_reading()
    conn = a.connections.up[b.node_name]
    finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sender() -> Any:
        payload = b"x" * CHUNK
        n = 0
        for i in range(COUNT):
            await process.send(("sink", b.node_name), (i, payload))
            n += 1
        finished.set_result(n)

    await a.spawn(sender)
    await wait_until(lambda: conn._paused, "the transport to pause the sender")
    await b.disconnect(a.node_name)
    # The connection is gone: the blocked send returns, later sends are
    # dropped (the node is reachable again only by a new connection).
    assert await asyncio.wait_for(finished, DEADLINE * 3) == COUNT
