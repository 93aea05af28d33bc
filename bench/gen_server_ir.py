"""Remote gen_server calls as fixed workloads, for counting instructions per call.

Two nodes in this one OS process, talking over loopback TCP (busy waiting
off, so every instruction is work): callgrind then counts both sides of a
call, which a shared machine's wall clock cannot measure steadily. The
difference of two sizes cancels start-up::

    python -m bench.ir_per_item "bench/gen_server_ir.py call" 1280 3840 --uvloop

or by hand: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null
.venv/bin/python bench/gen_server_ir.py call N`` for two values of N, then
(total2 - total1) / (N2 - N1).

Workloads: ``raw`` (send ``(self, i)`` to an echo process and receive the
answer: bench.gen_server's raw row), ``call`` (``gen_server.call`` with
``timeout=None``), ``call5`` (the default 5 s timeout), ``concurrent``
(64 callers, N calls in all). Add ``--uvloop`` to run on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.gen_server import Echo, echo
from bench.harness import run_loop
from otpylib import gen_server, process

#: Callers of the ``concurrent`` workload (bench.gen_server's throughput row).
CALLERS = 64


async def run(workload: str, n: int) -> None:
    """Start two nodes, run ``n`` round trips of ``workload`` from the first, stop both."""
    from otpylib_dist import Node

    a = Node("gs_ir_a@127.0.0.1", cookie="gs-ir", busy_wait=0)
    b = Node("gs_ir_b@127.0.0.1", cookie="gs-ir", busy_wait=0)
    await a.initialize()
    await b.initialize()
    try:
        if not await a.connect(b.node_name, "127.0.0.1", b.port):
            raise RuntimeError("the two nodes could not connect")
        server = await gen_server.start(Echo, runtime=b)
        raw_server = await b.spawn(echo)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = [CALLERS if workload == "concurrent" else 1]

        async def caller(count: int) -> None:
            me = process.self()
            call, send, receive = gen_server.call, process.send, process.receive
            timeout = 5.0 if workload in ("call5", "concurrent") else None
            for i in range(count):
                if workload == "raw":
                    await send(raw_server, (me, i))
                    await receive()
                else:
                    await call(server, i, timeout)
            left[0] -= 1
            if not left[0]:
                done.set_result(None)

        for _ in range(left[0]):
            await a.spawn(caller, (n // left[0],))
        await done
    finally:
        await a.shutdown()
        await b.shutdown()


def main() -> None:
    """Run one workload of N calls (asyncio's default loop unless ``--uvloop``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=["call", "call5", "concurrent", "raw"])
    parser.add_argument("n", type=int, nargs="?", default=5_000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = parser.parse_args()
    run_loop(run(args.workload, args.n), args.uvloop)


if __name__ == "__main__":
    main()
