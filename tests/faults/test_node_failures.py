"""Separate OS processes: a SIGKILLed peer gives noconnection, a SIGSTOPped one
net_tick_timeout, to every link and monitor across the connection."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from otpylib import process
from otpylib.runtime.atoms import DOWN, EXIT, NOCONNECTION, NODEDOWN, NODEUP, atom
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess

COOKIE = "fault-test-cookie"


async def _observe(
    node: DistributedBackend, target: str, port: int, fault: Callable[[], None]
) -> Any:
    result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        await node.monitor_nodes(True)
        assert await node.connect(target, "127.0.0.1", port)
        assert await process.receive(timeout=5) == (NODEUP, target)
        me = process.self()
        await process.send(("echo", target), (me, "hi"))
        assert await process.receive(timeout=5) == ("echo", "hi")
        echo_pid = await _whereis_remote(node, target)
        await process.link(echo_pid)
        ref = await process.monitor(echo_pid)
        await process.send(("echo", target), (me, "sync"))  # link/monitor are before this
        assert await process.receive(timeout=5) == ("echo", "sync")
        fault()
        got = [await process.receive(timeout=20) for _ in range(3)]
        result.set_result((got, echo_pid, ref))

    await node.spawn(watcher, trap_exits=True)
    return await asyncio.wait_for(result, 40)


async def _whereis_remote(node: DistributedBackend, target: str) -> Any:
    return await node.rpc(target, "whereis", "echo")


async def test_sigkill_peer_gives_noconnection(start_node: Callable[..., Any]) -> None:
    peer = start_node("victim@127.0.0.1", "--run", "fault_procs:echo_service")
    node = DistributedBackend("observer@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    try:
        got, pid, ref = await _observe(
            node, peer.name, peer.port, lambda: os.kill(peer.proc.pid, signal.SIGKILL)
        )
    finally:
        await node.shutdown()
    assert (EXIT, pid, NOCONNECTION) in got
    assert (DOWN, ref, pid, NOCONNECTION) in got
    assert (NODEDOWN, peer.name, {"reason": atom.ensure("connection_closed")}) in got


async def test_sigstop_peer_gives_net_tick_timeout(start_node: Callable[..., Any]) -> None:
    peer = start_node(
        "frozen@127.0.0.1", "--run", "fault_procs:echo_service", "--net-ticktime", "2"
    )
    node = DistributedBackend("observer2@127.0.0.1", cookie=COOKIE, net_ticktime=1.0)
    await node.initialize()
    try:
        got, pid, ref = await _observe(
            node, peer.name, peer.port, lambda: os.kill(peer.proc.pid, signal.SIGSTOP)
        )
    finally:
        await node.shutdown()
        os.kill(peer.proc.pid, signal.SIGCONT)
    assert (EXIT, pid, NOCONNECTION) in got
    assert (DOWN, ref, pid, NOCONNECTION) in got
    assert (NODEDOWN, peer.name, {"reason": atom.ensure("net_tick_timeout")}) in got
