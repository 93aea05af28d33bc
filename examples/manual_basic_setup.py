# Seed manual, "Basic Setup": create, initialize and shut down a runtime.
"""Run with ``python -m examples.manual_basic_setup``."""

from __future__ import annotations

import asyncio

from otpylib import Runtime
from otpylib.runtime.atoms import DOWN, EXIT, KILLED, NORMAL  # noqa: F401

# Note: In actual otpylib code, you'd import these atoms


async def main() -> None:
    # Create and initialize the runtime
    runtime = Runtime()
    await runtime.initialize()

    # Your process code here
    print(f"Runtime initialized on node {runtime.node_name}")

    # Cleanup
    await runtime.shutdown()
    print("Runtime shut down")


# Run the example
if __name__ == "__main__":
    asyncio.run(main())
