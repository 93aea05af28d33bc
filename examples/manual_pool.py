# Seed manual, "Advanced Patterns / Process Pool Pattern".
"""Run with ``python -m examples.manual_pool``.

Five clients share a pool of three workers; the last two jobs wait for a
worker to come back. Differs from the manual in one place (marked "fixed"):
the manual's manager deadlocks once all workers are busy.
"""

from __future__ import annotations

import asyncio

from otpylib import Pid, Runtime, atom, process

# Define atoms for pool protocol
REQUEST = atom.ensure("request")
WORKER_DONE = atom.ensure("worker_done")


async def pool_manager(pool_size: int) -> None:
    """Manages a pool of worker processes."""
    await process.register("pool_manager")

    # Create worker pool
    workers: list[Pid] = []
    available: asyncio.Queue[Pid] = asyncio.Queue()

    for i in range(pool_size):
        pid = await process.spawn(pool_worker, args=[i])
        workers.append(pid)
        await available.put(pid)

    print(f"Pool manager started with {pool_size} workers")

    while True:
        message = await process.receive()

        if isinstance(message, tuple) and message[0] == REQUEST:
            client_pid, work = message[1], message[2]

            # Get available worker
            if available.empty():
                # (fixed) The manual awaited available.get() here, but only this loop
                # puts workers back, so with every worker busy it waited forever.
                # Wait for a WORKER_DONE instead (selective receive).
                done = await process.receive(match=_is_worker_done)
                await available.put(done[1])
            worker_pid = await available.get()

            # Send work to worker
            await process.send(worker_pid, (client_pid, work))

        elif isinstance(message, tuple) and message[0] == WORKER_DONE:
            worker_pid = message[1]
            # Return worker to available pool
            await available.put(worker_pid)


def _is_worker_done(message: object) -> bool:
    return isinstance(message, tuple) and message[0] == WORKER_DONE


async def pool_worker(worker_id: int) -> None:
    """Worker in the pool."""
    my_pid = process.self()

    while True:
        client_pid, work = await process.receive()

        print(f"Worker {worker_id} processing: {work}")
        await asyncio.sleep(0.5)  # Simulate work

        # Send result to client
        await process.send(client_pid, f"Result of {work} from worker {worker_id}")

        # Notify manager we're available
        await process.send("pool_manager", (WORKER_DONE, my_pid))


async def pool_client(job_id: int) -> None:
    """Client submitting work to pool."""
    my_pid = process.self()

    # Submit work
    await process.send("pool_manager", (REQUEST, my_pid, f"job_{job_id}"))

    # Wait for result
    result = await process.receive(timeout=2.0)
    print(f"Client received: {result}")


async def main() -> None:
    runtime = Runtime()
    await runtime.initialize()

    # Start pool
    await runtime.spawn(pool_manager, args=[3])
    await asyncio.sleep(0.1)

    # Submit multiple jobs
    for i in range(5):
        await runtime.spawn(pool_client, args=[i])
        await asyncio.sleep(0.1)  # Stagger submissions

    await asyncio.sleep(3.0)
    await runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
