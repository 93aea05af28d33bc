"""Transitive connection (Erlang's connect_all): a cluster meshes however it was joined.

Nodes here know no address but the one they are told to dial: b dials a,
c dials b; c learns from b where a listens and connects to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from waiting import wait_until

from otpylib_dist import Node

COOKIE = "cluster-test-cookie"

Start = Callable[..., "Node"]


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in reversed(started):
        await node.shutdown()


async def _start(started: list[Node], name: str, **options: object) -> Node:
    node = Node(name, cookie=COOKIE, **options)  # type: ignore[arg-type]
    await node.initialize()
    started.append(node)
    return node


async def test_a_chain_of_connects_ends_as_a_full_mesh(nodes: list[Node]) -> None:
    a = await _start(nodes, "a@127.0.0.1")
    b = await _start(nodes, "b@127.0.0.1")
    c = await _start(nodes, "c@127.0.0.1")
    d = await _start(nodes, "d@127.0.0.1")
    assert await b.connect(a.node_name, "127.0.0.1", a.port)
    assert await c.connect(b.node_name, "127.0.0.1", b.port)
    assert await d.connect(c.node_name, "127.0.0.1", c.port)
    everyone = {n.node_name for n in nodes}
    for node in nodes:
        await wait_until(
            lambda node=node: set(node.nodes()) == everyone - {node.node_name},
            f"{node.node_name} connected to every other node",
        )


async def test_connect_all_can_be_turned_off(nodes: list[Node]) -> None:
    a = await _start(nodes, "a@127.0.0.1")
    b = await _start(nodes, "b@127.0.0.1")
    c = await _start(nodes, "c@127.0.0.1", connect_all=False)
    assert await b.connect(a.node_name, "127.0.0.1", a.port)
    assert await c.connect(b.node_name, "127.0.0.1", b.port)
    # c was told where a listens (an address is not a connection) ...
    assert c.connections.addresses.get(a.node_name) == ("127.0.0.1", a.port)
    # ... and a round trip with b later, it has still not dialed a.
    assert await c.ping(b.node_name)
    assert c.nodes() == [b.node_name]
    assert await c.connect(a.node_name)  # the learned address works on demand


async def test_a_hidden_node_is_neither_told_nor_telling(nodes: list[Node]) -> None:
    a = await _start(nodes, "a@127.0.0.1")
    b = await _start(nodes, "b@127.0.0.1")
    tool = await _start(nodes, "tool@127.0.0.1", hidden=True)
    assert await b.connect(a.node_name, "127.0.0.1", a.port)
    assert await tool.connect(b.node_name, "127.0.0.1", b.port)
    assert await tool.ping(b.node_name)
    assert tool.nodes(hidden=True) == [b.node_name]
    assert tool.node_name not in a.nodes(hidden=True)
