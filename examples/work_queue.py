"""A work queue across nodes, surviving a worker node's death: ``python -m examples.work_queue``.

A dispatcher process (on this program's own node) hands out jobs to workers
on two other nodes, ``w1`` and ``w2``, each a separate OS process. Every job
is to square a number; a worker answers ``("done", self, job, result)`` and
gets the next job.

The dispatcher *monitors* each worker it spawned there
(``spawn_monitor("examples.work_queue:worker", node=...)``), so it knows
which jobs are in flight where. Midway, after six results, it SIGKILLs w2:
the connection drops, each w2 worker's monitor fires with ``noconnection``,
and the dispatcher puts that worker's job back in the queue for the workers
that are left. Every job is done exactly once in the results; none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from examples.node_processes import NodeProcess, start_nodes
from otpylib import DOWN, Pid, process
from otpylib_dist import Node

COOKIE = "work-queue-example"
JOBS = 20
WORKERS_PER_NODE = 2
KILL_AFTER = 6
#: Seconds a job takes: long enough that w2 has work in hand when it dies.
JOB_TIME = 0.05


def say(text: str) -> None:
    """Print one line at once (the example's test reads stdout)."""
    print(text, flush=True)


async def worker() -> None:
    """Square numbers until the node dies: ``("job", dispatcher, job, n)`` in, ``done`` out."""
    me = process.self()
    while True:
        _, dispatcher, job, n = await process.receive()
        await asyncio.sleep(JOB_TIME)
        await process.send(dispatcher, ("done", me, job, n * n))


async def dispatcher(
    worker_nodes: list[str], kill_w2: Callable[[], None], done: asyncio.Future[dict[int, Any]]
) -> None:
    """Start the workers, hand out every job, re-dispatch the jobs of lost workers."""
    me = process.self()
    workers: dict[Pid, str] = {}  # live worker -> its node
    for node in worker_nodes:
        for _ in range(WORKERS_PER_NODE):
            pid, _ref = await process.spawn_monitor("examples.work_queue:worker", node=node)
            workers[pid] = node
    say(f"dispatcher: {len(workers)} workers on {', '.join(worker_nodes)}")
    queue = deque(range(1, JOBS + 1))
    in_flight: dict[Pid, int] = {}
    results: dict[int, tuple[int, str]] = {}

    async def hand_out() -> None:
        for pid in workers:
            if pid not in in_flight and queue:
                job = queue.popleft()
                in_flight[pid] = job
                await process.send(pid, ("job", me, job, job))

    await hand_out()
    killed = False
    while len(results) < JOBS:
        msg = await process.receive()
        if msg[0] == "done":
            _, pid, job, result = msg
            in_flight.pop(pid, None)
            results[job] = (result, workers.get(pid, "?"))
            await hand_out()
            if len(results) == KILL_AFTER and not killed:
                killed = True
                say(f"dispatcher: {KILL_AFTER} results in; killing w2 (SIGKILL)")
                kill_w2()
        elif msg[0] is DOWN:
            _, _ref, pid, reason = msg
            node = workers.pop(pid)
            job = in_flight.pop(pid, None)
            if job is not None:
                queue.appendleft(job)
                say(f"dispatcher: a worker on {node} was lost ({reason}); job {job} re-dispatched")
            await hand_out()
    done.set_result(results)


async def run(w1: NodeProcess, w2: NodeProcess) -> dict[int, Any]:
    """This program's node: connect to the workers' nodes, run the dispatcher."""
    node = Node("dispatcher@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    try:
        for peer in (w1, w2):
            assert await node.connect(peer.name, "127.0.0.1", peer.port)
        done: asyncio.Future[dict[int, Any]] = asyncio.get_running_loop().create_future()
        await node.spawn(dispatcher, [[w1.name, w2.name], w2.kill, done])
        return await asyncio.wait_for(done, 60)
    finally:
        await node.shutdown()


def main() -> None:
    """Start the two worker nodes, run the queue, print what was done where."""
    logging.basicConfig(level=logging.ERROR)
    w1, w2 = start_nodes(["w1@127.0.0.1", "w2@127.0.0.1"], COOKIE)
    try:
        results = asyncio.run(run(w1, w2))
    finally:
        w1.stop()
        w2.kill()
    by_node = {
        name: sum(1 for _, n in results.values() if n == name) for name in (w1.name, w2.name)
    }
    say(f"main: results for jobs {min(results)}..{max(results)}: {len(results)} of {JOBS}")
    right = all(result == job * job for job, (result, _) in results.items())
    say(f"main: every result is the square of its job: {right}")
    say(f"main: sum of the results: {sum(r for r, _ in results.values())}")
    say(f"main: jobs done on w1: {by_node[w1.name]}, on w2: {by_node[w2.name]}")


if __name__ == "__main__":
    main()
