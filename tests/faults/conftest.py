"""Start nodes as separate OS processes (``otpy-node``) for the fault tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
COOKIE = "fault-test-cookie"


class NodeProcess:
    """An ``otpy-node`` child process and the port it listens on."""

    def __init__(self, name: str, extra: list[str]) -> None:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        )
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otpylib_dist.cli", "--name", name, "--cookie", COOKIE, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.match(r"^node (\S+) listening on (\d+)$", line.strip())
        if not match:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"node {name} did not start: {line!r} {err}")
        self.port = int(match.group(2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def start_node() -> Iterator[Callable[..., NodeProcess]]:
    """Start ``otpy-node`` children; all are killed at the end of the test."""
    started: list[NodeProcess] = []

    def start(name: str, *extra: str) -> NodeProcess:
        node = NodeProcess(name, list(extra))
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
