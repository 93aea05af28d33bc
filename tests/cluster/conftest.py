"""Several nodes in one event loop, talking over real loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from otpylib_dist import DistributedBackend

COOKIE = "cluster-test-cookie"

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]


@pytest.fixture
async def make_cluster() -> AsyncIterator[ClusterFactory]:
    """Start nodes ``a@127.0.0.1``, ``b@127.0.0.1``... that know each other's address."""
    started: list[DistributedBackend] = []

    async def make(count: int = 2, **options: object) -> list[DistributedBackend]:
        nodes = []
        cookie = str(options.pop("cookie", COOKIE))
        for _ in range(count):
            name = f"{chr(ord('a') + len(started))}@127.0.0.1"
            node = DistributedBackend(name, cookie=cookie, **options)  # type: ignore[arg-type]
            await node.initialize()
            started.append(node)
            nodes.append(node)
        for node in started:
            for other in started:
                if other is not node:
                    node.add_address(other.node_name, "127.0.0.1", other.port)
        return nodes

    yield make
    for node in reversed(started):
        await node.shutdown()
