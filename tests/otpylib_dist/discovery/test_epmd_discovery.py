"""EpmdDiscovery against our port mapper and, when installed, Erlang's own ``epmd``.

Both run on a free loopback port; every mapper a test starts, it stops.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from otpylib_dist.discovery import DiscoveryError, EpmdDiscovery
from otpylib_dist.discovery.epmd import kill_mapper
from otpylib_dist.discovery.epmd_server import EpmdServer
from otpylib_dist.protocol.epmd_wire import encode_alive2_req

EPMD = shutil.which("epmd")
#: Generous: a mapper starts in milliseconds; this only bounds a broken setup.
DEADLINE = 10.0


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["otpylib", "erlang"])
async def epmd_port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """A mapper on a free loopback port: ours in this process, or Erlang's epmd."""
    if request.param == "otpylib":
        server = EpmdServer(0, ["127.0.0.1"])
        await server.start()
        try:
            yield server.port
        finally:
            await server.close()
        return
    if EPMD is None:
        pytest.skip("epmd not installed (Debian: apt-get install erlang-base)")
    port = _free_loopback_port()
    proc = subprocess.Popen(
        [EPMD, "-port", str(port), "-address", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"epmd did not start on 127.0.0.1:{port}")
                await asyncio.sleep(0.05)  # an OS process: nothing tells when it listens
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _until_unregistered(client: EpmdDiscovery, node: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while await client.resolve(node) is not None:
        assert time.monotonic() < deadline, f"the mapper kept {node} registered"
        await asyncio.sleep(0.02)


async def test_register_resolve_list_and_unregister(epmd_port: int) -> None:
    a = EpmdDiscovery(port=epmd_port)
    client = EpmdDiscovery(port=epmd_port, register=False)
    await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
    try:
        assert a.creation is not None
        assert await client.resolve("alpha@127.0.0.1") == ("127.0.0.1", 4370)
        assert await client.resolve("nobody@127.0.0.1") is None
        assert client.resolve_failure("nobody@127.0.0.1") is None  # just not registered
        assert await client.names() == {"alpha": 4370}
    finally:
        await a.stop()
    # The mapper drops the name when the registration connection closes.
    await _until_unregistered(client, "alpha@127.0.0.1")


async def test_second_registration_of_a_name_is_refused(epmd_port: int) -> None:
    a = EpmdDiscovery(port=epmd_port)
    b = EpmdDiscovery(port=epmd_port)
    await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
    try:
        with pytest.raises(
            DiscoveryError,
            match=r"^a node named alpha@127\.0\.0\.1 is already running on this host \(the port "
            rf"mapper at 127\.0\.0\.1:{epmd_port} holds the name 'alpha'\); give this node "
            r"another --name, or stop the other one first$",
        ):
            await b.start("alpha@127.0.0.1", "127.0.0.1", 4371)
    finally:
        await a.stop()
        await b.stop()


async def test_a_name_is_free_again_once_its_holder_is_gone(epmd_port: int) -> None:
    a = EpmdDiscovery(port=epmd_port)
    b = EpmdDiscovery(port=epmd_port)
    client = EpmdDiscovery(port=epmd_port, register=False)
    await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
    first = a.creation
    await a.stop()
    await _until_unregistered(client, "alpha@127.0.0.1")
    await b.start("alpha@127.0.0.1", "127.0.0.1", 4371)
    try:
        assert await client.resolve("alpha@127.0.0.1") == ("127.0.0.1", 4371)
        assert b.creation != first
    finally:
        await b.stop()


async def test_non_otpylib_registration_is_not_resolved(epmd_port: int) -> None:
    # Register the way an Erlang node would: no otpylib marker in "extra".
    reader, writer = await asyncio.open_connection("127.0.0.1", epmd_port)
    try:
        writer.write(encode_alive2_req("erl", 4999, extra=b""))
        assert (await reader.read(2))[:1] in (b"v", b"y")
        client = EpmdDiscovery(port=epmd_port, register=False)
        assert await client.resolve("erl@127.0.0.1") is None
        assert client.resolve_failure("erl@127.0.0.1") == (
            "erl@127.0.0.1 is not an otpylib node (the port mapper at "
            f"127.0.0.1:{epmd_port} has it registered by another kind of node, probably "
            "Erlang); otpylib speaks its own distribution protocol and cannot connect to it"
        )
        assert (await client.names())["erl"] == 4999
    finally:
        writer.close()


async def test_unreachable_mapper_is_a_clear_line_not_an_exception() -> None:
    port = _free_loopback_port()
    disco = EpmdDiscovery(port=port)
    assert await disco.resolve("a@127.0.0.1") is None
    why = disco.resolve_failure("a@127.0.0.1")
    assert why is not None
    assert why.startswith(f"the port mapper at 127.0.0.1:{port} did not answer (")
    assert why.endswith(
        "); no node runs on 127.0.0.1 with this port mapper (check ERL_EPMD_PORT), or give "
        "NAME@HOST:PORT"
    )
    with pytest.raises(
        DiscoveryError, match=r"^cannot register a@127\.0\.0\.1 with the port mapper at "
    ):
        await disco.start("a@127.0.0.1", "127.0.0.1", 1)


async def test_kill_is_refused_while_nodes_are_registered() -> None:
    server = EpmdServer(0, ["127.0.0.1"])
    await server.start()
    try:
        a = EpmdDiscovery(port=server.port)
        await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
        assert await kill_mapper(server.port) is False
        assert not server.stopped.is_set()
        await a.stop()
        deadline = time.monotonic() + DEADLINE
        while server.names():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert await kill_mapper(server.port) is True
        await asyncio.wait_for(server.stopped.wait(), DEADLINE)
    finally:
        await server.close()


async def test_garbage_and_silence_do_not_disturb_the_mapper() -> None:
    server = EpmdServer(0, ["127.0.0.1"])
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\x03GET")  # a whole request, of no known kind
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""  # dropped, no answer
        writer.close()
        a = EpmdDiscovery(port=server.port)
        await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
        assert server.names() == {"alpha": 4370}
        await a.stop()
    finally:
        await server.close()
