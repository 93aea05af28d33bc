# Seed manual, "Message Passing / Sending and Receiving Messages".
"""Run with ``python -m examples.manual_echo``."""

from __future__ import annotations

import asyncio

from otpylib import Pid, Runtime, process


async def echo_server() -> None:
    """Process that echoes back messages."""
    print(f"Echo server {process.self()} starting...")

    while True:
        try:
            # Wait for a message (with timeout to allow shutdown)
            message = await process.receive(timeout=1.0)
            print(f"Echo server received: {message}")

            # Echo back if it's a tuple with sender
            if isinstance(message, tuple) and len(message) == 2:
                sender, content = message
                await process.send(sender, f"echo: {content}")

        except TimeoutError:
            continue  # Check if we should keep running
        except Exception as e:
            print(f"Echo server error: {e}")
            break


async def client_process(server_pid: Pid) -> None:
    """Process that sends messages to echo server."""
    my_pid = process.self()

    # Send a message with our PID for reply
    await process.send(server_pid, (my_pid, "Hello, server!"))

    # Wait for response
    response = await process.receive(timeout=2.0)
    print(f"Client received response: {response}")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Start echo server
    server_pid = await runtime.spawn(echo_server)
    await asyncio.sleep(0.1)  # Let server start

    # Start client
    await runtime.spawn(client_process, args=[server_pid])

    # Let them communicate
    await asyncio.sleep(1.0)

    # Stop server
    await runtime.exit(server_pid, "shutdown")
    await asyncio.sleep(0)  # (added) let the exit signal land before looking
    print(f"Echo server alive after exit: {runtime.is_alive(server_pid)}")

    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
