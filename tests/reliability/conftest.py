"""Reliability tests: OS-process nodes (tests/faults' helpers), a relay, hostile sockets."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
_FAULTS = HERE.parent / "faults" / "conftest.py"
_spec = importlib.util.spec_from_file_location("faults_nodes", _FAULTS)
assert _spec is not None and _spec.loader is not None
faults_nodes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults_nodes)

#: The cookie tests/faults' nodes run with.
COOKIE: str = faults_nodes.COOKIE
NodeProcess = faults_nodes.NodeProcess


@pytest.fixture
def start_node(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """tests/faults' ``start_node``, with this directory importable by the nodes (rel_procs)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    started: list[Any] = []

    def start(name: str, *extra: str) -> Any:
        node = NodeProcess(name, list(extra))
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
