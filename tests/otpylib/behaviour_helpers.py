"""Shared names for the behaviour tests (importable by a unique module name).

The fixtures themselves live in ``conftest.py``; test modules import the
constants and types from here, never from ``conftest`` (several test
directories have one, and the name would be ambiguous).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

#: Generous deadline for anything a test waits on: events, not timings.
WAIT = 10.0

#: The ``run`` fixture: ``await run(fn, *args, trap_exits=False)``.
RunInProcess = Callable[..., Awaitable[Any]]
