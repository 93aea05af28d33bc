"""Processes the fault tests start in separate OS nodes (``--run fault_procs:...``)."""

from __future__ import annotations

from otpylib import process


async def echo_service() -> None:
    """Register as ``echo`` and answer ``(sender, msg)`` with ``("echo", msg)``."""
    await process.register("echo")
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))
