"""The distribution examples run as programs and tell the stories their docstrings promise.

Each runs as ``python -m examples.x`` in its own interpreter, as a reader
would run it; the test checks the exit code and the stdout lines that prove
the behaviour (lines from different processes may interleave, so only lines
of one process are checked for order). ``work_queue`` and
``supervisor_failover`` start their remote nodes as OS processes (marked
``multiprocess``); the other two keep every node in one process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Generous: each example finishes in a few seconds at most.
DEADLINE = 60.0

PID = r"<[\w@.\-]+\.\d+\.\d+>"


def run_example(module: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def in_order(lines: list[str], expected: list[str]) -> None:
    """Each of ``expected`` is a whole line of ``lines``, in this order."""
    pos = 0
    for want in expected:
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            pytest.fail(f"line {want!r} missing (or out of order) in:\n" + "\n".join(lines))


def test_counter_remote_is_called_across_nodes_and_survives_a_crash() -> None:
    done = run_example("examples.counter_remote")
    out = done.stdout.splitlines()
    alpha = [line for line in out if line.startswith("alpha:")]
    assert alpha[0] == "alpha: counter value 3"
    assert re.fullmatch(
        rf"alpha: the counter saw the caller {PID} of node alpha@127\.0\.0\.1", alpha[1]
    )
    in_order(
        alpha,
        [
            "alpha: the call failed with reason builtins.RuntimeError: asked to crash",
            "alpha: counter value 1 after the restart",
            "alpha: calling ('nobody', 'beta@127.0.0.1') failed: noproc",
            "alpha: calling ('counter', 'gamma@127.0.0.1') failed: noconnection",
            "alpha: the slow call failed: timeout",
            "alpha: counter value 1; 0 message(s) left in my mailbox",
        ],
    )
    moved = next(line for line in alpha if "restarted the counter" in line)
    first, second = re.findall(PID, moved)
    assert first != second and first.startswith("<beta@") and second.startswith("<beta@")
    # Two starts on beta, a terminate after the crash and one at shutdown.
    assert sum(line.startswith("counter: started as <beta@") for line in out) == 2
    assert "counter: terminate(asked to crash) at 3" in out
    assert out[-2:] == ["counter: terminate(shutdown) at 1", "main: done"]
    assert "child 'counter' exited with reason RuntimeError: asked to crash" in done.stderr


def test_dist_registry_finds_a_name_on_another_node_and_forgets_it_when_it_goes() -> None:
    out = run_example("examples.dist_registry").stdout.splitlines()
    registered = next(line for line in out if line.startswith("svc: greeter"))
    (greeter,) = re.findall(PID, registered)
    assert greeter.startswith("<svc@")
    assert registered.endswith("registered in the lookup service: ok")
    client = [line for line in out if line.startswith("client:")]
    clock_line = next(line for line in client if line.startswith("client: 'clock' is <"))
    assert re.fullmatch(rf"client: 'clock' is {PID} on svc@127\.0\.0\.1", clock_line)
    assert client == [
        f"client: the lookup service says 'greeter' is {greeter} on svc@127.0.0.1",
        "client: by pid: hello client, from svc@127.0.0.1",
        "client: by (name, node): hello again, from svc@127.0.0.1",
        "client: reply to a plain message: got your message 'plain message'",
        f"client: registering 'greeter' again: taken by {greeter}",
        "client: 'greeter' is gone: normal",
        "client: 'greeter' is now None",
        clock_line,
        "client: 'clock' is gone: noconnection",
        "client: 'clock' is now None",
    ]
    assert out[-1] == "main: done"


@pytest.mark.multiprocess
def test_work_queue_re_dispatches_the_jobs_of_a_killed_worker_node() -> None:
    out = run_example("examples.work_queue").stdout.splitlines()
    in_order(
        out,
        [
            "dispatcher: 4 workers on w1@127.0.0.1, w2@127.0.0.1",
            "dispatcher: 6 results in; killing w2 (SIGKILL)",
        ],
    )
    lost = [
        m
        for m in (
            re.fullmatch(
                r"dispatcher: a worker on (\S+) was lost \((\w+)\); "
                r"job (\d+) re-dispatched",
                line,
            )
            for line in out
        )
        if m
    ]
    # Each of w2's two workers had a job in hand; both jobs went back in the queue.
    assert [(m[1], m[2]) for m in lost] == [("w2@127.0.0.1", "noconnection")] * 2
    assert out[-4:-1] == [
        "main: results for jobs 1..20: 20 of 20",
        "main: every result is the square of its job: True",
        "main: sum of the results: 2870",
    ]
    done_on = re.fullmatch(r"main: jobs done on w1: (\d+), on w2: (\d+)", out[-1])
    assert done_on is not None
    on_w1, on_w2 = int(done_on[1]), int(done_on[2])
    assert on_w1 + on_w2 == 20 and on_w1 > on_w2


@pytest.mark.multiprocess
def test_supervisor_failover_restarts_the_child_on_the_node_that_survived() -> None:
    done = run_example("examples.supervisor_failover")
    out = done.stdout.splitlines()
    main = [line for line in out if line.startswith("main:")]
    first = re.fullmatch(rf"main: kv runs on b@127\.0\.0\.1 as ({PID})", main[0])
    assert first is not None and first[1].startswith("<b@")
    assert main[1:4] == [
        "main: stored x = 1 on b",
        "main: b killed (SIGKILL)",
        "main: the old kv ended with reason noconnection",
    ]
    second = re.fullmatch(
        rf"main: the supervisor restarted kv on c@127\.0\.0\.1 as ({PID})", main[4]
    )
    assert second is not None and second[1].startswith("<c@")
    assert main[5:] == [
        "main: x on the new kv: None",
        "main: stored x = 2 on c",
        "main: done",
    ]
    # The restart tried b first (gone), then c.
    assert "sup: cannot start kv on b@127.0.0.1: noconnection" in out
    assert re.search(r"child 'kv' exited with reason :?noconnection; restarting", done.stderr)
