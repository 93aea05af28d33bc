"""Run ``otpy-node`` as a real OS process and read what it prints, with deadlines.

Imported by basename (pytest puts this directory on ``sys.path``). Children
get this directory on their ``PYTHONPATH`` so ``--run cli_procs:...`` works.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent

#: Generous bound on anything a test waits for (a line, an exit): it catches
#: a hang on a loaded machine; it never measures speed.
DEADLINE = 30.0

#: How the node says it is up (first stdout line of ``run``).
LISTENING = re.compile(r"^node (\S+) listening on (\d+)$")


def cli_command() -> list[str]:
    """The ``otpy-node`` console script of this environment (``-m`` if not installed)."""
    script = Path(sys.executable).with_name("otpy-node")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "otpylib_dist.cli"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for children: ``cli_procs`` importable, no cookie from the user."""
    env = dict(os.environ)
    env.pop("OTPY_COOKIE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run_cli(
    *args: str, timeout: float = DEADLINE, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``otpy-node ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*cli_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=cwd,
        check=False,
    )


def log_lines(stderr: str) -> list[str]:
    """The logfmt records in ``stderr``."""
    return [line for line in stderr.splitlines() if line.startswith("time=")]


def error_line(stderr: str) -> str:
    """The one line that is not a log record; fails if there is not exactly one,
    or if anything looks like a Python traceback."""
    assert "Traceback" not in stderr, stderr
    others = [line for line in stderr.splitlines() if line and not line.startswith("time=")]
    assert len(others) == 1, f"expected one error line, got {others!r}"
    line = others[0]
    assert line.startswith("otpy-node: "), line
    return line


class NodeProcess:
    """A running ``otpy-node`` whose stdout and stderr lines are collected as they come."""

    def __init__(self, args: list[str], *, cwd: Path | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*cli_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=cwd,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._open = {"stdout": True, "stderr": True}
        self._changed = threading.Condition()
        self.name = ""
        self.port = 0
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for label, stream, lines in (
            ("stdout", self.proc.stdout, self.stdout),
            ("stderr", self.proc.stderr, self.stderr),
        ):
            threading.Thread(target=self._pump, args=(label, stream, lines), daemon=True).start()

    def _pump(self, label: str, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._open[label] = False
            self._changed.notify_all()

    def wait_for(
        self, pattern: str | re.Pattern[str], *, stream: str = "stdout", timeout: float = DEADLINE
    ) -> re.Match[str]:
        """Block until a line of ``stream`` matches ``pattern``; return the match."""
        regex = re.compile(pattern)
        lines = self.stdout if stream == "stdout" else self.stderr
        seen = 0
        with self._changed:
            while True:
                for line in lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(lines)
                if not self._open[stream]:
                    raise AssertionError(
                        f"otpy-node {' '.join(self.args)} closed its {stream} without "
                        f"printing {regex.pattern!r}; stderr:\n" + "\n".join(self.stderr)
                    )
                if not self._changed.wait(timeout):
                    raise AssertionError(
                        f"no line matching {regex.pattern!r} on {stream} within {timeout} s; "
                        "stderr:\n" + "\n".join(self.stderr)
                    )

    async def wait_for_async(
        self, pattern: str | re.Pattern[str], *, stream: str = "stdout", timeout: float = DEADLINE
    ) -> re.Match[str]:
        """``wait_for`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, stream=stream, timeout=timeout)

    def started(self) -> NodeProcess:
        """Wait for the listening line; remember the node's name and port."""
        match = self.wait_for(LISTENING)
        self.name, self.port = match.group(1), int(match.group(2))
        return self

    @property
    def address(self) -> str:
        """``name@host:port``: what the subcommands accept."""
        return f"{self.name}:{self.port}"

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the node."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to end (and its output to be read); return its exit code."""
        code = self.proc.wait(timeout)
        with self._changed:
            self._changed.wait_for(lambda: not any(self._open.values()), timeout)
        return code

    def kill(self) -> None:
        """Make sure the process is gone (fixture clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)


#: The ``start_node`` fixture: ``start(name, *extra_args, wait=True, cwd=None)``.
StartNode = Callable[..., NodeProcess]
