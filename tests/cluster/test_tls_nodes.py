"""Nodes talking over mutual TLS (certificates from a freshly generated test CA)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, run_in

from otpylib import process
from otpylib.runtime.atoms import NOCONNECTION, atom
from otpylib_dist import DistributedBackend
from otpylib_dist.pki import GeneratedPki, generate_test_pki

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
PING = atom.ensure("ping")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPki:
    return generate_test_pki(tmp_path_factory.mktemp("pki"), ["a", "b", "c"])


@pytest.fixture(scope="module")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPki:
    return generate_test_pki(tmp_path_factory.mktemp("foreign"), ["c"])


async def _tls_node(name: str, pki: GeneratedPki | None, peers: list[DistributedBackend]) -> Any:
    node = DistributedBackend(
        f"{name}@127.0.0.1",
        cookie="cluster-test-cookie",
        tls=pki.config(name) if pki is not None else None,
        setup_time=3.0,
    )
    await node.initialize()
    for peer in peers:
        node.add_address(peer.node_name, "127.0.0.1", peer.port)
    return node


async def _tls_pair(
    pki: GeneratedPki, nodes: list[DistributedBackend]
) -> tuple[DistributedBackend, DistributedBackend]:
    """Nodes ``a`` and ``b`` over mutual TLS, ``a`` knowing where ``b`` listens."""
    b = await _tls_node("b", pki, [])
    nodes.append(b)
    a = await _tls_node("a", pki, [b])
    nodes.append(a)
    return a, b


@pytest.fixture
async def nodes() -> Any:
    started: list[DistributedBackend] = []
    yield started
    for n in reversed(started):
        await n.shutdown()


async def test_messages_links_and_monitors_work_over_mutual_tls(
    pki: GeneratedPki, nodes: list[DistributedBackend]
) -> None:
    a, b = await _tls_pair(pki, nodes)

    async def echo() -> None:
        await process.register("echo")
        sender, msg = await process.receive()
        await process.send(sender, (msg, process.self()))

    await b.spawn(echo)

    async def ask() -> Any:
        me = process.self()
        await process.send(("echo", b.node_name), (me, PING))
        msg, pid = await process.receive(timeout=DEADLINE)
        ref = await process.monitor(pid)
        down = await process.receive(timeout=DEADLINE)
        return msg, ref, down

    msg, ref, down = await run_in(a, ask)
    assert msg == PING
    assert down[1] == ref
    conn = a.connections.up[b.node_name]
    cert = conn.peer_certificate()
    assert cert is not None
    assert dict(item[0] for item in cert["subject"])["commonName"] == "b"


async def test_a_large_message_travels_in_fragments_over_tls(
    pki: GeneratedPki, nodes: list[DistributedBackend]
) -> None:
    a, b = await _tls_pair(pki, nodes)
    payload = bytes(range(256)) * (3 << 12)  # 3 MiB: about 48 fragments

    async def sink() -> None:
        await process.register("sink")
        sender, data = await process.receive()
        await process.send(sender, len(data) == len(payload) and data == payload)

    await b.spawn(sink)

    async def send() -> Any:
        await process.send(("sink", b.node_name), (process.self(), payload))
        return await process.receive(timeout=DEADLINE)

    assert await run_in(a, send) is True


async def test_a_node_without_tls_cannot_join_a_tls_node(
    pki: GeneratedPki, nodes: list[DistributedBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    secure = await _tls_node("a", pki, [])
    nodes.append(secure)
    plain = await _tls_node("c", None, [secure])
    nodes.append(plain)
    assert await plain.connect(secure.node_name) is False
    assert plain.nodes() == [] and secure.nodes() == []
    why = plain.connect_failure(secure.node_name)
    print(why)
    assert why


async def test_a_certificate_from_another_ca_is_refused(
    pki: GeneratedPki,
    foreign_pki: GeneratedPki,
    nodes: list[DistributedBackend],
) -> None:
    secure = await _tls_node("a", pki, [])
    nodes.append(secure)
    intruder = await _tls_node("c", foreign_pki, [secure])
    nodes.append(intruder)
    assert await intruder.connect(secure.node_name) is False
    assert intruder.nodes() == [] and secure.nodes() == []


async def test_losing_a_tls_connection_gives_noconnection(
    pki: GeneratedPki, nodes: list[DistributedBackend]
) -> None:
    a, b = await _tls_pair(pki, nodes)

    async def waiter() -> None:
        await process.register("waiter")
        await process.receive()

    await b.spawn(waiter)

    async def watch() -> Any:
        ref = await process.monitor(("waiter", b.node_name))
        await b.disconnect(a.node_name)
        return ref, await process.receive(timeout=DEADLINE)

    ref, down = await run_in(a, watch)
    assert down[1] == ref and down[3] is NOCONNECTION
