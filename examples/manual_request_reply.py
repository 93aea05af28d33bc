# Seed manual, "Advanced Patterns / Request-Reply Pattern".
"""Run with ``python -m examples.manual_request_reply``."""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import Runtime, atom, process

# Define atoms for our protocol
ADD = atom.ensure("add")
MULTIPLY = atom.ensure("multiply")
DIVIDE = atom.ensure("divide")
REPLY = atom.ensure("reply")
ERROR = atom.ensure("error")


async def server() -> None:
    """Server that handles requests and sends replies."""
    await process.register("calc_server")
    print("Calculator server ready")

    while True:
        message = await process.receive()

        if isinstance(message, tuple) and len(message) == 3:
            sender, op, args = message

            try:
                result: Any
                if op == ADD:
                    result = sum(args)
                elif op == MULTIPLY:
                    result = 1
                    for arg in args:
                        result *= arg
                else:
                    result = (ERROR, f"Unknown operation: {op}")

                await process.send(sender, (REPLY, result))

            except Exception as e:
                await process.send(sender, (ERROR, str(e)))


async def client() -> None:
    """Client making requests to server."""
    my_pid = process.self()

    # Make requests using atoms
    requests = [
        (ADD, [1, 2, 3, 4]),
        (MULTIPLY, [2, 3, 4]),
        (DIVIDE, [10, 2]),  # This will error (unknown op)
    ]

    for op, args in requests:
        await process.send("calc_server", (my_pid, op, args))

        reply = await process.receive(timeout=1.0)
        if reply[0] == REPLY:
            print(f"{op.name}{args} = {reply[1]}")
        else:
            print(f"{op.name}{args} failed: {reply[1]}")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    await runtime.spawn(server)
    await asyncio.sleep(0.1)

    await runtime.spawn(client)

    await asyncio.sleep(1.0)
    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
