"""Fixed remote workloads for counting instructions, which a busy machine does not change.

Two nodes in one process, connected over loopback TCP: a client on node
``a`` sends N messages of ``bench.dist``'s shape (``(msg, pid, i,
"payload")``) to a sink on node ``b``, which takes them one ``receive`` at
a time, as ``bench.dist``'s sink does. The count covers both sides of every
message (sender and receiver), so it is the figure to compare before and
after a change to the send or receive path. Run it for two sizes; the
difference cancels start-up::

    python -m bench.ir_per_item "bench/dist_ir.py pid" 20000 60000 --uvloop

or by hand: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null
.venv/bin/python bench/dist_ir.py pid N`` for two values of N, then
(total2 - total1) / (N2 - N1).

Workloads: ``pid`` (to the sink's pid), ``name`` (to ``("sink", node)``,
as ``bench.dist`` sends), and ``batch`` (to the pid; the sink takes them
with ``receive_batch``), ``unread`` (to a name nobody holds there, then
one message to the sink: the sender's whole cost and the receiver's cost
of a frame it need not decode), and ``round-trip`` (``(self, i)`` to an
echo process on ``b`` and back, one at a time; per round trip). Add
``--uvloop`` to run on uvloop.

Differs from ``bench.dist``: one process and one loop, so the sender's
bursts and the receiver's reads interleave as that loop schedules them;
the instruction count per message is what it is for, not the rate.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.harness import run_loop
from otpylib import atom, process
from otpylib_dist import Node

MSG = atom.ensure("msg")
COOKIE = "bench-ir-cookie"
#: Seconds a workload may take at most (valgrind slows it ~50x).
DEADLINE = 600.0


async def _run(n: int, workload: str) -> None:
    a = Node("ir_a@127.0.0.1", cookie=COOKIE, busy_wait=0.0)
    b = Node("ir_b@127.0.0.1", cookie=COOKIE, busy_wait=0.0)
    await a.initialize()
    await b.initialize()
    a.add_address(b.node_name, "127.0.0.1", b.port)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        seen = 0
        if workload == "round-trip":
            send, receive = process.send, process.receive
            while True:
                sender, x = await receive()
                await send(sender, x)
        if workload == "unread":
            await process.receive()
        elif workload == "batch":
            receive_batch = process.receive_batch
            while seen < n:
                seen += len(await receive_batch())
        else:
            receive = process.receive
            while seen < n:
                await receive()
                seen += 1
        done.set_result(None)

    sink_pid = await b.spawn(sink, name="sink")
    target: Any = ("sink", b.node_name) if workload == "name" else sink_pid
    if workload == "unread":
        target = ("nobody", b.node_name)

    async def client() -> None:
        send = process.send
        me = process.self()
        if workload == "round-trip":
            receive = process.receive
            for i in range(n):
                await send(target, (me, i))
                await receive()
            done.set_result(None)
            return
        for i in range(n):
            await send(target, (MSG, me, i, "payload"))
        if workload == "unread":
            await send(sink_pid, "done")

    assert await a.connect(b.node_name)
    await a.spawn(client)
    # A lost message fails the run instead of hanging it (tests/bench runs it).
    await asyncio.wait_for(done, DEADLINE)
    await a.shutdown()
    await b.shutdown()


def main() -> None:
    """Run one workload of N messages (asyncio's default loop unless ``--uvloop``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("pid", "name", "batch", "unread", "round-trip"))
    parser.add_argument("n", type=int, nargs="?", default=100_000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = parser.parse_intermixed_args()  # --uvloop before or after the sizes
    run_loop(_run(args.n, args.workload), args.uvloop)


if __name__ == "__main__":
    main()
