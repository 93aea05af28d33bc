"""A peer cannot grow our atom table without bound; past the limit its messages are
dropped with a log line and the connection stays up."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from rel_nodes import COOKIE

from otpylib import process
from otpylib.runtime.atoms import NODEDOWN, atom
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess


async def test_atoms_past_the_limit_are_dropped_and_the_connection_kept(
    start_node: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    peer = start_node("flood@127.0.0.1", "--run", "rel_procs:atom_flooder")
    node = DistributedBackend("target@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    saved = atom.untrusted_limit
    atom.untrusted_limit = atom.untrusted_count + 100
    prefix = "flood_" + secrets.token_hex(4) + "_"
    result: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def receiver() -> None:
        await node.monitor_nodes(True)
        assert await node.connect(peer.name, "127.0.0.1", peer.port)
        await process.send(("flooder", peer.name), (process.self(), "flood", 1000, prefix))
        got = []
        while True:
            msg = await process.receive(timeout=30)
            got.append(msg)
            if msg == ("done", 1000) or msg[0] == NODEDOWN:
                break
        result.set_result(got)

    try:
        with caplog.at_level(logging.ERROR, logger="otpylib_dist.incoming"):
            await node.spawn(receiver)
            got = await asyncio.wait_for(result, 60)
            still_up = peer.name in node.nodes()
            for _ in range(500):  # the refusal log writes from its own thread
                if any("atom table full" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
    finally:
        atom.untrusted_limit = saved
        await node.shutdown()
    atoms = [m[1] for m in got if m[0] == "atom"]
    assert got[-1] == ("done", 1000)
    assert len(atoms) == 100
    assert [a.name for a in atoms] == [f"{prefix}{i}" for i in range(100)]
    assert atom.exists(f"{prefix}100") is None
    assert still_up
    lines = [r.getMessage() for r in caplog.records if "atom table full" in r.getMessage()]
    assert lines and lines[0].startswith(f"dropped a message from {peer.name} to ")
    assert len(lines) <= 5  # rate-limited (refusal_log.BURST)
