"""Processes for the observability tests, run by ``otpy-node --run obs_procs:...``."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from otpylib import gen_server, process, supervisor
from otpylib.gen_server import GenServer
from otpylib.supervisor import ONE_FOR_ALL, ChildSpec

#: The busy process is fed this many messages per 20 ms (it reads none).
BURST = 20


class Counter(GenServer):
    """A gen_server that counts casts (ps shows its class)."""

    async def init(self, *args: Any) -> Any:
        return 0

    async def handle_cast(self, request: Any, state: Any) -> Any:
        return (gen_server.NOREPLY, state + 1)


async def busy() -> None:
    """Registered ``busy``: takes nothing, so its queue only grows."""
    await process.register("busy")
    await asyncio.Event().wait()


async def feeder(target: Any) -> None:
    """Send ``BURST`` messages to ``target`` every 20 ms."""
    while True:
        for i in range(BURST):
            await process.send(target, i)
        await asyncio.sleep(0.02)


async def quiet() -> None:
    """Registered ``quiet``: an idle process."""
    await process.register("quiet")
    await asyncio.Event().wait()


async def main() -> None:
    """A supervisor (one_for_all) over a Counter, a busy process fed steadily, an idle one."""
    await supervisor.start_link(
        [ChildSpec("counter", partial(gen_server.start_link, Counter, name="counter"))],
        strategy=ONE_FOR_ALL,
        name="top_sup",
    )
    await process.spawn(quiet)
    target = await process.spawn(busy)
    await process.spawn(feeder, [target], name="feeder")
    await asyncio.Event().wait()
