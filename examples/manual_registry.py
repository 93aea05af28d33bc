# Seed manual, "Process Registry / Registering Named Processes".
"""Run with ``python -m examples.manual_registry``."""

from __future__ import annotations

import asyncio

from otpylib import Runtime, atom, process

# Import or create atoms for message protocols
PING = atom.ensure("ping")
STOP = atom.ensure("stop")


async def named_service() -> None:
    """A process that registers itself with a name."""
    # Register ourselves with a well-known name
    await process.register("database")
    print(f"Database service started as {process.self()}")

    while True:
        try:
            message = await process.receive(timeout=1.0)

            if message == PING:
                print("Database: pong!")
            elif message == STOP:
                print("Database: shutting down...")
                break

        except TimeoutError:
            continue


async def client() -> None:
    """Client that uses named process."""
    # Find process by name instead of PID
    db_pid = process.whereis("database")

    if db_pid:
        print(f"Client found database at {db_pid}")  # (added)
        await process.send("database", PING)  # Send atom object
        await asyncio.sleep(0.1)
        await process.send("database", STOP)
    else:
        print("Database service not found!")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Start service
    await runtime.spawn(named_service)
    await asyncio.sleep(0.1)  # Let it register
    print(f"Registered processes: {runtime.registered()}")  # (added) while it runs

    # Start client
    await runtime.spawn(client)

    await asyncio.sleep(1.0)

    # Show all registered names
    print(f"Registered processes: {runtime.registered()}")

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
