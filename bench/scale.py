"""Scale curves: cost per message against live processes, and a mesh against its size.

Two curves, each printed with its ratio to the smallest point measured in
the same run (the third, cost against message size, is ``bench.sizes``):

- *processes*: one runtime holds N idle processes (blocked in
  ``receive``; 1 to 100k) while a pair of processes exchanges messages:
  round trip (µs) and one-way (messages/s). What grows with N is what the
  runtime does per message in proportion to its size, and the garbage
  collector's full passes over every live process.
- *nodes*: N ``otpy-node`` OS processes (2 to 16) started at once, each
  with one ``--connect`` to the previous one (``--discovery none``), so
  only ``connect_all`` can make the full mesh. Printed: seconds until every
  node logged N-1 ``nodeup`` lines (from the spawn, so interpreter
  start-up is in), until the last node printed its listening line (it
  does so once its own ``--connect`` is up), the difference (what
  ``connect_all`` took after that), and each node's idle CPU once meshed,
  from its clock ticks in ``/proc/PID/stat`` over ``--idle-seconds`` (an
  idle node ticks each peer every ``net_ticktime`` / 4 = 15 s, so a short
  window mostly sees the event loop asleep).

Usage: ``python -m bench.scale [--processes 1 10 ...] [--nodes 2 4 ...]
[--idle-seconds S] [--repeat R] [--asyncio] [--no-erlang] [--quick]``; ``--nodes`` or
``--processes`` with no sizes skips that curve. The mesh is also formed by
as many Erlang nodes (when ``erl`` is installed), each pinging the
previous one, with the ratio ours / Erlang per size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    erlang_missing,
    erlang_nodes,
    exit_on_sigterm,
    run_loop,
    stop,
    use_uvloop,
)
from otpylib import Pid, Runtime, atom, process

MSG = atom.ensure("msg")
DONE = atom.ensure("done")
#: Seconds a mesh has to form before the run is reported as failed.
MESH_DEADLINE = 120.0
#: Lines of each node's log kept to explain a mesh that did not form.
_TAIL_LINES = 20


# --------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class ProcessPoint:
    """Message costs with ``live`` idle processes present."""

    live: int
    round_trip_us: float
    one_way_per_s: float
    #: Full (generation 2) garbage collections while the pair was measured.
    full_gcs: int
    #: Milliseconds the collector ran (all generations) while the pair was measured.
    gc_ms: float


class GcClock:
    """Counts full collections and the time spent collecting, through ``gc.callbacks``.

    Why: with many live processes a full collection walks every one of
    them, so its cost per message grows with the process count; this shows
    whether that, and not the runtime, is what a curve measures.
    """

    def __init__(self) -> None:
        self.full = 0
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2


async def _idle() -> None:
    await process.receive()


async def _echo() -> None:
    receive, send = process.receive, process.send
    while True:
        sender, x = await receive()
        await send(sender, x)


async def _sink(report_to: Pid) -> None:
    receive, send = process.receive, process.send
    while True:
        n = await receive()
        for _ in range(n):
            await receive()
        await send(report_to, DONE)


async def _pair_costs(trips: int, messages: int) -> tuple[float, float]:
    """Run as a process: (µs per round trip, one-way messages/s) with a fresh pair."""
    send, receive = process.send, process.receive
    me = process.self()
    echo = await process.spawn(_echo)
    sink = await process.spawn(_sink, args=[me])
    await send(echo, (me, -1))
    await receive()
    t0 = time.perf_counter()
    for i in range(trips):
        await send(echo, (me, i))
        await receive()
    rtt = (time.perf_counter() - t0) / trips * 1e6
    t0 = time.perf_counter()
    await send(sink, messages)
    for i in range(messages):
        await send(sink, (MSG, i))
    await receive()
    one_way = messages / (time.perf_counter() - t0)
    await process.exit(echo, atom.ensure("kill"))
    await process.exit(sink, atom.ensure("kill"))
    return rtt, one_way


async def process_curve(
    sizes: Sequence[int], trips: int, messages: int, repeat: int
) -> list[ProcessPoint]:
    """One runtime; idle processes are added up to each size, then the pair is measured.

    Each point is the best of ``repeat`` measurements (the machine's load
    only ever makes a figure worse); its GC figures are their mean.
    """
    runtime = Runtime()
    await runtime.initialize()
    points = []
    live = 0
    try:
        # Untimed: the first pair runs cold code paths and grows the heap.
        await _measure_pair(runtime, trips // 10 + 1, messages // 10 + 1)
        for size in sorted(sizes):
            while live < size:
                await runtime.spawn(_idle)
                live += 1
            runs = [await _measure_pair(runtime, trips, messages) for _ in range(repeat)]
            points.append(
                ProcessPoint(
                    live,
                    min(r[0] for r in runs),
                    max(r[1] for r in runs),
                    round(sum(r[2] for r in runs) / repeat),
                    sum(r[3] for r in runs) / repeat,
                )
            )
    finally:
        await runtime.shutdown()
    return points


async def _measure_pair(
    runtime: Runtime, trips: int, messages: int
) -> tuple[float, float, int, float]:
    """A fresh pair in ``runtime``: round trip µs, one-way msg/s, full GCs, GC ms."""
    done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()

    async def driver() -> None:
        done.set_result(await _pair_costs(trips, messages))

    with GcClock() as clock:
        await runtime.spawn(driver)
        rtt, one_way = await done
    return rtt, one_way, clock.full, clock.seconds * 1e3


# ------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class MeshPoint:
    """One mesh of ``nodes`` OS processes."""

    nodes: int
    #: Seconds from spawning every node until each logged nodes-1 nodeups.
    mesh_s: float
    #: Seconds from spawning until the last node printed its listening line.
    ready_s: float
    #: Idle CPU per node once meshed, percent of one core (None: no /proc here).
    idle_cpu_pct: list[float] | None


_NODEUP = re.compile(r'msg="nodeup (\S+)')
_LISTENING = re.compile(r"^node (\S+) listening on (\d+)$")


def _free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (a node binds its own a moment later)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks, or None without ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) start at state.
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


async def mesh_point(n: int, idle_seconds: float, uvloop_on: bool) -> MeshPoint:
    """Start ``n`` nodes, each connecting to the previous; time the mesh; sample idle CPU."""
    cookie = f"scale-{secrets.token_hex(4)}"
    ports = _free_ports(n)
    loop = "uvloop" if uvloop_on else "asyncio"
    start = time.perf_counter()
    procs = []
    readers: list[asyncio.Future[None]] = []
    try:
        for i in range(n):
            argv = ["--name", f"s{i}@127.0.0.1", "--port", str(ports[i]), "--cookie", cookie]
            argv += ["--discovery", "none", "--log-level", "info", "--loop", loop]
            if i:
                argv += ["--connect", f"s{i - 1}@127.0.0.1:{ports[i - 1]}"]
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "otpylib_dist.cli",
                    "run",
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                )
            )
        ready_at: list[float] = []
        meshed_at: list[float] = []

        async def watch_stdout(proc: asyncio.subprocess.Process) -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                if _LISTENING.match(line.decode().strip()):
                    ready_at.append(time.perf_counter() - start)

        # What each node logged last, and the peers it saw: printed if the
        # mesh does not form in time (a stall should say where it stalled).
        tails: list[deque[str]] = [deque(maxlen=_TAIL_LINES) for _ in procs]
        seen: list[set[str]] = [set() for _ in procs]

        async def watch_stderr(proc: asyncio.subprocess.Process) -> None:
            assert proc.stderr is not None
            i = procs.index(proc)
            peers = seen[i]
            async for raw in proc.stderr:
                line = raw.decode()
                tails[i].append(line.rstrip())
                match = _NODEUP.search(line)
                if match:
                    peers.add(match.group(1))
                    if len(peers) == n - 1:
                        meshed_at.append(time.perf_counter() - start)
            if len(peers) < n - 1:
                raise RuntimeError(f"a node exited before the mesh was full (rc {proc.returncode})")

        # The readers run until the nodes stop (their pipes must not fill).
        readers += [asyncio.ensure_future(watch_stdout(p)) for p in procs]
        readers += [asyncio.ensure_future(watch_stderr(p)) for p in procs]
        try:
            async with asyncio.timeout(MESH_DEADLINE):
                while len(meshed_at) < n or len(ready_at) < n:
                    failed = [r for r in readers if r.done() and r.exception() is not None]
                    if failed:
                        raise failed[0].exception()  # type: ignore[misc]
                    await asyncio.sleep(0.01)
        except TimeoutError:
            report = [
                f"s{i}: saw {sorted(seen[i]) or 'no peer'}; last lines:\n    "
                + "\n    ".join(tails[i])
                for i in range(n)
            ]
            raise RuntimeError(
                f"the {n}-node mesh was not full after {MESH_DEADLINE:.0f} s\n" + "\n".join(report)
            ) from None
        mesh_s = max(meshed_at)
        idle = await _idle_cpu([p.pid for p in procs], idle_seconds)
        return MeshPoint(n, mesh_s, max(ready_at), idle)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        # The readers end with their nodes' pipes; a failed run's errors are
        # in the report raised above, not left as "never retrieved" noise.
        await asyncio.gather(*readers, return_exceptions=True)


_ERL_SOURCE = """
-module(otpy_scale_bench).
-export([join/1]).

%% Connect to the previous node (if any), wait until this node sees all
%% N-1 others (global's connect_all makes the mesh), print MESHED, idle.
join([NA | Prev]) ->
    N = list_to_integer(atom_to_list(NA)),
    [pong = ping_until_pong(P, 400) || P <- Prev],
    wait_mesh(N - 1),
    io:format("MESHED~n"),
    receive stop -> ok end.

ping_until_pong(_, 0) -> pang;
ping_until_pong(P, K) ->
    case net_adm:ping(P) of pong -> pong; pang -> timer:sleep(20), ping_until_pong(P, K - 1) end.

wait_mesh(Want) ->
    case length(nodes()) >= Want of
        true -> ok;
        false -> timer:sleep(5), wait_mesh(Want)
    end.
"""


def erlang_mesh_point(n: int, idle_seconds: float) -> MeshPoint:
    """``n`` Erlang nodes, each pinging the previous one; time until each sees n-1 nodes."""
    with erlang_nodes("otpy_scale_bench", _ERL_SOURCE) as erl:
        start = time.perf_counter()
        procs = []
        try:
            for i in range(n):
                prev = [f"e{i - 1}@127.0.0.1"] if i else []
                procs.append(erl(f"e{i}", "join", str(n), *prev))
            for proc in procs:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.strip() == "MESHED":
                        break
                else:
                    raise RuntimeError("an Erlang node exited before the mesh was full")
            mesh_s = time.perf_counter() - start
            idle = asyncio.run(_idle_cpu([p.pid for p in procs], idle_seconds))
            return MeshPoint(n, mesh_s, mesh_s, idle)
        finally:
            for proc in procs:
                stop(proc)


async def _idle_cpu(pids: Sequence[int], seconds: float) -> list[float] | None:
    """Percent of one core each pid used over ``seconds`` (None without ``/proc``)."""
    before = [_cpu_ticks(pid) for pid in pids]
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    after = [_cpu_ticks(pid) for pid in pids]
    elapsed = time.perf_counter() - t0
    if any(t is None for t in before + after):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return [(b - a) / hz / elapsed * 100 for a, b in zip(before, after, strict=True)]  # type: ignore[operator]


# -------------------------------------------------------------------- main


def _print_processes(points: Sequence[ProcessPoint], loop: str, repeat: int) -> None:
    base = points[0]
    print(
        f"\nbench.scale processes: a pair exchanging messages beside N idle processes, {loop}, "
        f"best of {repeat}"
    )
    print(
        f"{'idle procs':>10} {'round trip us':>14} {'x':>6} {'one-way msg/s':>14} {'x':>6} "
        f"{'full GCs':>9} {'GC ms':>8}"
    )
    for p in points:
        print(
            f"{p.live:>10,} {p.round_trip_us:>14.2f} {p.round_trip_us / base.round_trip_us:>5.2f}x "
            f"{p.one_way_per_s:>14,.0f} {p.one_way_per_s / base.one_way_per_s:>5.2f}x "
            f"{p.full_gcs:>9} {p.gc_ms:>8.1f}"
        )
    print(
        f"(x: ratio to {base.live:,} idle; round trip: higher is worse, one-way: lower is; "
        "GCs: the collector's work during the round trips and one-way messages, gc module "
        "defaults)"
    )


def _print_nodes(
    points: Sequence[MeshPoint],
    erl: Sequence[MeshPoint] | str,
    idle_seconds: float,
    loop: str,
) -> None:
    base = points[0]
    print(
        f"\nbench.scale nodes: N otpy-node OS processes, each --connect to the previous, "
        f"connect_all makes the mesh; idle CPU over {idle_seconds:g} s, {loop}"
    )
    print(
        f"{'nodes':>5} {'mesh s':>8} {'x':>6} {'ready s':>8} {'after ready':>12} "
        f"{'idle CPU %/node (mean)':>23} {'max':>6}"
    )
    for p in points:
        if p.idle_cpu_pct is None:
            idle = f"{'(no /proc: skipped)':>30}"
        else:
            mean = sum(p.idle_cpu_pct) / len(p.idle_cpu_pct)
            idle = f"{mean:>23.2f} {max(p.idle_cpu_pct):>6.2f}"
        print(
            f"{p.nodes:>5} {p.mesh_s:>8.2f} {p.mesh_s / base.mesh_s:>5.2f}x "
            f"{p.ready_s:>8.2f} {max(0.0, p.mesh_s - p.ready_s):>12.3f} {idle}"
        )
    print(f"(x: ratio to {base.nodes} nodes; mesh s includes each interpreter's start-up)")
    if isinstance(erl, str):
        print(f"erlang: skipped ({erl})")
        return
    print("\nthe same with Erlang nodes, each pinging the previous (global's connect_all):")
    print(f"{'nodes':>5} {'mesh s':>8} {'x':>6} {'ours / erlang':>14} {'idle CPU %/node':>16}")
    for p, ours in zip(erl, points, strict=True):
        idle = "-" if p.idle_cpu_pct is None else f"{sum(p.idle_cpu_pct) / p.nodes:.2f}"
        print(
            f"{p.nodes:>5} {p.mesh_s:>8.2f} {p.mesh_s / erl[0].mesh_s:>5.2f}x "
            f"{ours.mesh_s / p.mesh_s:>13.2f}x {idle:>16}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: measure and print the curves asked for."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--processes", type=int, nargs="*", help="idle-process counts")
    parser.add_argument("--nodes", type=int, nargs="*", help="mesh sizes (>= 2)")
    parser.add_argument("--round-trips", type=int, help="per point (default 20000)")
    parser.add_argument("--messages", type=int, help="one-way, per point (default 500000)")
    parser.add_argument("--idle-seconds", type=float, help="idle CPU window (default 3)")
    parser.add_argument(
        "--repeat", type=int, help="processes: best of R measurements per point (default 3)"
    )
    parser.add_argument("--asyncio", action="store_true", help="asyncio's own loop, not uvloop")
    parser.add_argument("--no-erlang", action="store_true", help="skip the Erlang mesh rows")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    args = parser.parse_args(argv)
    q = args.quick
    procs = (
        args.processes
        if args.processes is not None
        else ([1, 10, 100, 1000] if q else [1, 10, 100, 1_000, 10_000, 100_000])
    )
    nodes = args.nodes if args.nodes is not None else ([2, 3] if q else [2, 4, 8, 16])
    # Long enough for full collections to happen at all (the first ones
    # come after some 100k allocations): shorter runs hide what they cost.
    trips = args.round_trips or (200 if q else 20_000)
    messages = args.messages or (2_000 if q else 500_000)
    idle_seconds = args.idle_seconds or (0.5 if q else 3.0)
    repeat = args.repeat or (1 if q else 3)
    if any(n < 1 for n in procs) or any(n < 2 for n in nodes) or repeat < 1:
        sys.exit("bench.scale: --processes counts and --repeat must be >= 1, --nodes sizes >= 2")
    uvloop_on = use_uvloop(args.asyncio)
    loop = "uvloop" if uvloop_on else "asyncio default loop"
    exit_on_sigterm()
    if procs:
        curve = run_loop(process_curve(procs, trips, messages, repeat), uvloop_on)
        _print_processes(curve, loop, repeat)
    if nodes:

        async def meshes() -> list[MeshPoint]:
            return [await mesh_point(n, idle_seconds, uvloop_on) for n in sorted(nodes)]

        ours = asyncio.run(meshes())
        why = "--no-erlang" if args.no_erlang else erlang_missing()
        erl = why or [erlang_mesh_point(n, idle_seconds) for n in sorted(nodes)]
        _print_nodes(ours, erl, idle_seconds, loop)


if __name__ == "__main__":
    main()
