"""``otpy-node run`` tunes the garbage collector once start-up is over (an OS process)."""

from __future__ import annotations

import json

import pytest
from cli_support import StartNode, run_cli

from otpylib.runtime.gc_tuning import GEN0_THRESHOLD

pytestmark = pytest.mark.multiprocess


def test_a_running_node_has_its_collector_tuned(start_node: StartNode, cookie: str) -> None:
    start_node("tuned")
    done = run_cli("rpc", "tuned", "gc:get_threshold", "--cookie", cookie)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == GEN0_THRESHOLD
    done = run_cli("rpc", "tuned", "gc:get_freeze_count", "--cookie", cookie)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
