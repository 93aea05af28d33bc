"""The issue-12 benchmarks run in their quick modes, print their rows, and stop what they start.

No speed is asserted: only the shape of the output (a row per point, each
with its ratio to the run's own baseline) and that no CPU hog survives.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.hogs import MARKER, cpu_hogs
from bench.sizes import count_for, sizes_up_to

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a killed benchmark's hogs have to notice and exit.
HOG_EXIT_DEADLINE = 10.0


def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _is_hog(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) CPU hog of ``bench.hogs``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return MARKER.encode() in cmdline and state != "Z"


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + HOG_EXIT_DEADLINE
    while time.monotonic() < deadline and any(_is_hog(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _is_hog(p)]


def _bench_servers(parent: int) -> list[int]:
    """Live children of ``parent`` that are benchmark servers (``--serve``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"--serve" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sizes_are_powers_of_four_ending_at_the_largest() -> None:
    assert sizes_up_to(1024) == [16, 64, 256, 1024]
    assert sizes_up_to(1000) == [16, 64, 256, 1000]
    assert sizes_up_to(16) == [16]


def test_count_for_keeps_each_size_within_its_bounds() -> None:
    assert count_for(16, budget=1 << 20, most=2000, least=2) == 2000
    assert count_for(1 << 20, budget=1 << 20, most=2000, least=2) == 2
    assert count_for(1 << 10, budget=1 << 20, most=2000, least=2) == 1024


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_cpu_hogs_spin_inside_the_block_and_are_gone_after_it() -> None:
    with cpu_hogs(2) as pids:
        assert len(pids) == 2 and all(_is_hog(p) for p in pids)
    assert [p for p in pids if _is_hog(p)] == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_cpu_hogs_exit_on_their_own_when_the_benchmark_is_killed() -> None:
    code = (
        "import sys, time\n"
        "from bench.hogs import cpu_hogs\n"
        "with cpu_hogs(2) as pids:\n"
        "    print(*pids, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_is_hog(p) for p in pids)
        proc.kill()  # no finally runs: the hogs must notice their parent is gone
        proc.wait()
        assert _wait_gone(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.multiprocess
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_bench_dist_with_hogs_prints_each_spin_config_and_stops_its_hogs() -> None:
    out = _run("bench.dist", "--quick", "--hogs", "2")
    match = re.search(r"^hogs: 2 busy-loop processes, pids (\d+) (\d+)$", out, re.M)
    assert match, out
    assert _wait_gone([int(match[1]), int(match[2])]) == []
    for row in ("raw floor", "otpylib", "  no spin", "  spin", "erlang"):
        assert re.search(rf"^{row} +\S", out, re.M), (row, out)
    assert re.search(r"^default / no spin: +round trip \d+\.\d\dx \(target <= 1\.5", out, re.M)
    assert re.search(r"^spin / no spin: +round trip \d+\.\d\dx", out, re.M)


@pytest.mark.multiprocess
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_bench_dist_stopped_by_sigterm_leaves_no_hog() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.dist", "--hogs", "1", "--messages", "100000000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"^hogs: 1 busy-loop processes, pids (\d+)$", line)
        assert match, line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        assert _wait_gone([int(match[1])]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.multiprocess
def test_bench_sizes_quick_prints_a_row_per_size_and_the_head_of_line_rows() -> None:
    out = _run("bench.sizes", "--quick")
    for size in ("16 B", "64 B", "256 B", "1 KiB", "4 KiB", "16 KiB", "64 KiB", "256 KiB", "1 MiB"):
        # size, count, msg/s, MB/s, ratio to raw, raw MB/s (then Erlang's, when installed)
        assert re.search(rf"^ +{size} +\d+ +[\d,]+ +[\d,.]+ +[\d.]+x +[\d,.]+", out, re.M), size
    for sender in ("same", "other"):
        assert re.search(rf"^otpylib +{sender} +1 MiB +[\d.]+ +[\d.]+ +-?[\d.]+$", out, re.M)
    assert "otpylib, other sender: the small message waited" in out


@pytest.mark.multiprocess
def test_bench_sizes_skips_erlang_cleanly_when_erl_is_missing(tmp_path: Path) -> None:
    # An empty PATH hides erl, erlc and epmd; --asyncio runs without uvloop.
    env = dict(os.environ, PATH=str(tmp_path))
    out = _run("bench.sizes", "--quick", "--asyncio", "--max-size", "1024", env=env)
    assert "asyncio default loop" in out
    assert "erlang: skipped (erl, erlc, epmd not installed)" in out
    assert not re.search(r"^erlang ", out, re.M)


@pytest.mark.multiprocess
def test_bench_scale_quick_prints_both_curves_with_ratios_to_the_smallest_point() -> None:
    out = _run("bench.scale", "--quick")
    for live in ("1", "10", "100", "1,000"):
        # idle, round trip, x, one-way, x, full GCs, GC ms
        row = rf"^ +{live} +[\d.]+ +[\d.]+x +[\d,]+ +[\d.]+x +\d+ +[\d.]+$"
        assert re.search(row, out, re.M), live
    assert re.search(r"^ +1 +[\d.]+ +1\.00x +[\d,]+ +1\.00x +\d+ +[\d.]+$", out, re.M)
    for nodes in ("2", "3"):
        assert re.search(rf"^ +{nodes} +[\d.]+ +[\d.]+x +[\d.]+ +[\d.]+ +\S", out, re.M), nodes
        if "erlang: skipped" not in out:  # Erlang's mesh beside ours: mesh s, x, ours / erlang
            assert re.search(rf"^ +{nodes} +[\d.]+ +[\d.]+x +[\d.]+x +\S+$", out, re.M), nodes


@pytest.mark.multiprocess
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_bench_dist_killed_outright_leaves_no_hog_and_no_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.dist", "--hogs", "1", "--messages", "100000000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.match(r"^hogs: 1 busy-loop processes, pids (\d+)$", proc.stdout.readline())
        assert match
        deadline = time.monotonic() + 30
        while not (servers := _bench_servers(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servers, "the benchmark started no server"
        proc.kill()  # no finally runs: hogs and servers must notice on their own
        proc.wait()
        assert _wait_gone([int(match[1])]) == []
        deadline = time.monotonic() + HOG_EXIT_DEADLINE
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in servers if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
