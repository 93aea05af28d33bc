# Seed manual, "Best Practices": timeouts, clean termination, error isolation, discovery.
"""Run with ``python -m examples.manual_best_practices``.

The manual's four snippets use helpers it never defines (``should_shutdown``,
``cleanup``, ``process_message``, ``SpecificError``); they are defined here,
as small as possible, and ``main`` drives each snippet through its cases.
"""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import Runtime, atom, process

# ----------------------------------------------- helpers the manual leaves out

_shutdown_requested = False


def request_shutdown() -> None:
    """Ask ``robust_receiver`` to stop at its next timeout."""
    global _shutdown_requested
    _shutdown_requested = True


def should_shutdown() -> bool:
    """Whether ``request_shutdown`` was called."""
    return _shutdown_requested


async def cleanup() -> None:
    """Release whatever the process holds (here: just say so)."""
    print(f"Process {process.self()} cleaning up")


class SpecificError(Exception):
    """An error ``isolated_process`` knows how to handle."""


def process_message(message: Any) -> Any:
    """Upper-case a string; ``"bad input"`` is a known error, ``"poison"`` an unknown one."""
    if message == "bad input":
        raise SpecificError(f"cannot process {message!r}")
    if message == "poison":
        raise RuntimeError("poison message")
    return str(message).upper()


# ------------------------------------------------- 1. Always Handle Timeouts


async def robust_receiver() -> None:
    while True:
        try:
            message = await process.receive(timeout=1.0)
            # Process message
            print(f"robust_receiver got: {message}")
        except TimeoutError:
            # Check if we should continue
            if should_shutdown():
                print("robust_receiver: shutdown requested, leaving")
                break


# --------------------------------------------- 2. Clean Process Termination

# Define atom for shutdown protocol
SHUTDOWN = atom.ensure("shutdown")


async def graceful_process() -> None:
    try:
        while True:
            message = await process.receive()
            if message == SHUTDOWN:
                # Cleanup resources
                await cleanup()
                break
            # Handle other messages
            print(f"graceful_process handling: {message}")
    finally:
        # Always runs, even on crash
        print(f"Process {process.self()} terminating")


# ------------------------------------------------------- 3. Error Isolation


async def isolated_process() -> None:
    """Process that handles errors without crashing."""
    while True:
        try:
            message = await process.receive()
            # Dangerous operation
            result = process_message(message)
            print(f"Processed: {result}")

        except SpecificError as e:
            # Log and continue
            print(f"Handled error: {e}")

        except Exception as e:
            # Log and possibly exit
            print(f"Unexpected error: {e}")
            raise  # Let supervisor handle


# ------------------------------------------------------ 4. Process Discovery

STOP = atom.ensure("stop")


async def discoverable_service() -> None:
    """Service that can be found by name."""
    service_name = "my_service_v1"

    # Check if already registered
    if process.whereis(service_name):
        print(f"Service {service_name} already running")
        return

    await process.register(service_name)

    # Service loop...
    print(f"Service {service_name} registered as {process.self()}")
    while await process.receive() != STOP:
        pass


# -------------------------------------------------------------------- main


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    print("--- 1. Always Handle Timeouts")
    pid = await runtime.spawn(robust_receiver)
    await runtime.send(pid, "work item")
    await asyncio.sleep(0.1)
    request_shutdown()
    await asyncio.sleep(1.2)  # one receive timeout later it notices
    print(f"robust_receiver alive: {runtime.is_alive(pid)}")

    print("--- 2. Clean Process Termination")
    pid = await runtime.spawn(graceful_process)
    await runtime.send(pid, "hello")
    await runtime.send(pid, SHUTDOWN)
    await asyncio.sleep(0.1)
    print(f"graceful_process alive: {runtime.is_alive(pid)}")
    # The finally clause also runs when the process is killed from outside.
    pid = await runtime.spawn(graceful_process)
    await asyncio.sleep(0.1)
    await runtime.exit(pid, "kill")
    await asyncio.sleep(0.1)
    print(f"killed graceful_process alive: {runtime.is_alive(pid)}")

    print("--- 3. Error Isolation")
    pid = await runtime.spawn(isolated_process)
    for message in ("hello", "bad input", "poison"):
        await runtime.send(pid, message)
    await asyncio.sleep(0.1)
    print(f"isolated_process alive after poison: {runtime.is_alive(pid)}")

    print("--- 4. Process Discovery")
    first = await runtime.spawn(discoverable_service)
    await asyncio.sleep(0.1)
    second = await runtime.spawn(discoverable_service)
    await asyncio.sleep(0.1)
    print(f"whereis('my_service_v1') is first: {runtime.whereis('my_service_v1') == first}")
    print(f"second alive: {runtime.is_alive(second)}")
    await runtime.send("my_service_v1", STOP)
    await asyncio.sleep(0.1)
    print(f"registered after stop: {runtime.registered()}")

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
