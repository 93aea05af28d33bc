"""Start ``otpy-node`` nodes as separate OS processes, for the examples that kill one.

A node that dies with its OS process (SIGKILL) says nothing on the way out:
its peers learn it from the closed connection, and every link and monitor
across it fires with ``noconnection``. Nodes in one Python process cannot
show that as faithfully, so ``work_queue`` and ``supervisor_failover`` run
their remote nodes here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Seconds a node may take to print its listening line (Python start-up and
#: imports take a fraction of a second; generous for a loaded machine).
START_DEADLINE = 30.0


class NodeProcess:
    """One ``python -m otpylib_dist.cli`` child: its node name, OS process and port.

    The examples package is importable there (``PYTHONPATH`` is the
    repository), so ``spawn("examples.x:function", node=...)`` and
    ``gen_server.start(Cls, node=...)`` find their code on that node.
    """

    def __init__(self, name: str, cookie: str) -> None:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path)
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otpylib_dist.cli", "--name", name, "--cookie", cookie],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.port = 0

    def wait_listening(self) -> None:
        """Wait for the node's ``node NAME listening on PORT`` line; set ``port``."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.match(r"^node (\S+) listening on (\d+)$", line.strip())
        if not match:
            self.proc.kill()
            raise RuntimeError(f"node {self.name} did not start (it printed {line!r})")
        self.port = int(match.group(2))

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a word, as on a crash or power loss."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=START_DEADLINE)
        self._close()

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (its processes end, peers are told)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=START_DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


def start_nodes(names: list[str], cookie: str) -> list[NodeProcess]:
    """Start one node per name, all at once, and return them once each listens."""
    nodes = [NodeProcess(name, cookie) for name in names]
    try:
        for node in nodes:
            node.wait_listening()
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return nodes
