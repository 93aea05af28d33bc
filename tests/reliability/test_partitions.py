"""Partitions through a relay: frozen one way or both, healed; per-pair order always holds.

Two nodes on real loopback TCP; the dialer ``a`` reaches ``b`` only through
a :class:`~tcp_relay.Relay`. A sender on ``a`` numbers its messages; the
sink on ``b`` must see a strictly increasing sequence (nothing twice,
nothing out of order, nothing replayed after a reconnect), with no gap
while the connection stayed up.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tcp_relay import Relay
from waiting import wait_until

from otpylib import process
from otpylib.runtime.atoms import NODEDOWN, NODEUP
from otpylib_dist import DistributedBackend

T = 1.0  # net_ticktime: the smallest the node allows, so the tests are short
COOKIE = "partition-cookie"


class Pair:
    """Nodes a and b, a relay from a to b, a numbered sender on a and a sink on b."""

    def __init__(self, a: DistributedBackend, b: DistributedBackend, relay: Relay) -> None:
        self.a, self.b, self.relay = a, b, relay
        self.received: list[int] = []
        self.sent = 0
        self.events: dict[str, list[Any]] = {"a": [], "b": []}
        self._stop = asyncio.Event()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        received = self.received

        async def sink() -> None:
            await process.register("sink")
            while True:
                received.append((await process.receive())[1])

        await self.b.spawn(sink)
        for key, node in (("a", self.a), ("b", self.b)):
            await node.spawn(self._watch, args=[node, self.events[key]])
        assert await self.a.connect(self.b.node_name)
        await self.a.spawn(self._send)

    async def _watch(self, node: DistributedBackend, into: list[Any]) -> None:
        await node.monitor_nodes(True)
        while True:
            into.append(await process.receive())

    async def _send(self) -> None:
        try:
            while not self._stop.is_set():
                await process.send(("sink", self.b.node_name), ("seq", self.sent))
                self.sent += 1
                await asyncio.sleep(0.002)
        finally:
            self._done.set_result(None)

    async def settle(self, count: int) -> None:
        """Wait until the sink has ``count`` more messages than now."""
        target = len(self.received) + count
        for _ in range(2000):
            if len(self.received) >= target:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"sink stuck at {len(self.received)} messages")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._done, 10)
        await asyncio.sleep(0.2)  # what is in flight arrives

    async def all_arrived(self) -> None:
        """Wait (generously) until every message sent has reached the sink."""
        await wait_until(lambda: len(self.received) >= self.sent, "every message at the sink", 30)

    def downs(self, key: str) -> list[Any]:
        return [e for e in self.events[key] if e[0] == NODEDOWN]

    def check_order(self) -> None:
        got = self.received
        assert got, "nothing arrived"
        assert all(x < y for x, y in itertools.pairwise(got)), "duplicate or reordered"


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a = DistributedBackend("a@127.0.0.1", cookie=COOKIE, net_ticktime=T, setup_time=1.0)
    b = DistributedBackend("b@127.0.0.1", cookie=COOKIE, net_ticktime=T, setup_time=1.0)
    await a.initialize()
    await b.initialize()
    relay = await Relay.start(b.port)
    a.add_address(b.node_name, "127.0.0.1", relay.port)
    b.add_address(a.node_name, "127.0.0.1", a.port)
    p = Pair(a, b, relay)
    await p.start()
    yield p
    await relay.close()
    await a.shutdown()
    await b.shutdown()


async def test_a_partition_shorter_than_ticktime_loses_nothing(pair: Pair) -> None:
    await pair.settle(50)
    pair.relay.freeze()
    await asyncio.sleep(0.5 * T)
    pair.relay.thaw()
    await pair.settle(50)
    await pair.stop()
    await pair.all_arrived()
    assert not pair.downs("a") and not pair.downs("b")
    assert pair.received == list(range(pair.sent))  # every message, once, in order


async def test_a_delaying_link_loses_nothing(pair: Pair) -> None:
    pair.relay.delay = 0.05
    await pair.settle(50)
    pair.relay.delay = 0.0
    await pair.stop()
    await pair.all_arrived()
    assert pair.received == list(range(pair.sent))


@pytest.mark.parametrize("frozen", [("out", "back"), ("out",), ("back",)], ids=str)
async def test_a_long_partition_is_noticed_and_heals_without_replay(
    pair: Pair, frozen: tuple[str, ...]
) -> None:
    await pair.settle(50)
    pair.relay.freeze(*frozen)
    for _ in range(400):  # both sides notice: by tick timeout, or by the other's close
        if pair.downs("a") and pair.downs("b"):
            break
        await asyncio.sleep(0.01)
    assert pair.downs("a") and pair.downs("b")
    pair.relay.thaw()
    await pair.settle(50)  # the sender's next sends reconnect
    await pair.stop()
    pair.check_order()
    assert (NODEUP, pair.b.node_name) in pair.events["a"][-2:]


async def test_a_cut_link_heals_without_replay(pair: Pair) -> None:
    await pair.settle(50)
    pair.relay.cut()
    await pair.settle(50)
    await pair.stop()
    pair.check_order()
    assert pair.downs("a") and pair.downs("b")


async def test_the_side_that_noticed_reconnects_at_once(pair: Pair) -> None:
    await pair.settle(20)
    pair.relay.freeze("out")  # b hears nothing from a; a still hears b
    pair.relay.hide_closes = True  # and does not see b give up
    for _ in range(400):
        if pair.downs("b"):
            break
        await asyncio.sleep(0.01)
    assert pair.downs("b") and not pair.downs("a")
    # b dials a directly (not through the relay): a still holds the stale
    # connection; Erlang answers `alive`, b confirms, the stale one is replaced.
    assert await pair.b.connect(pair.a.node_name)
    assert pair.b.node_name in pair.a.nodes()
    pair.relay.thaw()
    await pair.stop()
