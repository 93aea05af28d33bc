"""A cookie holder speaks only for its own pids: signals it forges "from" our pids are
refused and the connection is closed (Erlang drops such a connection).

The forger is a raw socket that runs the real handshake with the cookie,
then writes control frames by hand; the checks are control_handlers.py's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from raw_peer import authenticated

from otpylib import process
from otpylib.runtime.atoms import KILL, NORMAL
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import encode_reason
from otpylib_dist.protocol.control_encoder import ControlEncoder

COOKIE = "forgery-cookie"
DEADLINE = 10.0
#: The node closes the forger's connection at once (control_handlers checks senders).
CLOSE_DEADLINE = 2.0


async def _forger(node: DistributedBackend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect as ``forger@127.0.0.1`` with the right cookie (a trusted-but-hostile peer)."""
    return await authenticated(node, "forger@127.0.0.1", COOKIE)


async def _send(writer: asyncio.StreamWriter, msg: Any) -> None:
    out = bytearray()
    ControlEncoder().encode_into(msg, out)
    writer.write(bytes(out))
    await writer.drain()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the node closes the connection (reads until EOF; ticks are skipped)."""
    try:
        while await asyncio.wait_for(reader.read(65536), CLOSE_DEADLINE):
            pass
    except (OSError, TimeoutError):
        return False
    return True


@pytest.fixture
async def node() -> Any:
    n = DistributedBackend("target@127.0.0.1", cookie=COOKIE)
    await n.initialize()
    yield n
    await n.shutdown()


async def _idle() -> None:
    await process.receive(match=lambda m: False)


async def test_a_forged_link_exit_from_a_local_pid_is_refused(node: DistributedBackend) -> None:
    got: list[Any] = []
    friend = await node.spawn(_idle)

    async def victim() -> None:
        await process.link(friend)
        while True:
            got.append(await process.receive())

    victim_pid = await node.spawn(victim, trap_exits=True)
    reader, writer = await _forger(node)
    await _send(writer, control.Exit(friend, victim_pid, encode_reason(KILL)))
    assert await _closed(reader)
    assert got == []
    assert node.is_alive(friend) and node.is_alive(victim_pid)


async def test_a_forged_exit_signal_from_the_target_itself_is_refused(
    node: DistributedBackend,
) -> None:
    victim = await node.spawn(_idle)
    reader, writer = await _forger(node)
    await _send(writer, control.Exit2(victim, victim, encode_reason(NORMAL)))
    assert await _closed(reader)
    assert node.is_alive(victim)


async def test_a_forged_down_for_a_local_monitor_is_refused(node: DistributedBackend) -> None:
    got: list[Any] = []
    target = await node.spawn(_idle)
    refs: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        refs.set_result(await process.monitor(target))
        while True:
            got.append(await process.receive())

    watcher_pid = await node.spawn(watcher)
    ref = await refs  # a guessed ref: refs are counters
    reader, writer = await _forger(node)
    await _send(writer, control.MonitorExit(target, watcher_pid, ref, encode_reason(NORMAL)))
    assert await _closed(reader)
    assert got == []
