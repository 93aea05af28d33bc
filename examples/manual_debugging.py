# Seed manual, "Debugging Tips" (Process Inspection, Runtime Statistics).
"""Run with ``python -m examples.manual_debugging``.

A small scene to inspect: a registered service that traps exits and waits
in ``receive``, and a watcher linked to it and monitoring it.
"""

from __future__ import annotations

import asyncio

from otpylib import EXIT, Pid, Runtime, process


async def service() -> None:
    """Registered, traps exits, waits for messages until an exit signal arrives."""
    await process.register("service")
    process.flag("trap_exit", True)
    while True:
        message = await process.receive()
        if isinstance(message, tuple) and message[0] is EXIT:
            return  # e.g. (EXIT, runtime, shutdown) from runtime.shutdown()


async def watcher(target: Pid) -> None:
    """Links to and monitors ``target``, then waits."""
    await process.link(target)
    await process.monitor(target)
    while True:
        await process.receive()


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    pid = await runtime.spawn(service)
    await runtime.spawn(watcher, args=[pid])
    for i in range(3):
        await runtime.send(pid, ("hello", i))
    await asyncio.sleep(0.1)

    # --- Process Inspection

    # Get process info
    info = runtime.process_info(pid)
    assert info is not None
    print(f"Process {pid}:")
    print(f"  State: {info.state}")
    print(f"  Name: {info.name}")
    print(f"  Created: {info.created_at}")
    print(f"  Trap exits: {info.trap_exits}")
    print(f"  Links: {info.links}")  # (added)
    print(f"  Monitored by: {info.monitored_by}")  # (added)

    # List all processes
    all_pids = runtime.processes()
    print(f"Active processes: {len(all_pids)}")

    # Check registration
    registered = runtime.registered()
    print(f"Named processes: {registered}")

    # --- Runtime Statistics

    stats = runtime.statistics()
    print("Runtime stats:")
    print(f"  Uptime: {stats.uptime_seconds}s")
    print(f"  Total spawned: {stats.total_spawned}")
    print(f"  Active processes: {stats.active_processes}")
    print(f"  Messages sent: {stats.messages_processed}")
    print(f"  Active monitors: {stats.active_monitors}")
    print(f"  Active links: {stats.active_links}")

    await runtime.shutdown()
    print(f"After shutdown: {len(runtime.processes())} processes")  # (added)


if __name__ == "__main__":
    asyncio.run(main())
