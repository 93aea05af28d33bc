"""Fixtures for the whole suite: a private port mapper, so no test touches port 4369;
refusal log lines written at once.

``otpy-node`` registers with the port mapper of its host unless told
otherwise (``--discovery``), and starts one when none answers. Every child
process the suite starts inherits ``ERL_EPMD_PORT`` (a free port) and
``ERL_EPMD_ADDRESS=127.0.0.1`` from here, and finds the mapper this fixture
runs; at the end the fixture stops it, and anything else listening there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from port_mappers import free_loopback_port, start_mapper, stop_mappers

from otpylib_dist.refusal_log import refusals


@pytest.fixture(scope="session", autouse=True)
def private_port_mapper() -> Iterator[int]:
    """The suite's port mapper: its port is in ``ERL_EPMD_PORT`` for every child."""
    port = free_loopback_port()
    saved = {k: os.environ.get(k) for k in ("ERL_EPMD_PORT", "ERL_EPMD_ADDRESS")}
    os.environ["ERL_EPMD_PORT"] = str(port)
    os.environ["ERL_EPMD_ADDRESS"] = "127.0.0.1"
    proc = start_mapper(port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stop_mappers(port)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def refusal_lines_in_order() -> Iterator[None]:
    """Refusal log lines written at once, with fresh rate limits, for tests that read caplog.

    The queue and writer thread (what keeps a blocked stderr from stopping a
    node) are tested in tests/otpylib_dist/test_refusal_log.py and by the
    OS-process nodes of tests/reliability, which run as in production.
    """
    refusals.reset()
    refusals.synchronous = True
    yield
    refusals.synchronous = False
