"""Nodes with mDNS discovery and auto_connect: they mesh by themselves; a withdrawn
announcement alone does not take a node down (connection liveness decides)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mdns_probe import loopback_multicast_problem
from waiting import wait_until

from otpylib_dist import DistributedBackend
from otpylib_dist.discovery import (
    DiscoveryEvent,
    MdnsDiscovery,
    NodeAppeared,
    NodeDisappeared,
)

#: Generous: loopback mDNS settles in well under a second.
DEADLINE = 15.0
COOKIE = "mdns-nodes-cookie"


@pytest.fixture(scope="module")
def loopback_multicast() -> None:
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)


NodeFactory = Callable[[str], Any]


@pytest.fixture
async def make_node(loopback_multicast: None) -> AsyncIterator[NodeFactory]:
    service_type = f"_otpyn-{secrets.token_hex(3)}._tcp.local."
    started: list[DistributedBackend] = []

    async def make(name: str) -> DistributedBackend:
        disco = MdnsDiscovery(COOKIE, interfaces=["127.0.0.1"], service_type=service_type)
        node = DistributedBackend(
            f"{name}@127.0.0.1", cookie=COOKIE, discovery=disco, auto_connect=True
        )
        await node.initialize()
        started.append(node)
        return node

    try:
        yield make
    finally:
        for node in reversed(started):
            await node.shutdown()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a state of the nodes (no event tells of it), up to this file's DEADLINE."""
    await wait_until(predicate, what, DEADLINE, interval=0.02)


async def test_three_nodes_form_a_full_mesh_by_themselves(make_node: NodeFactory) -> None:
    nodes = [await make_node(n) for n in ("ma", "mb", "mc")]
    names = {n.node_name for n in nodes}
    await _until(lambda: all(set(n.nodes()) == names - {n.node_name} for n in nodes), "a full mesh")
    assert {n.node_name: sorted(n.nodes()) for n in nodes} == {
        name: sorted(names - {name}) for name in names
    }


async def test_a_withdrawn_announcement_does_not_take_a_connected_node_down(
    make_node: NodeFactory,
) -> None:
    a = await make_node("wa")
    seen: list[DiscoveryEvent] = []
    assert a._discovery is not None
    a._discovery.subscribe(seen.append)
    b = await make_node("wb")
    await _until(lambda: a.nodes() == [b.node_name], "a connected to b")
    await _until(
        lambda: any(isinstance(e, NodeAppeared) and e.name == b.node_name for e in seen),
        "a to discover b",
    )
    # b stops announcing (sends its mDNS goodbye) but keeps running.
    assert b._discovery is not None
    await b._discovery.stop()
    await _until(
        lambda: any(isinstance(e, NodeDisappeared) and e.name == b.node_name for e in seen),
        "a to see b's goodbye",
    )
    assert a.nodes() == [b.node_name]
    assert b.nodes() == [a.node_name]
