# Seed manual, "Process Monitoring / Unidirectional Monitoring".
"""Run with ``python -m examples.manual_monitoring``.

Unlike links, monitors are one-way and don't cause cascading termination:
the monitor sees a DOWN for each worker, the crashing one included, and
keeps running.
"""

from __future__ import annotations

import asyncio

from otpylib import DOWN, Pid, Ref, Runtime, process


async def monitor_process() -> None:
    """Process that monitors other processes."""
    print(f"Monitor {process.self()} starting...")

    # Start some workers to monitor
    workers: dict[Ref, Pid] = {}
    for i in range(3):
        pid = await process.spawn(monitored_worker, args=[i])
        ref = await process.monitor(pid)
        workers[ref] = pid
        print(f"Monitoring worker {pid} with ref {ref}")

    # Wait for DOWN messages
    down_count = 0
    while down_count < 3:
        message = await process.receive()

        # DOWN messages arrive as (DOWN, ref, pid, reason)
        if isinstance(message, tuple) and message[0] == DOWN:
            _, ref, pid, reason = message
            print(f"Worker {pid} went down: {reason}")
            down_count += 1

    print("All workers have terminated")


async def monitored_worker(worker_id: int) -> None:
    """Worker that runs for a random time then exits."""
    runtime_ms = (worker_id + 1) * 200
    print(f"Worker {worker_id} running for {runtime_ms}ms...")
    await asyncio.sleep(runtime_ms / 1000)

    if worker_id == 1:
        raise Exception(f"Worker {worker_id} error!")

    print(f"Worker {worker_id} completed")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    await runtime.spawn(monitor_process)

    # Let everything run
    await asyncio.sleep(2.0)

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
