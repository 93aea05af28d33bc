"""Hostile sockets against an OS-process node whose stderr is a pipe nobody reads.

Garbage, half-open connections and bad cookies each cost a refusal; the
node must keep answering pings, and its refusal lines are rate-limited
(otpylib_dist/refusal_log.py), so the unread pipe never fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from rel_nodes import COOKIE

from otpylib_dist import DistributedBackend
from otpylib_dist.refusal_log import BURST, GLOBAL_BURST

pytestmark = pytest.mark.multiprocess

GARBAGE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4


async def _garbage(port: int, source: str) -> None:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.write(GARBAGE)
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()


async def _attack(port: int, count: int, sources: int) -> float:
    started = time.monotonic()
    for batch in range(0, count, 100):
        await asyncio.gather(
            *(_garbage(port, f"127.0.0.{2 + i % sources}") for i in range(batch, batch + 100))
        )
    return time.monotonic() - started


@pytest.mark.parametrize("sources", [1, 50])
async def test_garbage_does_not_stop_a_node_whose_stderr_nobody_reads(
    start_node: Callable[..., Any], sources: int
) -> None:
    peer = start_node("target@127.0.0.1", "--log-level", "info")
    node = DistributedBackend("pinger@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    try:
        half_open = [await asyncio.open_connection("127.0.0.1", peer.port) for _ in range(100)]
        duration = await _attack(peer.port, 1000, sources)
        wrong = DistributedBackend("intruder@127.0.0.1", cookie="not-the-cookie")
        await wrong.initialize()
        try:
            for _ in range(20):
                assert not await wrong.connect(peer.name, "127.0.0.1", peer.port)
        finally:
            await wrong.shutdown()
        node.add_address(peer.name, "127.0.0.1", peer.port)
        assert await node.ping(peer.name)
        for _, writer in half_open:
            writer.close()
    finally:
        await node.shutdown()
    peer.proc.kill()
    _, err = peer.proc.communicate(timeout=10)
    refusals = [line for line in err.splitlines() if re.search(r"refus|handshake", line)]
    print("\n".join(refusals))
    print(f"{sources} sources: {len(refusals)} refusal lines in {duration:.1f} s of attack")
    assert refusals  # the attack is logged...
    assert len(refusals) <= GLOBAL_BURST + sources  # ...within its limits
    if sources == 1:  # the garbage source, and 127.0.0.1 (half-open, bad cookie)
        assert len(refusals) <= 2 * (BURST + 1)
