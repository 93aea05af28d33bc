"""CPU hogs: busy-loop OS processes that keep every core busy while a benchmark measures.

Why: a spin (busy wait) that shortens round trips on an idle machine can
make them far worse when the cores are taken, because the spinner then
competes with the very process it waits for. ``bench.dist --hogs N`` runs
its rows beside N of these to show both sides in one run.

Each hog is a plain ``python -c`` loop at normal priority, pinned to one
core (hog *i* to the *i*-th core this process may use, round robin): left
to the scheduler, two hogs sometimes share a core and leave the other one
idle, and the measurement then flips between an "every core busy" and an
"idle core" result from run to run (round trips of 34 or 130 µs with the
same code). It is stopped by
:func:`cpu_hogs`' ``finally`` (kill, then reap), and, should the benchmark
itself be killed with SIGKILL, it notices within milliseconds that its
parent is gone and exits on its own: no hog outlives the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: An argument every hog carries, so a test (or ``ps``) can tell them apart.
MARKER = "otpy-bench-hog"

# Spin; about every 10 ms, check that the parent is still the one that
# started us (a killed parent makes init, or a subreaper, our parent).
_HOG = """
import os, sys
parent = os.getppid()
sys.stdout.write("spinning\\n")
sys.stdout.flush()
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextmanager
def cpu_hogs(n: int) -> Iterator[list[int]]:
    """Start ``n`` busy-loop processes, yield their pids, and kill them all on the way out.

    Returns once every hog is spinning (it printed so), so a measurement
    taken inside the ``with`` never sees an idle core it should not.
    """
    if n < 0:
        raise ValueError(f"--hogs takes a number of processes >= 0, got {n}")
    procs: list[subprocess.Popen[bytes]] = []
    cores = sorted(os.sched_getaffinity(0))
    try:
        for i in range(n):
            proc = subprocess.Popen(
                [sys.executable, "-c", _HOG, MARKER],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
            procs.append(proc)
            os.sched_setaffinity(proc.pid, {cores[i % len(cores)]})
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline() != b"spinning\n":
                raise RuntimeError(f"CPU hog {proc.pid} did not start")
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
