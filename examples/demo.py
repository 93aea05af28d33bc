"""``make demo``: three nodes, three OS processes, one cluster that finds itself.

What happens:

1. Three ``examples.demo_node`` processes start (alpha, beta, gamma) with one
   freshly generated cookie. Each announces itself over mDNS on loopback and
   connects to every node it discovers (full mesh).
2. On each node a ``greeter`` process pings the greeters of the other two
   nodes by registered name and prints the replies; it also monitors them.
3. When all three report a full mesh, gamma is killed with SIGKILL. alpha
   and beta print the ``DOWN ... noconnection`` and ``nodedown`` they see.
4. alpha and beta are stopped with SIGTERM (a clean shutdown) and the demo
   exits 0.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("alpha", "beta", "gamma")
#: Generous: discovery plus handshakes take well under 2 s on loopback.
MESH_DEADLINE = 30.0


def _pump(name: str, stream: object, out: queue.Queue[tuple[str, str]]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put((name, line.rstrip("\n")))


def main() -> int:
    """Run the demo; returns the exit code."""
    cookie = secrets.token_hex(16)
    env = dict(os.environ, OTPY_COOKIE=cookie, PYTHONUNBUFFERED="1")
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    procs: dict[str, subprocess.Popen[str]] = {}
    print(f"demo: starting {', '.join(NAMES)} as separate OS processes (mDNS on loopback)")
    t_start = time.monotonic()
    for name in NAMES:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.demo_node", name, *[n for n in NAMES if n != name]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs[name] = proc
        threading.Thread(target=_pump, args=(name, proc.stdout, lines), daemon=True).start()

    def show(until: str, count: int, deadline: float) -> bool:
        seen: set[str] = set()
        end = time.monotonic() + deadline
        while len(seen) < count and time.monotonic() < end:
            try:
                who, line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            print(f"  [{who:>5}] {line}")
            if until in line:
                seen.add(who)
        return len(seen) >= count

    code = 0
    try:
        if not show("mesh complete", 3, MESH_DEADLINE):
            print("demo: FAILED: the three nodes did not form a full mesh in time")
            return 1
        print(
            f"demo: full mesh after {time.monotonic() - t_start:.2f} s (including Python start-up)"
        )
        print("demo: killing gamma with SIGKILL; alpha and beta should see noconnection")
        procs["gamma"].send_signal(signal.SIGKILL)
        if not show("saw nodedown gamma", 2, 30.0):
            print("demo: FAILED: the survivors did not report gamma down")
            code = 1
        print("demo: stopping alpha and beta with SIGTERM (clean shutdown)")
        for name in ("alpha", "beta"):
            procs[name].send_signal(signal.SIGTERM)
        for name in ("alpha", "beta"):
            procs[name].wait(timeout=20)
        while not lines.empty():
            who, line = lines.get()
            print(f"  [{who:>5}] {line}")
        for name in ("alpha", "beta"):
            if procs[name].returncode != 0:
                print(f"demo: {name} exited with {procs[name].returncode}")
                code = 1
        print("demo: done" if code == 0 else "demo: FAILED")
        return code
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
