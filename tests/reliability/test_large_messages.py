"""A large message between two OS-process nodes arrives whole, and a small one sent
after it by another process of that node arrives first (fragments, no head-of-line
blocking)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from rel_nodes import COOKIE

from otpylib import process
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess

SIZE = 16 << 20


async def test_a_small_message_overtakes_a_large_one_from_another_process(
    start_node: Callable[..., Any],
) -> None:
    peer = start_node("big@127.0.0.1", "--run", "rel_procs:big_then_small")
    node = DistributedBackend("sink@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    got: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        await process.register("sink")
        assert await node.connect(peer.name, "127.0.0.1", peer.port)
        await process.send(("bigsmall", peer.name), (process.self(), "send", node.node_name, SIZE))
        got.set_result([await process.receive(timeout=60) for _ in range(2)])

    try:
        await node.spawn(sink)
        first, second = await asyncio.wait_for(got, 90)
    finally:
        await node.shutdown()
    assert first == ("small", 1)
    assert second[0] == "big" and second[1] == bytes(range(256)) * (SIZE // 256)
