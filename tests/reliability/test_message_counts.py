"""Many messages from several OS-process nodes to one sink: per-sender counters show
nothing lost, duplicated or reordered while connected (10 million in the soak run)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest
from rel_nodes import COOKIE

from otpylib import process
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess


async def _count(start_node: Callable[..., Any], senders: int, total: int) -> dict[str, int]:
    per_sender = total // senders
    peers = [
        start_node(f"s{i}@127.0.0.1", "--run", "rel_procs:counter_sender") for i in range(senders)
    ]
    node = DistributedBackend("sink@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    result: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        await process.register("sink")
        expected = {peer.name: 0 for peer in peers}
        done = 0
        for peer in peers:
            assert await node.connect(peer.name, "127.0.0.1", peer.port)
            await process.send(
                ("sender", peer.name), (process.self(), "send", node.node_name, per_sender)
            )
        while done < senders:
            who, i = await process.receive(timeout=120)
            if who == "done":
                done += 1
                continue
            if i != expected[who]:
                raise AssertionError(f"from {who}: expected #{expected[who]}, got #{i}")
            expected[who] = i + 1
        result.set_result(expected)

    try:
        await node.spawn(sink)
        return await asyncio.wait_for(result, 60 + total / 20_000)
    finally:
        await node.shutdown()


def _total(short: int) -> int:
    return int(os.environ.get("OTPY_SOAK_MESSAGES", short))


@pytest.mark.parametrize("nodes", [2, 4])
async def test_no_message_lost_or_reordered(start_node: Callable[..., Any], nodes: int) -> None:
    total = 30_000
    counts = await _count(start_node, nodes - 1, total)
    assert list(counts.values()) == [total // (nodes - 1)] * (nodes - 1)


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [2, 4])
async def test_ten_million_messages_none_lost_or_reordered(
    start_node: Callable[..., Any], nodes: int
) -> None:
    total = _total(10_000_000)
    counts = await _count(start_node, nodes - 1, total)
    assert list(counts.values()) == [total // (nodes - 1)] * (nodes - 1)
