"""Processes the CLI tests start in ``otpy-node`` children (``--run cli_procs:...``)."""

from __future__ import annotations

import asyncio

from otpylib import process


async def echo_service() -> None:
    """Register as ``echo`` and answer ``(sender, msg)`` with ``("echo", msg)``."""
    await process.register("echo")
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))


async def sleeper() -> None:
    """Register as ``sleeper`` and never read a message: its queue only grows."""
    await process.register("sleeper")
    await asyncio.Event().wait()


def not_async() -> None:
    """A plain function: ``--run`` refuses it, as a process function is ``async def``."""
