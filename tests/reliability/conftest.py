"""Reliability tests: OS-process nodes (tests/faults' helpers), a relay, hostile sockets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rel_nodes import HERE, NodeProcess


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
