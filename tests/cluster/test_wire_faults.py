"""Bad bytes on a node's port: each is refused or dropped, and the node carries on.

A raw asyncio client plays the peer. Before authentication it sends what a
confused or hostile client would; after authentication (it runs the real
handshake core with the right cookie) it sends malformed frames. In every
case the node must close that one connection (or drop that one message),
log why, and keep serving everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from cluster_helpers import DEADLINE, run_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_peer import authenticated
from waiting import wait_until

from otpylib import process
from otpylib.runtime.atoms import atom
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import Term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.framing import MAX_HANDSHAKE_FRAME, encode_frame

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
COOKIE = "cluster-test-cookie"
PING = atom.ensure("ping")


async def _closed_by_peer(reader: asyncio.StreamReader) -> bytes:
    """Read until the node closes the socket; return what it sent before."""
    seen = b""
    while True:
        data = await asyncio.wait_for(reader.read(65536), DEADLINE)
        if not data:
            return seen
        seen += data


async def _still_serves(node: DistributedBackend, make_cluster: ClusterFactory) -> None:
    """A new node can connect to ``node`` and exchange a message."""
    (other,) = await make_cluster(1)
    assert await other.connect(node.node_name, "127.0.0.1", node.port)

    async def ask() -> Any:
        me = process.self()
        await process.send(("echoer", node.node_name), (me, PING))
        return await process.receive(timeout=DEADLINE)

    assert await run_in(other, ask) == PING


async def _echoer() -> None:
    await process.register("echoer")
    while True:
        sender, msg = await process.receive()
        await process.send(sender, msg)


async def _raw(node: DistributedBackend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.port)


async def _authenticated(
    node: DistributedBackend, name: str = "raw@127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect as a well-behaved peer named ``name`` (real handshake, right cookie)."""
    return await authenticated(node, name, COOKIE)


@pytest.fixture
async def node(make_cluster: ClusterFactory) -> DistributedBackend:
    (n,) = await make_cluster(1)
    await n.spawn(_echoer)
    return n


@pytest.mark.parametrize(
    ("label", "junk", "logged"),
    [
        ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "handshake"),
        (
            "tls client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64,
            "handshake",
        ),
        # A header of 64 KiB or more cannot start a handshake frame at all.
        (
            "huge frame header",
            struct.pack(">I", 50 << 20) + b"x" * 100,
            "not a handshake frame",
        ),
        # Under the 64 MiB limit after authentication: refused on its header
        # by the 4 KiB limit before it, not left to the setup deadline.
        (
            "oversized handshake frame",
            struct.pack(">I", 10_000) + b"x" * 100,
            f"the limit is {MAX_HANDSHAKE_FRAME} bytes",
        ),
        ("garbage frame", encode_frame(b"\xc1\xc1\xc1 not msgpack"), "handshake"),
    ],
)
async def test_junk_before_authentication_is_refused_and_the_node_carries_on(
    node: DistributedBackend,
    make_cluster: ClusterFactory,
    caplog: pytest.LogCaptureFixture,
    label: str,
    junk: bytes,
    logged: str,
) -> None:
    caplog.set_level(logging.WARNING)
    reader, writer = await _raw(node)
    writer.write(junk)
    await _closed_by_peer(reader)
    writer.close()
    assert logged in caplog.text
    assert node.nodes() == []
    await _still_serves(node, make_cluster)


async def test_a_client_that_says_nothing_is_dropped_at_the_setup_deadline(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (n,) = await make_cluster(1, setup_time=0.5)
    caplog.set_level(logging.WARNING)
    reader, writer = await _raw(n)
    await _closed_by_peer(reader)
    writer.close()
    assert "did not finish" in caplog.text


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(junk=st.binary(min_size=1, max_size=300))
async def test_random_bytes_before_authentication_never_bring_the_node_down(
    node: DistributedBackend, junk: bytes
) -> None:
    reader, writer = await _raw(node)
    writer.write(junk)
    writer.write_eof()
    await _closed_by_peer(reader)
    writer.close()
    assert node.nodes() == []
    assert node.whereis("echoer") is not None


async def test_malformed_frame_after_authentication_closes_only_that_connection(
    node: DistributedBackend, make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    reader, writer = await _authenticated(node)
    assert node.nodes() == ["raw@127.0.0.1"]
    writer.write(encode_frame(msgspec.msgpack.encode([999, "no such control message"])))
    await _closed_by_peer(reader)
    assert "sent something illegal" in caplog.text
    assert node.nodes() == []
    await _still_serves(node, make_cluster)


async def test_oversized_frame_after_authentication_closes_the_connection(
    node: DistributedBackend, make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    reader, writer = await _authenticated(node)
    writer.write(struct.pack(">I", (64 << 20) + 1))
    await _closed_by_peer(reader)
    assert node.nodes() == []
    await _still_serves(node, make_cluster)


async def test_undecodable_payload_is_dropped_with_a_log_and_the_connection_stays(
    node: DistributedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    _reader, writer = await _authenticated(node)
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        await process.register("sink")
        got.set_result(await process.receive())

    await node.spawn(sink)
    encoder = ControlEncoder()
    out = bytearray()
    # A payload holding a msgpack extension type nobody defines, then a good one.
    bad = Term(b"", msgspec.Raw(msgspec.msgpack.encode(msgspec.msgpack.Ext(99, b"?"))))
    encoder.encode_into(control.RegSend(None, "sink", bad), out)
    encoder.reg_send_into(None, "sink", ("after", 1), out)
    writer.write(bytes(out))
    assert await asyncio.wait_for(got, DEADLINE) == ("after", 1)
    assert "dropped a message from raw@127.0.0.1 to sink" in caplog.text
    assert node.nodes() == ["raw@127.0.0.1"]
    writer.close()


async def test_a_payload_for_a_dead_pid_is_not_even_decoded(
    node: DistributedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    _reader, writer = await _authenticated(node)
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        got.set_result(await process.receive())
        await process.receive()  # stays alive for the last part

    async def gone() -> None:
        pass

    live = await node.spawn(sink)
    dead = await node.spawn(gone)
    while node.is_alive(dead):
        await asyncio.sleep(0)
    encoder = ControlEncoder()
    out = bytearray()
    # An undecodable payload to a dead pid, or to a name nobody holds, is
    # dropped without decoding (no log line: decoding would have failed),
    # then one to a live pid arrives.
    bad = Term(b"", msgspec.Raw(msgspec.msgpack.encode(msgspec.msgpack.Ext(99, b"?"))))
    encoder.encode_into(control.Send(dead, bad), out)
    encoder.encode_into(control.RegSend(None, "nobody_holds_this", bad), out)
    encoder.send_into(live, ("after", 1), out)
    writer.write(bytes(out))
    assert await asyncio.wait_for(got, DEADLINE) == ("after", 1)
    assert "dropped a message" not in caplog.text
    # The same payload to the live pid is decoded, fails, and says so.
    encoder.encode_into(control.Send(live, bad), out := bytearray())
    writer.write(bytes(out))
    await wait_until(lambda: "dropped a message" in caplog.text, "the drop logged")
    writer.close()
