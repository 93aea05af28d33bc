# Seed manual, "Spawning Processes / Basic Process Spawn".
"""Run with ``python -m examples.manual_basic_spawn``."""

from __future__ import annotations

import asyncio

from otpylib import Runtime, process


async def simple_process() -> None:
    """A basic process that just prints and exits."""
    print(f"Process {process.self()} is running!")
    # Process exits normally when function returns


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Spawn a simple process
    pid = await runtime.spawn(simple_process)
    print(f"Spawned process: {pid}")

    # Give it time to run
    await asyncio.sleep(0.1)

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
