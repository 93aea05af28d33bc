"""Fixtures for the local runtime tests: a fresh AsyncIOBackend per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from runtime_support import RuntimeFactory

from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend


@pytest.fixture
async def runtime() -> AsyncIterator[AsyncIOBackend]:
    """An initialized runtime, shut down (every process ended) after the test."""
    rt = AsyncIOBackend()
    await rt.initialize()
    yield rt
    await rt.shutdown()


@pytest.fixture
async def make_runtime() -> AsyncIterator[RuntimeFactory]:
    """Make more initialized runtimes in the test's event loop; all are shut down after it."""
    made: list[AsyncIOBackend] = []

    async def make() -> AsyncIOBackend:
        rt = AsyncIOBackend()
        await rt.initialize()
        made.append(rt)
        return rt

    yield make
    for rt in reversed(made):
        await rt.shutdown()
