"""Processes the reliability tests start in separate OS nodes (``--run rel_procs:...``)."""

from __future__ import annotations

import time
from typing import Any

from otpylib import process
from otpylib.runtime.atoms import atom


async def blocker() -> None:
    """Register as ``blocker``; on ``(sender, "block", s)`` block the event loop for s seconds.

    ``time.sleep`` inside a process is the busy node of the tests: a
    CPU-bound callback or a slow synchronous call looks the same to the loop.
    Replies ``("unblocked", s)`` afterwards; answers ``(sender, "ping")`` with ``"pong"``.
    """
    await process.register("blocker")
    while True:
        msg: Any = await process.receive()
        sender = msg[0]
        if msg[1] == "block":
            time.sleep(msg[2])
            await process.send(sender, ("unblocked", msg[2]))
        elif msg[1] == "ping":
            await process.send(sender, "pong")


async def atom_flooder() -> None:
    """Register as ``flooder``; on ``(sender, "flood", n, prefix)`` send n messages, each
    carrying an atom never seen before, then ``("done", n)``."""
    await process.register("flooder")
    while True:
        sender, _, n, prefix = await process.receive()
        for i in range(n):
            await process.send(sender, ("atom", atom.ensure(f"{prefix}{i}")))
        await process.send(sender, ("done", n))
