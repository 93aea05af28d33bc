"""The metrics endpoint: real HTTP scrapes over loopback, parsed with prometheus_client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from otpylib import process
from otpylib_dist import DistributedBackend
from otpylib_dist.metrics import MetricsServer, start_metrics

COOKIE = "metrics-test-cookie"
DEADLINE = 10.0


@pytest.fixture
async def pair() -> AsyncIterator[tuple[DistributedBackend, DistributedBackend]]:
    a = DistributedBackend("a@127.0.0.1", cookie=COOKIE)
    b = DistributedBackend("b@127.0.0.1", cookie=COOKIE)
    await a.initialize()
    await b.initialize()
    a.add_address("b@127.0.0.1", "127.0.0.1", b.port)
    b.add_address("a@127.0.0.1", "127.0.0.1", a.port)
    yield a, b
    await a.shutdown()
    await b.shutdown()


Serve = Callable[[DistributedBackend], Awaitable[MetricsServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a node's metrics endpoint on a free loopback port; closed after the test."""
    servers: list[MetricsServer] = []

    async def start(node: DistributedBackend) -> MetricsServer:
        server = await start_metrics(node, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def http_get(port: int, path: str = "/metrics", method: str = "GET") -> tuple[str, str]:
    """One HTTP/1.1 request over loopback; returns (status line, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), DEADLINE)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


async def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    status, body = await http_get(server.port)
    assert status == "HTTP/1.1 200 OK", status
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def sink(count: int, done: asyncio.Future[None]) -> None:
    await process.register("sink")
    for _ in range(count):
        await process.receive()
    done.set_result(None)


async def wait_for(predicate: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not predicate():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_thousand_messages_move_the_peer_counters_by_a_thousand(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, b = pair
    server_a = await serve(a)
    server_b = await serve(b)
    assert await a.connect("b@127.0.0.1")
    peer = (("peer", "b@127.0.0.1"),)
    before = await scrape(server_a)
    before_b = await scrape(server_b)
    assert before[("otpy_peer_connection_state", (*peer, ("state", "up")))] == 1
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await b.spawn(sink, [1000, done])

    async def sender() -> None:
        for i in range(1000):
            await process.send(("sink", "b@127.0.0.1"), i)

    await a.spawn(sender)
    await asyncio.wait_for(done, DEADLINE)
    after = await scrape(server_a)
    after_b = await scrape(server_b)
    sent = "otpy_peer_messages_sent_total"
    assert after[(sent, peer)] - before[(sent, peer)] == 1000
    got = "otpy_peer_messages_received_total"
    from_a = (("peer", "a@127.0.0.1"),)
    assert after_b[(got, from_a)] - before_b[(got, from_a)] == 1000
    assert (
        after[("otpy_peer_bytes_sent_total", peer)]
        > before[("otpy_peer_bytes_sent_total", peer)] + 1000
    )
    assert after_b[("otpy_messages_delivered_total", ())] >= 1000
    assert after[("otpy_nodeups_total", ())] == 1
    assert after[("otpy_node_info", (("creation", str(a.creation)), ("node", a.node_name)))]
    assert after[("otpy_resident_memory_bytes", ())] > 1 << 20
    assert after[("otpy_event_loop_lag_seconds_count", ())] >= 0
    assert after[("otpy_process_exits_total", (("reason", "normal"),))] >= 1


async def test_exits_by_reason_nodedowns_and_refusals_are_counted(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, _ = pair
    server = await serve(a)

    async def crash() -> None:
        raise ValueError("on purpose")

    async def wait_forever() -> None:
        await process.receive()

    await a.spawn(crash)
    victim = await a.spawn(wait_forever)
    await a.exit(victim, "kill")
    stubborn = await a.spawn(wait_forever)
    await a.exit(stubborn, "shutdown")
    assert await a.connect("b@127.0.0.1")
    peer = ("peer", "b@127.0.0.1")
    samples = await scrape(server)
    assert samples[("otpy_peer_connection_state", (peer, ("state", "up")))] == 1
    assert await a.disconnect("b@127.0.0.1")
    wrong = DistributedBackend("w@127.0.0.1", cookie="not-the-cookie")
    await wrong.initialize()
    try:
        assert not await wrong.connect("a@127.0.0.1", "127.0.0.1", a.port)
    finally:
        await wrong.shutdown()

    def counted() -> bool:
        stats = a.statistics().exits
        return stats["crash"] >= 1 and stats["killed"] >= 1 and stats["shutdown"] >= 1

    await wait_for(counted, "three exits")
    await wait_for(lambda: a.node_statistics().refusals.get("bad_cookie"), "the refusal")
    samples = await scrape(server)
    for kind in ("crash", "killed", "shutdown"):
        assert samples[("otpy_process_exits_total", (("reason", kind),))] >= 1, kind
    assert samples[("otpy_nodedowns_total", (("reason", "disconnect"),))] == 1
    assert samples[("otpy_handshake_refusals_total", (("reason", "bad_cookie"),))] == 1
    # b went down after a scrape saw it up: it stays listed, state down.
    assert samples[("otpy_peer_connection_state", (peer, ("state", "down")))] == 1
    assert samples[("otpy_peer_connection_state", (peer, ("state", "up")))] == 0


async def test_largest_mailbox_and_process_counts(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, _ = pair
    server = await serve(a)

    async def idle() -> None:
        await asyncio.Event().wait()

    pid = await a.spawn(idle)
    for i in range(37):
        await a.send(pid, i)
    samples = await scrape(server)
    assert samples[("otpy_largest_mailbox_messages", ())] == 37
    assert samples[("otpy_processes", ())] == len(a.processes())
    assert samples[("otpy_processes_spawned_total", ())] >= 1


async def test_hidden_tool_nodes_get_no_peer_series(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, _ = pair
    server = await serve(a)
    tool = DistributedBackend("tool@127.0.0.1", cookie=COOKIE, hidden=True)
    await tool.initialize()
    try:
        tool.add_address(a.node_name, "127.0.0.1", a.port)
        assert await tool.ping(a.node_name) is True
        samples = await scrape(server)
    finally:
        await tool.shutdown()
    assert samples[("otpy_hidden_connections", ())] == 1
    assert not [key for key in samples if ("peer", "tool@127.0.0.1") in key[1]]


async def test_the_endpoint_answers_only_get_metrics(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, _ = pair
    server = await serve(a)
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    assert (await http_get(server.port, "/nope"))[0] == "HTTP/1.1 404 Not Found"
    assert (await http_get(server.port, method="POST"))[0].startswith("HTTP/1.1 405")
    status, body = await http_get(server.port, method="HEAD")
    assert status == "HTTP/1.1 200 OK" and body == ""
    # Garbage that never ends its head is dropped without a reply.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"x" * 10000)
    assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
    writer.close()


async def test_a_taken_port_is_one_clear_error(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, _ = pair
    server = await serve(a)
    with pytest.raises(OSError, match=r"^\[Errno 98\] cannot serve metrics on 127\.0\.0\.1:"):
        await start_metrics(a, "127.0.0.1", server.port)


async def test_spin_sessions_are_counted_and_none_without_the_busy_wait(
    pair: tuple[DistributedBackend, DistributedBackend], serve: Serve
) -> None:
    a, b = pair  # the default busy wait (adaptive): traffic starts a spin session
    quiet = DistributedBackend("q@127.0.0.1", cookie=COOKIE, busy_wait=0.0)
    await quiet.initialize()
    try:
        quiet.add_address("b@127.0.0.1", "127.0.0.1", b.port)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await b.spawn(sink, [20, done])

        async def sender() -> None:
            for i in range(10):
                await process.send(("sink", "b@127.0.0.1"), i)

        await a.spawn(sender)
        await quiet.spawn(sender)
        await asyncio.wait_for(done, DEADLINE)
        await wait_until(lambda: a.node_statistics().spin_sessions >= 1, "a spin session on a")
        samples = await scrape(await serve(a))
        assert samples[("otpy_spin_sessions_total", ())] >= 1
        starved = samples[("otpy_spin_sessions_starved_total", ())]
        assert 0 <= starved <= samples[("otpy_spin_sessions_total", ())]
        assert quiet.node_statistics().spin_sessions == 0  # busy_wait=0 never spins
        assert (await scrape(await serve(quiet)))[("otpy_spin_sessions_total", ())] == 0
    finally:
        await quiet.shutdown()
