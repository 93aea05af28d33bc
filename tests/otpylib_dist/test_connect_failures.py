"""What ``connect_failure`` / ``connect_refusal`` report: the last attempt, not an older one."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

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


async def test_a_repeated_failure_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="otpylib_dist.connections")
    client = DistributedBackend("cli@127.0.0.1", cookie="c")
    await client.initialize()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        for _ in range(3):
            assert not await client.connect("gone@127.0.0.1", "127.0.0.1", port)
        lines = [r for r in caplog.records if "cannot connect to gone@127.0.0.1" in r.getMessage()]
        assert [r.levelno for r in lines] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    finally:
        await client.shutdown()
