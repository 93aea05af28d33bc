"""The benchmarks still run and print their comparison lines (tiny sizes; no speed asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_local_prints_each_target_with_its_ratio() -> None:
    out = _run("bench.local", "--scale", "0.02", "--repeat", "1")
    for row in ("round trip (us)", "one-way (msgs/s)", "idle process (bytes)"):
        assert any(line.strip().startswith(row) and "raw" in line for line in out.splitlines())


@pytest.mark.multiprocess
def test_bench_dist_prints_raw_floor_and_ours_with_ratios() -> None:
    out = _run("bench.dist", "--messages", "2000", "--round-trips", "100")
    assert "raw floor" in out and "otpylib" in out
    assert "otpylib / raw floor:" in out


@pytest.mark.multiprocess
def test_bench_dist_repeat_prints_medians_and_each_pairs_ratio() -> None:
    out = _run("bench.dist", "--quick", "--repeat", "2")
    assert "medians of 2" in out
    [pairs] = [line for line in out.splitlines() if "per pair:" in line]
    assert len(pairs.split(":")[1].split()) == 2


@pytest.mark.parametrize("workload", ["pid", "name", "batch", "unread", "round-trip"])
def test_bench_dist_ir_workload_delivers_every_message(workload: str) -> None:
    # dist_ir ends only once the sink has every message (or the echo every
    # reply), so a clean exit means nothing was lost on the way.
    _run("bench.dist_ir", workload, "300")


def test_bench_gen_server_prints_call_beside_raw() -> None:
    out = _run("bench.gen_server", "--round-trips", "500", "--repeat", "1", "--no-remote")
    assert "raw send/receive" in out and "call, default 5 s" in out
