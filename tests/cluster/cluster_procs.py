"""Process functions the cluster tests spawn by reference ("cluster_procs:echo")."""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import process


async def echo() -> None:
    """Reply ``("echo", msg)`` to every ``(sender, msg)``."""
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))


async def sleeper(seconds: float = 60.0) -> None:
    """Stay alive (and receive nothing) for ``seconds``: a process that is just there."""
    await asyncio.sleep(seconds)


async def crash_when_told(text: str) -> None:
    """Raise ``ValueError(text)`` at the first message (sent once the test watches)."""
    await process.receive()
    raise ValueError(text)


async def end_when_told() -> None:
    """End normally at the first message (sent once the test watches)."""
    await process.receive()


async def report_to(pid: Any, value: Any) -> None:
    """Send ``value`` to ``pid`` and end."""
    await process.send(pid, value)


async def exit_program() -> None:
    """Raise ``SystemExit`` as ``sys.exit`` would: it must end this process only."""
    await asyncio.sleep(0)
    raise SystemExit(3)
