"""What ``connect_failure`` / ``connect_refusal`` report: the last attempt, not an older one."""

from __future__ import annotations

import asyncio

from otpylib_dist import DistributedBackend


async def test_a_later_timeout_is_not_reported_with_an_older_refusal() -> None:
    server = DistributedBackend("srv@127.0.0.1", cookie="right")
    client = DistributedBackend("cli@127.0.0.1", cookie="wrong", setup_time=0.5)
    await server.initialize()
    await client.initialize()
    try:
        assert not await client.connect(server.node_name, "127.0.0.1", server.port)
        assert client.connect_refusal(server.node_name) == "bad_cookie"

        # A listener that accepts and never says a word: the next attempt times out.
        silent = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
        async with silent:
            port = silent.sockets[0].getsockname()[1]
            assert not await client.connect(server.node_name, "127.0.0.1", port)
        assert client.connect_refusal(server.node_name) is None
        assert client.connect_failure(server.node_name) == "no connection within 0.5 s"
    finally:
        await client.shutdown()
        await server.shutdown()
