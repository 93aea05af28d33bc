"""Every seed-manual example runs as a program and shows the semantics it teaches.

Each ``examples/manual_*.py`` runs as ``python -m examples.manual_x`` in its
own interpreter (the way a reader would run it). All of them are started
together when the first test needs one (they mostly sleep, so this takes the
time of the slowest, not the sum); each test then checks its example's exit
code, the stdout lines that prove the behaviour, and stderr: empty where
nothing crashes, and exactly one logged traceback per crashing process where
something does (a process killed by a link is not reported a second time).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Seconds one example may take; the slowest needs about 4 s on its own.
TIMEOUT = 60.0

TRACEBACK = "Traceback (most recent call last)"

Checker = Callable[[list[str], str], None]


def assert_in_order(lines: list[str], expected: list[str]) -> None:
    """Each of ``expected`` is a whole line of ``lines``, in this order (others may interleave)."""
    pos = 0
    for want in expected:
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            pytest.fail(f"line {want!r} missing (or out of order) in output:\n" + "\n".join(lines))


def matches(pattern: str, lines: list[str]) -> list[re.Match[str]]:
    """The full matches of ``pattern`` among ``lines``, in order."""
    found = (re.fullmatch(pattern, line) for line in lines)
    return [m for m in found if m is not None]


def assert_crashes(stderr: str, *crashes: str) -> None:
    """stderr reports exactly these crashes (``Type: message``), each once with one traceback."""
    assert stderr.count(TRACEBACK) == len(crashes), stderr
    assert stderr.count(" crashed: ") == len(crashes), stderr
    for crash in crashes:
        logged = re.findall(r"process <[\d.]+> \(\S+\) crashed: " + re.escape(crash), stderr)
        assert len(logged) == 1, stderr
        assert stderr.count(f"\n{crash}\n") == 1, stderr  # the traceback's last line


# ------------------------------------------------------------------ checks


def check_basic_setup(out: list[str], err: str) -> None:
    assert_in_order(out, ["Runtime initialized on node nonode@nohost", "Runtime shut down"])
    assert err == ""


def check_basic_spawn(out: list[str], err: str) -> None:
    (spawned,) = matches(r"Spawned process: (<[\d.]+>)", out)
    assert_in_order(out, [f"Process {spawned[1]} is running!"])
    assert err == ""


def check_spawn_args(out: list[str], err: str) -> None:
    started = matches(r"Worker (<[\d.]+>) processing analysis job #(\d)", out)
    done = matches(r"Worker (<[\d.]+>) completed job #(\d)", out)
    assert [m.groups() for m in started] == [m.groups() for m in done]
    assert sorted(m[2] for m in started) == ["0", "1", "2"]
    # All three finished before main looked, so none is alive.
    assert [f"Process {m[1]} alive: False" for m in started] == out[-3:]
    assert err == ""


def check_echo(out: list[str], err: str) -> None:
    assert len(matches(r"Echo server received: \(<[\d.]+>, 'Hello, server!'\)", out)) == 1
    assert_in_order(
        out,
        ["Client received response: echo: Hello, server!", "Echo server alive after exit: False"],
    )
    assert err == ""


def check_registry(out: list[str], err: str) -> None:
    assert_in_order(
        out,
        [
            "Registered processes: ['database']",
            "Database: pong!",
            "Database: shutting down...",
            # The name is gone with the process.
            "Registered processes: []",
        ],
    )
    assert "Database service not found!" not in out
    assert err == ""


def check_linking(out: list[str], err: str) -> None:
    assert_in_order(
        out, ["Child: about to crash!", "Parent was terminated due to linked child crash"]
    )
    assert "Parent: still running after child crashed!" not in out
    assert "Parent survived (unexpected!)" not in out
    (child,) = matches(r"Parent linked to child (<[\d.]+>)", out)
    assert_crashes(err, "Exception: Child process error!")
    assert f"process {child[1]} " in err  # the child's crash, not the parent's


def check_trap_exits(out: list[str], err: str) -> None:
    (linked,) = matches(r"Supervisor linked to workers: (<[\d.]+>), (<[\d.]+>)", out)
    exits = matches(r"Supervisor: Worker (<[\d.]+>) exited with: (.*)", out)
    assert [m.groups() for m in exits] == [
        (linked[1], "worker1 encountered an error!"),
        (linked[2], "worker2 encountered an error!"),
    ]
    # Both arrived as (EXIT, pid, reason) messages, and the supervisor lived on.
    assert len(matches(r"Supervisor received: \(:EXIT, <[\d.]+>, Exception\(.*\)\)", out)) == 2
    assert out[-1] == "Supervisor: no more messages, exiting"
    assert_crashes(
        err, "Exception: worker1 encountered an error!", "Exception: worker2 encountered an error!"
    )


def check_monitoring(out: list[str], err: str) -> None:
    monitored = [m[1] for m in matches(r"Monitoring worker (<[\d.]+>) with ref #Ref<.*>", out)]
    downs = matches(r"Worker (<[\d.]+>) went down: (.*)", out)
    assert [m[1] for m in downs] == monitored  # one DOWN each, in the order they ended
    assert [m[2] for m in downs] == ["normal", "Worker 1 error!", "normal"]
    assert_in_order(out, ["Worker 2 completed", "All workers have terminated"])
    assert_crashes(err, "Exception: Worker 1 error!")


def check_request_reply(out: list[str], err: str) -> None:
    assert_in_order(
        out,
        [
            "Calculator server ready",
            "add[1, 2, 3, 4] = 10",
            "multiply[2, 3, 4] = 24",
            "divide[10, 2] = (:error, 'Unknown operation: divide')",
        ],
    )
    assert err == ""


def check_pool(out: list[str], err: str) -> None:
    results = matches(r"Client received: Result of job_(\d) from worker (\d)", out)
    assert sorted(m[1] for m in results) == ["0", "1", "2", "3", "4"]
    assert {m[2] for m in results} <= {"0", "1", "2"}
    assert out[0] == "Pool manager started with 3 workers"
    assert err == ""  # in particular no client timed out


def check_best_practices(out: list[str], err: str) -> None:
    graceful = [m[1] for m in matches(r"Process (<[\d.]+>) terminating", out)]
    assert len(graceful) == 2
    assert_in_order(
        out,
        [
            "--- 1. Always Handle Timeouts",
            "robust_receiver got: work item",
            "robust_receiver: shutdown requested, leaving",
            "robust_receiver alive: False",
            "--- 2. Clean Process Termination",
            "graceful_process handling: hello",
            f"Process {graceful[0]} cleaning up",
            f"Process {graceful[0]} terminating",
            "graceful_process alive: False",
            # Killed: no clean-up message, but the finally clause ran.
            f"Process {graceful[1]} terminating",
            "killed graceful_process alive: False",
            "--- 3. Error Isolation",
            "Processed: HELLO",
            "Handled error: cannot process 'bad input'",
            "Unexpected error: poison message",
            "isolated_process alive after poison: False",
            "--- 4. Process Discovery",
            "Service my_service_v1 already running",
            "whereis('my_service_v1') is first: True",
            "second alive: False",
            "registered after stop: []",
        ],
    )
    assert f"Process {graceful[1]} cleaning up" not in out
    assert_crashes(err, "RuntimeError: poison message")


def check_debugging(out: list[str], err: str) -> None:
    (pid,) = matches(r"Process (<[\d.]+>):", out)
    assert_in_order(
        out,
        [
            "  State: waiting",
            "  Name: service",
            "  Trap exits: True",
            "Active processes: 2",
            "Named processes: ['service']",
            "Runtime stats:",
            "  Total spawned: 2",
            "  Active processes: 2",
            "  Messages sent: 3",
            "  Active monitors: 1",
            "  Active links: 1",
            "After shutdown: 0 processes",
        ],
    )
    (links,) = matches(r"  Links: \((<[\d.]+>),\)", out)
    assert links[1] != pid[1]
    assert f"  Monitored by: ({links[1]},)" in out
    assert err == ""


CHECKS: dict[str, Checker] = {
    "manual_basic_setup": check_basic_setup,
    "manual_basic_spawn": check_basic_spawn,
    "manual_spawn_args": check_spawn_args,
    "manual_echo": check_echo,
    "manual_registry": check_registry,
    "manual_linking": check_linking,
    "manual_trap_exits": check_trap_exits,
    "manual_monitoring": check_monitoring,
    "manual_request_reply": check_request_reply,
    "manual_pool": check_pool,
    "manual_best_practices": check_best_practices,
    "manual_debugging": check_debugging,
}


def test_every_manual_example_is_checked() -> None:
    on_disk = {p.stem for p in (ROOT / "examples").glob("manual_*.py")}
    assert on_disk == set(CHECKS)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every example, started at once; killed at the end if one still runs."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"examples.{name}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in CHECKS
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", list(CHECKS))
def test_manual_example(name: str, runs: dict[str, subprocess.Popen[str]]) -> None:
    out, err = runs[name].communicate(timeout=TIMEOUT)
    assert runs[name].returncode == 0, f"exit code {runs[name].returncode}\n{out}\n{err}"
    CHECKS[name](out.splitlines(), err)
