"""A raw peer that passes the real handshake: the tests' trusted-but-hostile (or odd) node.

It runs the sans-I/O handshake core with the given cookie over a plain
asyncio stream, so a test can then write any frames it likes: malformed
ones, forged signals, hand-built runs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from otpylib_dist.protocol.handshake import NEED_DATA, Established, Handshake, Role

#: Generous: a handshake on loopback takes milliseconds; this only bounds a hang.
DEADLINE = 10.0


async def authenticated(
    node: Any, name: str, cookie: str, *, flags: int = 0, creation: int = 7
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``node`` as ``name`` (right cookie, given capability flags)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    hs = Handshake(
        Role.INITIATOR,
        name,
        creation,
        cookie,
        secrets.token_bytes(32),
        time.monotonic(),
        expected_peer=node.node_name,
        flags=flags,
    )
    writer.write(hs.start())
    while True:
        data = await asyncio.wait_for(reader.read(65536), DEADLINE)
        assert data, "the node closed the connection during the handshake"
        hs.receive_data(data)
        event = hs.next_event(time.monotonic())
        writer.write(hs.data_to_send())
        if isinstance(event, Established):
            return reader, writer
        assert event is NEED_DATA
