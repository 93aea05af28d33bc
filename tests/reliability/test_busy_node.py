"""A busy node is not a dead node: a peer whose event loop is blocked keeps its connection.

Two OS processes: this test's node and an ``otpy-node`` whose process
blocks the whole event loop with ``time.sleep`` inside a callback. The tick
guard thread (otpylib_dist/tick_guard.py) keeps ticks flowing from the
blocked node; without it (``OTPYLIB_TICK_GUARD=0``) only blocks shorter
than ``0.75 T`` are safe at every phase (tests/otpylib_dist/protocol/test_ticks.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from rel_nodes import COOKIE

from otpylib import process
from otpylib.runtime.atoms import NODEDOWN, NODEUP
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess


async def block_peer(node: DistributedBackend, peer: Any, seconds: float) -> list[Any]:
    """Make ``peer`` block its loop for ``seconds``; return the node events seen meanwhile."""
    result: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        await node.monitor_nodes(True)
        assert await node.connect(peer.name, "127.0.0.1", peer.port)
        assert await process.receive(timeout=10) == (NODEUP, peer.name)
        me = process.self()
        await process.send(("blocker", peer.name), (me, "ping"))
        assert await process.receive(timeout=10) == "pong"
        await process.send(("blocker", peer.name), (me, "block", seconds))
        seen = []
        while True:
            msg = await process.receive(timeout=seconds + 20)
            seen.append(msg)
            if msg == ("unblocked", seconds) or msg[0] == NODEDOWN:
                break
        result.set_result(seen)

    await node.spawn(watcher)
    return await asyncio.wait_for(result, seconds + 40)


async def _run(start_node: Callable[..., Any], ticktime: float, block: float, *extra: str) -> Any:
    peer = start_node(
        "busy@127.0.0.1",
        "--run",
        "rel_procs:blocker",
        "--net-ticktime",
        str(ticktime),
        *extra,
    )
    node = DistributedBackend("watcher@127.0.0.1", cookie=COOKIE, net_ticktime=ticktime)
    await node.initialize()
    try:
        seen = await block_peer(node, peer, block)
        still_up = peer.name in node.nodes()
    finally:
        await node.shutdown()
    return seen, still_up


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("ticktime", [1.0, 2.0])
async def test_peer_blocked_for_three_ticktimes_keeps_its_connection(
    start_node: Callable[..., Any], ticktime: float, loop: str
) -> None:
    seen, still_up = await _run(start_node, ticktime, 3 * ticktime, "--loop", loop)
    assert not [m for m in seen if isinstance(m, tuple) and m[0] == NODEDOWN]
    assert still_up


async def test_peer_blocked_for_half_a_ticktime_keeps_its_connection_without_the_guard(
    start_node: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTPYLIB_TICK_GUARD", "0")
    seen, still_up = await _run(start_node, 1.0, 0.5)
    assert not [m for m in seen if isinstance(m, tuple) and m[0] == NODEDOWN]
    assert still_up


async def test_without_the_guard_a_long_block_costs_the_connection(
    start_node: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shows what the guard is for (and that the tests above could fail).
    monkeypatch.setenv("OTPYLIB_TICK_GUARD", "0")
    seen, _ = await _run(start_node, 1.0, 2.0)
    assert (NODEDOWN, "busy@127.0.0.1") in [m[:2] for m in seen if isinstance(m, tuple)]
