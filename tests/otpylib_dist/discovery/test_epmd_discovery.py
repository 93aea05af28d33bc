"""EpmdDiscovery against a real ``epmd`` on a free loopback port (skipped without epmd)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from waiting import wait_until

from otpylib_dist.discovery import DiscoveryError, EpmdDiscovery

EPMD = shutil.which("epmd")
pytestmark = pytest.mark.skipif(
    EPMD is None, reason="epmd not installed (Debian: apt-get install erlang-base)"
)
#: Generous: epmd starts in milliseconds; this only bounds a broken setup.
DEADLINE = 10.0


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def epmd_port() -> Iterator[int]:
    assert EPMD is not None
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
                time.sleep(0.05)  # an OS process: nothing tells when it listens
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_register_resolve_list_and_unregister(epmd_port: int) -> None:
    a = EpmdDiscovery(port=epmd_port)
    client = EpmdDiscovery(port=epmd_port, register=False)
    await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
    try:
        assert a.creation is not None
        assert await client.resolve("alpha@127.0.0.1") == ("127.0.0.1", 4370)
        assert await client.resolve("nobody@127.0.0.1") is None
        assert await client.names() == {"alpha": 4370}
    finally:
        await a.stop()
    # EPMD drops the name when the registration connection closes: ask until it has.

    async def forgotten() -> bool:
        return await client.resolve("alpha@127.0.0.1") is None

    await wait_until(forgotten, "epmd dropped the name after stop()", DEADLINE, interval=0.05)


async def test_second_registration_of_a_name_is_refused(epmd_port: int) -> None:
    a = EpmdDiscovery(port=epmd_port)
    b = EpmdDiscovery(port=epmd_port)
    await a.start("alpha@127.0.0.1", "127.0.0.1", 4370)
    try:
        with pytest.raises(
            DiscoveryError,
            match=rf"^EPMD at 127\.0\.0\.1:{epmd_port} refused to register 'alpha' \(result ",
        ):
            await b.start("alpha@127.0.0.1", "127.0.0.1", 4371)
    finally:
        await a.stop()
        await b.stop()


async def test_non_otpylib_registration_is_not_resolved(epmd_port: int) -> None:
    from otpylib_dist.discovery.epmd import encode_alive2_req

    # Register the way an Erlang node would: no otpylib marker in "extra".
    reader, writer = await asyncio.open_connection("127.0.0.1", epmd_port)
    try:
        writer.write(encode_alive2_req("erl", 4999, extra=b""))
        assert (await reader.read(2))[:1] in (b"v", b"y")
        client = EpmdDiscovery(port=epmd_port, register=False)
        assert await client.resolve("erl@127.0.0.1") is None
        assert (await client.names())["erl"] == 4999
    finally:
        writer.close()


async def test_unreachable_epmd_is_a_clear_error() -> None:
    port = _free_loopback_port()
    disco = EpmdDiscovery(port=port)
    with pytest.raises(
        DiscoveryError,
        match=rf"^cannot reach EPMD at 127\.0\.0\.1:{port} to resolve a@127\.0\.0\.1: ",
    ):
        await disco.resolve("a@127.0.0.1")
    with pytest.raises(DiscoveryError, match=r"^cannot register a@127\.0\.0\.1 with EPMD at "):
        await disco.start("a@127.0.0.1", "127.0.0.1", 1)
