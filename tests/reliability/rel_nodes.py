"""OS-process nodes for the reliability tests: tests/faults' ``NodeProcess``, reused."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
_FAULTS = HERE.parent / "faults" / "conftest.py"
_spec = importlib.util.spec_from_file_location("faults_nodes", _FAULTS)
assert _spec is not None and _spec.loader is not None
faults_nodes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults_nodes)

#: The cookie tests/faults' nodes run with.
COOKIE: str = faults_nodes.COOKIE
NodeProcess: Any = faults_nodes.NodeProcess
