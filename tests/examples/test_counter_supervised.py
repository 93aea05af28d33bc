"""``python -m examples.counter_supervised`` runs and tells the story its docstring promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Generous: the example itself finishes in well under a second.
DEADLINE = 60.0


def test_the_supervised_counter_survives_a_crash_and_a_kill() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.counter_supervised"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "main: counter value 3" in out
    assert "main: the call failed with reason RuntimeError('asked to crash')" in out
    assert "counter: terminate(asked to crash) at 3" in out
    moved = next(line for line in out if line.startswith("main: 'counter' was"))
    first, second = re.findall(r"<[\d.]+>", moved)
    assert first != second
    assert "main: counter value 1 after the restart" in out
    assert "main: counter value 1 after the second restart" in out
    # Three starts: the first, after the crash, after the kill.
    assert sum(line.startswith("counter: started as") for line in out) == 3
    # Shutdown stops the counter through its supervisor, so terminate runs.
    assert out[-2:] == ["counter: terminate(shutdown) at 1", "main: done"]
    # The crash and the kill were reported on stderr, one line each.
    assert "crashed: RuntimeError: asked to crash" in done.stderr
    assert "Traceback" not in done.stderr
