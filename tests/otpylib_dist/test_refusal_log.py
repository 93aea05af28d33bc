"""Refusal log lines: rate-limited per source, summarised, and never blocking the caller."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from otpylib_dist.refusal_log import RefusalLog, log_refusal, refusals


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger whose lines land in a list."""
    lines: list[str] = []
    log = logging.getLogger("test.refusals." + str(id(lines)))
    log.propagate = False
    log.setLevel(logging.INFO)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log.addHandler(Keep())
    summary = logging.getLogger("otpylib_dist.refusal_log")
    keep = Keep()
    summary.addHandler(keep)
    yield log, lines
    summary.removeHandler(keep)


def _sync(clock: Clock, **limits: int) -> RefusalLog:
    limiter = RefusalLog(window=10.0, clock=clock, **limits)  # type: ignore[arg-type]
    limiter.synchronous = True
    return limiter


def test_a_source_gets_burst_lines_then_one_summary_per_window(
    captured: tuple[logging.Logger, list[str]],
) -> None:
    log, lines = captured
    clock = Clock()
    limiter = _sync(clock, burst=3)
    for i in range(1000):
        limiter.log(log, logging.WARNING, "10.0.0.1", "refused #%d", i)
    assert lines == ["refused #0", "refused #1", "refused #2"]
    clock.now += 10.0
    limiter.flush()
    assert lines[3:] == ["997 more refusals from 10.0.0.1 suppressed in the last 10 s"]
    limiter.log(log, logging.WARNING, "10.0.0.1", "refused again")
    assert lines[4:] == ["refused again"]  # a new window
    assert limiter.refusals == 1001


def test_sources_are_limited_separately_and_together(
    captured: tuple[logging.Logger, list[str]],
) -> None:
    log, lines = captured
    clock = Clock()
    limiter = _sync(clock, burst=2, global_burst=5)
    for source in ("a", "b", "c", "d"):
        for _ in range(3):
            limiter.log(log, logging.WARNING, source, "from %s", source)
    assert lines == ["from a", "from a", "from b", "from b", "from c"]
    clock.now += 10.0
    limiter.flush()
    assert sorted(lines[5:]) == [
        "1 more refusals from a suppressed in the last 10 s",
        "1 more refusals from b suppressed in the last 10 s",
        "2 more refusals from c suppressed in the last 10 s",
        "3 more refusals from d suppressed in the last 10 s",
    ]


def test_untracked_sources_are_counted_together(
    captured: tuple[logging.Logger, list[str]],
) -> None:
    log, lines = captured
    clock = Clock()
    limiter = _sync(clock, burst=1, max_sources=2)
    for i in range(100):
        limiter.log(log, logging.WARNING, f"10.0.0.{i}", "refused")
    assert lines == ["refused", "refused"]
    clock.now += 10.0
    limiter.flush()
    assert lines[2:] == ["98 more refusals from 98 other addresses suppressed in the last 10 s"]


def test_disabled_levels_cost_nothing(captured: tuple[logging.Logger, list[str]]) -> None:
    log, lines = captured
    log.setLevel(logging.ERROR)
    limiter = _sync(Clock())
    limiter.log(log, logging.WARNING, "a", "refused")
    assert lines == [] and limiter.refusals == 0


def test_the_port_is_not_part_of_the_source(captured: tuple[logging.Logger, list[str]]) -> None:
    log, lines = captured
    refusals.reset()
    for port in range(40000, 40100):
        log_refusal(log, f"127.0.0.9:{port}", "garbage from %s", port)
    assert len(lines) == 5  # BURST for the one host, whatever the port


def test_a_blocked_stream_does_not_block_the_caller() -> None:
    # A pipe nobody reads, filled up: a plain handler writing to it blocks forever.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with pytest.raises(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w", buffering=1)
    log = logging.getLogger("test.refusals.blocked")
    log.propagate = False
    log.addHandler(logging.StreamHandler(stream))
    limiter = RefusalLog(burst=10_000, global_burst=10_000, queue_size=100)
    done = threading.Event()

    def attack() -> None:
        for i in range(5000):
            limiter.log(log, logging.WARNING, f"10.1.{i // 256}.{i % 256}", "refused %d", i)
        done.set()

    thread = threading.Thread(target=attack, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        assert done.wait(30), "log_refusal blocked on a full stream"
        assert limiter.dropped > 0  # the writer is stuck; the queue overflowed and dropped
    finally:
        # Unblock the writer thread: drain the pipe until it has written what it holds.
        os.set_blocking(read_end, False)
        deadline = started + 30
        while time.monotonic() < deadline:
            try:
                if not os.read(read_end, 1 << 16):
                    break
            except BlockingIOError:
                if limiter._queue.empty():
                    break
                time.sleep(0.01)
        limiter.stop()
        os.close(read_end)
        log.handlers.clear()
        stream.close()
