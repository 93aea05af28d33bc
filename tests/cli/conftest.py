"""Fixtures for the ``otpy-node`` tests: nodes as OS processes, a cookie per test."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import NodeProcess, StartNode

# The loopback-multicast probe lives with the discovery tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "otpylib_dist" / "discovery"))

from mdns_probe import loopback_multicast_problem


@pytest.fixture
def cookie() -> str:
    """A cookie of this test only: its nodes (and mDNS cluster) meet nobody else's."""
    return f"cli-test-{secrets.token_hex(6)}"


@pytest.fixture
def start_node(cookie: str) -> Iterator[StartNode]:
    """Start ``otpy-node --name NAME --cookie COOKIE EXTRA...`` and wait until it listens.

    Every node started is killed at the end of the test if still running.
    """
    started: list[NodeProcess] = []

    def start(name: str, *extra: str, wait: bool = True, cwd: Path | None = None) -> NodeProcess:
        args = ["--name", name, *extra]
        if "--cookie" not in extra and "--cookie-file" not in extra:
            args += ["--cookie", cookie]
        node = NodeProcess(args, cwd=cwd)
        started.append(node)
        return node.started() if wait else node

    yield start
    for node in started:
        node.kill()


@pytest.fixture(scope="session")
def loopback_multicast() -> None:
    """Skip the test unless multicast datagrams loop back on 127.0.0.1."""
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)
