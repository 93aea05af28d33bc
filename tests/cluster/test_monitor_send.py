"""A remote call's monitor and message travel as one MonitorSend frame, when the peer reads it.

What must hold: a peer that set ``Flags.MONITOR_SEND`` gets one frame, any
other peer the Monitor and then the Send; the receiver sets up the monitor
before it delivers the message (a dead target answers ``noproc`` and gets
nothing); and the monitor half is checked like a Monitor: a peer cannot
monitor in another node's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_helpers import DEADLINE, run_in
from raw_peer import authenticated
from waiting import wait_until

from otpylib import gen_server, process
from otpylib.runtime.atoms import NOPROC, atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist import DistributedBackend
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.framing import TICK, FrameReader
from otpylib_dist.protocol.handshake import Flags

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]
COOKIE = "cluster-test-cookie"
MSG = atom.ensure("msg")


async def _frames_of_a_call(node: DistributedBackend, flags: int) -> list[Any]:
    """The frames ``node`` sends a raw peer (with ``flags``) for a call to one of its pids."""
    name = f"raw{flags}@127.0.0.1"
    reader, writer = await authenticated(node, name, COOKIE, flags=flags)
    server = Pid(name, 1, 7)  # a pid of the raw peer (creation 7, as in its Hello)

    async def call() -> None:
        with pytest.raises(TimeoutError):
            await gen_server.call(server, "ping", timeout=0.2)  # nobody answers

    done = asyncio.ensure_future(node.spawn(call))
    frames = FrameReader(1 << 20)
    decoder = control.ControlDecoder()
    got: list[Any] = []
    while not any(type(m) in (control.Send, control.MonitorSend) for m in got):
        frames.receive_data(await asyncio.wait_for(reader.read(65536), DEADLINE))
        got += [decoder.decode(f) for f in frames.frames() if f is not TICK]
    await done
    writer.close()
    return [m for m in got if type(m) is not control.Peers]


async def test_a_call_is_one_frame_to_a_peer_that_reads_monitor_send(
    make_cluster: ClusterFactory,
) -> None:
    (node,) = await make_cluster(1)
    [fused] = await _frames_of_a_call(node, int(Flags.MONITOR_SEND))
    assert type(fused) is control.MonitorSend
    assert fused.target.node.startswith("raw") and fused.ref.node == node.node_name
    assert decode_term(fused.payload)[-1] == "ping"
    kinds = [type(m) for m in await _frames_of_a_call(node, 0)]
    assert kinds == [control.Monitor, control.Send]  # the same call to an older peer


async def test_a_call_in_one_frame_to_a_dead_pid_fails_with_noproc(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)

    async def gone() -> None:
        return

    dead = await b.spawn(gone)
    await wait_until(lambda: not b.is_alive(dead), "the target to end")
    assert await a.connect(b.node_name)  # up already: the call takes the one-frame path

    async def ask() -> Any:
        return await gen_server.call(dead, "ping", timeout=DEADLINE)

    with pytest.raises(gen_server.CallError) as failed:
        await run_in(a, ask)
    assert failed.value.reason is NOPROC


@pytest.mark.parametrize("forged", ["owner", "ref"])
async def test_a_monitor_send_in_another_nodes_name_closes_the_connection(
    make_cluster: ClusterFactory, forged: str
) -> None:
    (node,) = await make_cluster(1)
    got: list[Any] = []

    async def sink() -> None:
        got.append(await process.receive())

    target = await node.spawn(sink)
    name = "forger@127.0.0.1"
    reader, writer = await authenticated(
        node, name, COOKIE, flags=int(Flags.MONITOR_SEND | Flags.RUNS)
    )
    await wait_until(lambda: name in node.nodes(), "the forger is up")
    owner = Pid("elsewhere@127.0.0.1" if forged == "owner" else name, 1, 7)
    ref = Ref("elsewhere@127.0.0.1" if forged == "ref" else name, 1, 7)
    out = bytearray()
    ControlEncoder().monitor_send_into(owner, target, ref, (MSG, "forged"), out)
    writer.write(bytes(out))
    while await asyncio.wait_for(reader.read(65536), DEADLINE):
        pass  # the node closes the connection: EOF
    await wait_until(lambda: name not in node.nodes(), "the forger is down")
    assert got == []  # the message did not arrive either
    assert node.process_info(target) is not None
    writer.close()
