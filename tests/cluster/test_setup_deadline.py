"""The setup deadline is per handshake step, and a refusal reaches the dialer.

A raw client runs the real handshake core (right cookie) against a node,
pausing before each step. One timer per connection, re-armed at each
step's deadline: a peer slow at every step but never past one step's
deadline gets in, however long the whole setup takes; one that stalls a
step is dropped at that step's deadline, not at some whole-setup deadline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import pytest
from cluster_helpers import DEADLINE
from waiting import wait_until

from otpylib_dist import DistributedBackend
from otpylib_dist.protocol.handshake import NEED_DATA, Established, Handshake, Role

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
COOKIE = "cluster-test-cookie"


async def _slow_peer(node: DistributedBackend, pause: float, name: str) -> bool:
    """Dial ``node`` and pause ``pause`` s before each step; whether it got in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        hs = Handshake(
            Role.INITIATOR,
            name,
            7,
            COOKIE,
            secrets.token_bytes(32),
            time.monotonic(),
            expected_peer=node.node_name,
            setup_time=DEADLINE,
        )
        await asyncio.sleep(pause)
        writer.write(hs.start())
        while True:
            data = await asyncio.wait_for(reader.read(65536), DEADLINE)
            if not data:
                return False
            hs.receive_data(data)
            event = hs.next_event(time.monotonic())
            out = hs.data_to_send()
            if out:
                await asyncio.sleep(pause)
                writer.write(out)
            if isinstance(event, Established):
                await wait_until(lambda: name in node.nodes(hidden=True), "the node up")
                return True
            assert event is NEED_DATA
    finally:
        writer.close()


async def test_a_peer_answering_each_step_just_in_time_gets_in(
    make_cluster: ClusterFactory,
) -> None:
    # Two pauses of 0.6 s each: 1.2 s in all, past one 1 s setup time, but
    # each step is within its own 1 s.
    (node,) = await make_cluster(1, setup_time=1.0)
    assert await _slow_peer(node, 0.6, "slow@127.0.0.1")


async def test_a_peer_that_stalls_a_step_is_dropped_at_that_steps_deadline(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    setup = 1.0
    (node,) = await make_cluster(1, setup_time=setup)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    hs = Handshake(
        Role.INITIATOR,
        "stall@127.0.0.1",
        7,
        COOKIE,
        secrets.token_bytes(32),
        time.monotonic(),
        expected_peer=node.node_name,
    )
    start = time.monotonic()
    await asyncio.sleep(0.6 * setup)  # the first step, late but in time
    writer.write(hs.start())
    challenge = await asyncio.wait_for(reader.read(65536), DEADLINE)
    assert challenge, "the node dropped a peer whose first step was in time"
    hello_answered = time.monotonic()
    # ... then the reply never comes: the node closes at this step's deadline.
    assert await asyncio.wait_for(reader.read(65536), DEADLINE) == b""
    closed = time.monotonic()
    writer.close()
    # Not at the whole-setup deadline (start + setup), but a setup time after
    # the step began (the wait for our reply began when we got the challenge).
    assert closed - start > setup
    assert closed - hello_answered >= 0.9 * setup
    assert "did not finish a step within 1.0 s" in caplog.text


async def test_the_dialer_reads_the_refusal_reason(make_cluster: ClusterFactory) -> None:
    (server,) = await make_cluster(1)
    (client,) = await make_cluster(1, cookie="wrong-cookie")
    # A refusal is written and then the connection closed gracefully, so the
    # Refused frame arrives: the dialer knows it is a cookie problem.
    assert not await client.connect(server.node_name, "127.0.0.1", server.port)
    failure = client.last_connect_failure(server.node_name)
    assert failure is not None and failure.reason == "bad_cookie"


async def test_a_twin_under_a_live_name_reads_duplicate_name(make_cluster: ClusterFactory) -> None:
    server, a = await make_cluster(2)
    assert await a.connect(server.node_name)
    # A second node under a's name (a new creation) while a is alive: refused
    # at its Hello, and the refusal reaches it before the close.
    twin = DistributedBackend(a.node_name, cookie=COOKIE)
    await twin.initialize()
    try:
        assert not await twin.connect(server.node_name, "127.0.0.1", server.port)
        failure = twin.last_connect_failure(server.node_name)
        assert failure is not None and failure.reason == "duplicate_name"
    finally:
        await twin.shutdown()
