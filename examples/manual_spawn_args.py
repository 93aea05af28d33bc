# Seed manual, "Spawning Processes / Process with Arguments".
"""Run with ``python -m examples.manual_spawn_args``."""

from __future__ import annotations

import asyncio

from otpylib import Pid, Runtime, process


async def worker_process(work_id: int, work_type: str) -> None:
    """Process that receives arguments."""
    print(f"Worker {process.self()} processing {work_type} job #{work_id}")
    await asyncio.sleep(0.5)  # Simulate work
    print(f"Worker {process.self()} completed job #{work_id}")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Spawn multiple workers with different arguments
    workers: list[Pid] = []
    for i in range(3):
        pid = await runtime.spawn(worker_process, args=[i], kwargs={"work_type": "analysis"})
        workers.append(pid)

    # Wait for all to complete
    await asyncio.sleep(1.0)

    # Check which are still alive
    for pid in workers:
        alive = runtime.is_alive(pid)
        print(f"Process {pid} alive: {alive}")

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
