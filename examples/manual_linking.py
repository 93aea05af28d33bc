# Seed manual, "Process Linking / Bidirectional Links".
"""Run with ``python -m examples.manual_linking``.

When processes are linked, if one exits abnormally, the other is terminated
too (unless it's trapping exits). The child's crash is logged once (with its
traceback); the parent dies of the link signal without a second report.
"""

from __future__ import annotations

import asyncio

from otpylib import Runtime, process


async def parent_process() -> None:
    """Parent that spawns and links to a child."""
    print(f"Parent {process.self()} starting...")

    # Spawn and link to child
    child_pid = await process.spawn_link(child_process)
    print(f"Parent linked to child {child_pid}")

    # Wait a bit
    await asyncio.sleep(0.5)

    # If child crashes, we'll be terminated too
    print("Parent: still running after child crashed!")
    await asyncio.sleep(1.0)


async def child_process() -> None:
    """Child that will crash."""
    print(f"Child {process.self()} starting...")
    await asyncio.sleep(0.2)

    print("Child: about to crash!")
    raise Exception("Child process error!")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    parent_pid = await runtime.spawn(parent_process)

    # Wait to see what happens
    await asyncio.sleep(2.0)

    # Check if parent is still alive
    if runtime.is_alive(parent_pid):
        print("Parent survived (unexpected!)")
    else:
        print("Parent was terminated due to linked child crash")

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
