"""Time from start to a fully connected mesh, with mDNS discovery on loopback.

Two set-ups, each for 3 and 8 nodes:

- *in-process*: N ``Node`` nodes in this process, each with its
  own ``MdnsDiscovery`` on ``127.0.0.1``, started at once; the clock runs
  from the first ``initialize()`` until every node has N-1 peers in
  ``nodes()``.
- *OS processes*: N ``otpy-node --discovery mdns`` processes started at once;
  the clock runs from the first spawn until every process has logged N-1
  ``nodeup`` lines (so it includes interpreter start-up and imports, shown
  separately as "ready": the last process printing its listening line).

The issue's target is under 2 s. mDNS needs multicast on loopback: run it as
``scripts/netns-run .venv/bin/python -m bench.mesh`` (a private network
namespace where ``lo`` carries multicast). Nothing leaves loopback.

Usage: ``python -m bench.mesh [--sizes 3 8] [--rounds R] [--no-processes]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from otpylib_dist import Node
from otpylib_dist.discovery.mdns import MdnsDiscovery

#: Seconds after which a round is reported as not converged.
DEADLINE = 30.0


@dataclass(frozen=True, slots=True)
class Round:
    """One measured start of N nodes."""

    #: Seconds from the start until every node saw every other one.
    mesh: float
    #: Seconds from the start until every node was listening (and announcing).
    ready: float


async def in_process(n: int) -> Round:
    """Start ``n`` nodes with mDNS in this process; time until the mesh is full."""
    cookie = f"mesh-{secrets.token_hex(4)}"
    service_type = f"_otpyb-{secrets.token_hex(3)}._tcp.local."
    nodes = [
        Node(
            f"m{i}@127.0.0.1",
            cookie=cookie,
            discovery=MdnsDiscovery(cookie, interfaces=["127.0.0.1"], service_type=service_type),
            auto_connect=True,
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    try:
        await asyncio.gather(*(node.initialize() for node in nodes))
        ready = time.perf_counter() - start
        async with asyncio.timeout(DEADLINE):
            while not all(len(node.nodes()) == n - 1 for node in nodes):
                await asyncio.sleep(0.005)
        return Round(mesh=time.perf_counter() - start, ready=ready)
    finally:
        await asyncio.gather(*(node.shutdown() for node in nodes), return_exceptions=True)


_NODEUP = re.compile(r'msg="nodeup (\S+)')
_LISTENING = re.compile(r"^node (\S+) listening on (\d+)$")


async def os_processes(n: int) -> Round:
    """Start ``n`` ``otpy-node`` processes with mDNS; time until each logged n-1 nodeups."""
    cookie = f"mesh-{secrets.token_hex(4)}"
    start = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "otpylib_dist.cli",
            "--name",
            f"p{i}@127.0.0.1",
            "--cookie",
            cookie,
            "--discovery",
            "mdns",
            "--mdns-interface",
            "127.0.0.1",
            "--log-level",
            "info",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        for i in range(n)
    ]
    ready_at: list[float] = []
    mesh_at: list[float] = []

    async def watch_stdout(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        if _LISTENING.match(line.strip()):
            ready_at.append(time.perf_counter() - start)

    async def watch_stderr(proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        peers: set[str] = set()
        while len(peers) < n - 1:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise RuntimeError(f"a node exited before the mesh was full (rc {proc.returncode})")
            match = _NODEUP.search(line)
            if match:
                peers.add(match.group(1))
        mesh_at.append(time.perf_counter() - start)

    try:
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(watch_stdout(p) for p in procs))
            await asyncio.gather(*(watch_stderr(p) for p in procs))
        return Round(mesh=max(mesh_at), ready=max(ready_at))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()


def _report(label: str, rounds: Sequence[Round]) -> None:
    mesh = [r.mesh for r in rounds]
    ready = [r.ready for r in rounds]
    print(
        f"{label:<28} mesh median {statistics.median(mesh):5.2f} s "
        f"(min {min(mesh):.2f}, max {max(mesh):.2f}); "
        f"all listening after {statistics.median(ready):.2f} s"
    )


async def _main(sizes: Sequence[int], rounds: int, processes: bool) -> None:
    for n in sizes:
        _report(f"{n} nodes, in one process", [await in_process(n) for _ in range(rounds)])
    if processes:
        for n in sizes:
            _report(f"{n} nodes, {n} OS processes", [await os_processes(n) for _ in range(rounds)])


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print the mesh formation times."""
    parser = argparse.ArgumentParser(prog="python -m bench.mesh", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 8], help="cluster sizes")
    parser.add_argument("--rounds", type=int, default=3, help="starts per size (median shown)")
    parser.add_argument(
        "--no-processes", action="store_true", help="skip the OS-process measurement"
    )
    args = parser.parse_args(argv)
    # Only errors: while a mesh forms, nodes that dial each other at once log
    # warnings (a refused duplicate attempt) that say nothing about the time.
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_main(args.sizes, args.rounds, not args.no_processes))


if __name__ == "__main__":
    main()
