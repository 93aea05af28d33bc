"""After a partition only one side noticed, that side reconnects at once.

Node a (net_ticktime 1 s) reaches b (net_ticktime 60 s) through a relay
that can freeze: both directions stop, and no close crosses it. a declares
b down after a second of silence; b, which would wait a minute, still holds
its connection. When a dials again, b lets the same incarnation in (it
cannot be a twin), the dialer confirms at the challenge that it has no
connection, and b replaces the stale connection: links and monitors across
it fire ``noconnection`` first (Erlang's ``alive`` exchange).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from cluster_helpers import DEADLINE
from waiting import wait_until

from otpylib import DOWN, NOCONNECTION, process
from otpylib_dist import DistributedBackend

ClusterFactory = Callable[..., Awaitable[list[DistributedBackend]]]


class FreezableRelay:
    """A TCP relay to ``port`` on loopback that can stop carrying bytes (and closes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frozen = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._tasks.add(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            data = await src.read(65536)
            if self.frozen:
                if not data:
                    return  # a close does not cross a frozen relay
                continue
            if not data:
                dst.close()
                return
            dst.write(data)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()


async def test_the_side_that_noticed_a_partition_reconnects_at_once(
    make_cluster: ClusterFactory,
) -> None:
    (b,) = await make_cluster(1, net_ticktime=60.0)
    (a,) = await make_cluster(1, net_ticktime=1.0)
    relay = FreezableRelay(b.port)
    relay_port = await relay.start()
    try:
        assert await a.connect(b.node_name, "127.0.0.1", relay_port)
        watched = await a.spawn("cluster_procs:sleeper")
        downs: list[Any] = []

        async def watcher() -> None:
            ref = await process.monitor(watched)
            downs.append(ref)
            downs.append(await process.receive())

        await b.spawn(watcher)
        await wait_until(lambda: len(downs) == 1, "b's monitor on a's process")

        relay.frozen = True
        await wait_until(lambda: b.node_name not in a.nodes(), "a noticing the partition")
        assert a.node_name in b.nodes()  # b has not noticed (it would take a minute)

        # a dials b directly: b replaces its stale connection at once.
        assert await asyncio.wait_for(a.connect(b.node_name, "127.0.0.1", b.port), DEADLINE)
        await wait_until(lambda: len(downs) == 2, "the DOWN across the stale connection")
        assert downs[1] == (DOWN, downs[0], watched, NOCONNECTION)
        assert a.node_name in b.nodes() and b.node_name in a.nodes()

        assert await b.ping(a.node_name)
    finally:
        await relay.stop()
