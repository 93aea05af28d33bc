"""gen_server and supervisor across real OS processes: a SIGKILLed node fails
the calls pending there with noconnection, and the supervisor moves its child
to the node that survived."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from fault_procs import start_worker_on_first_reachable

from otpylib import gen_server, process, supervisor
from otpylib._gen import describe_reason
from otpylib.runtime.atoms import NOCONNECTION
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess

COOKIE = "fault-test-cookie"

#: Generous deadline for each event the test waits for.
WAIT = 20.0


async def test_a_sigkilled_nodes_child_restarts_on_the_survivor(
    start_node: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otpylib._supervisor_server")
    victim = start_node("victim3@127.0.0.1")
    survivor = start_node("survivor3@127.0.0.1")
    boss = DistributedBackend("boss@127.0.0.1", cookie=COOKIE)
    await boss.initialize()
    reports: asyncio.Queue[Any] = asyncio.Queue()

    async def collect() -> None:
        while True:
            reports.put_nowait(await process.receive())

    async def next_report(kind: str) -> Any:
        while True:
            msg = await asyncio.wait_for(reports.get(), WAIT)
            if msg[0] == kind:
                return msg

    try:
        assert await boss.connect(victim.name, "127.0.0.1", victim.port)
        assert await boss.connect(survivor.name, "127.0.0.1", survivor.port)
        observer = await boss.spawn(collect)
        start = partial(
            start_worker_on_first_reachable, [victim.name, survivor.name], observer, "worker"
        )
        await supervisor.start([supervisor.ChildSpec("worker", start)], runtime=boss)
        _, first, where = await next_report("started")
        assert where == victim.name
        assert await gen_server.call(("worker", victim.name), "incr", runtime=boss) == 1

        pending = asyncio.ensure_future(
            gen_server.call(("worker", victim.name), "wait_forever", timeout=None, runtime=boss)
        )
        await next_report("waiting")
        os.kill(victim.proc.pid, signal.SIGKILL)

        with pytest.raises(gen_server.CallError) as e:
            await asyncio.wait_for(pending, WAIT)
        assert e.value.reason is NOCONNECTION
        _, second, where = await next_report("started")
        assert where == survivor.name and second != first
        wanted = f"child 'worker' exited with reason {describe_reason(NOCONNECTION)}; restarting"
        assert any(wanted in r.getMessage() for r in caplog.records)
        assert await gen_server.call(("worker", survivor.name), "incr", runtime=boss) == 1
    finally:
        await boss.shutdown()
