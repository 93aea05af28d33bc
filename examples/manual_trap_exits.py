# Seed manual, "Process Linking / Trapping Exits".
"""Run with ``python -m examples.manual_trap_exits``.

The supervisor traps exits, so its two crashing workers reach it as
``(EXIT, pid, reason)`` messages instead of taking it down.
"""

from __future__ import annotations

import asyncio

from otpylib import EXIT, Runtime, process


async def supervisor_process() -> None:
    """Process that traps exits to handle failures gracefully."""
    print(f"Supervisor {process.self()} starting with trap_exits=True")

    # Spawn and link to workers
    worker1 = await process.spawn_link(worker, args=["worker1", 0.3])
    worker2 = await process.spawn_link(worker, args=["worker2", 0.5])

    print(f"Supervisor linked to workers: {worker1}, {worker2}")

    # Handle exit signals as messages
    while True:
        try:
            message = await process.receive(timeout=2.0)
            print(f"Supervisor received: {message}")

            # Exit messages arrive as (EXIT, pid, reason)
            if isinstance(message, tuple) and message[0] == EXIT:
                _, failed_pid, reason = message
                print(f"Supervisor: Worker {failed_pid} exited with: {reason}")

                # Could restart the worker here

        except TimeoutError:
            print("Supervisor: no more messages, exiting")  # (added)
            break


async def worker(name: str, crash_after: float) -> None:
    """Worker that crashes after some time."""
    print(f"{name} ({process.self()}) starting...")
    await asyncio.sleep(crash_after)
    raise Exception(f"{name} encountered an error!")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Spawn supervisor with trap_exits enabled
    await runtime.spawn(supervisor_process, trap_exits=True)

    # Let everything run
    await asyncio.sleep(3.0)

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
