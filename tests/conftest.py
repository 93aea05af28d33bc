"""Settings for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otpylib_dist.refusal_log import refusals


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
