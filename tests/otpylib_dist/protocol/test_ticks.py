"""The tick decision, with plain numbers for counters and time."""

from __future__ import annotations

import pytest

from otpylib_dist.protocol.framing import TICK_FRAME
from otpylib_dist.protocol.ticks import DEFAULT_NET_TICKTIME, TickAction, Ticker

NOTHING, SEND_TICK, PEER_SILENT = TickAction.NOTHING, TickAction.SEND_TICK, TickAction.PEER_SILENT


def test_checks_four_times_per_ticktime() -> None:
    assert Ticker().interval == DEFAULT_NET_TICKTIME / 4 == 15.0
    assert Ticker(8).interval == 2.0


def test_busy_connection_needs_no_tick() -> None:
    ticker = Ticker(60)
    assert [ticker.check(10 * i, 10 * i) for i in range(1, 10)] == [NOTHING] * 9


def test_idle_connection_ticks_every_other_check() -> None:
    ticker = Ticker(60)
    read = written = 0
    actions = []
    for _ in range(6):
        read += 4  # the peer ticks too
        action = ticker.check(read, written)
        if action is SEND_TICK:
            written += len(TICK_FRAME)  # the tick counts as a write
        actions.append(action)
    assert actions == [SEND_TICK, NOTHING] * 3


def test_no_tick_while_bytes_wait_to_be_written() -> None:
    ticker = Ticker(60)
    assert ticker.check(1, 0, queue_empty=False) is NOTHING
    assert ticker.check(2, 0, queue_empty=True) is SEND_TICK


def test_peer_silent_after_four_checks_without_reads() -> None:
    ticker = Ticker(60)
    assert ticker.check(100, 0) is SEND_TICK
    assert [ticker.check(100, 4 * i) for i in range(1, 5)] == [NOTHING] * 3 + [PEER_SILENT]
    assert ticker.silent_checks == 4


def test_any_read_restarts_the_count() -> None:
    ticker = Ticker(60)
    for read in (0, 0, 0, 1, 1, 1, 2, 2, 2):
        assert ticker.check(read, read) is not PEER_SILENT
    assert ticker.silent_checks == 2


@pytest.mark.parametrize("last_byte_at", [0.0, 0.01, 7.5, 14.99])
def test_detection_window_is_one_to_one_and_a_quarter_ticktimes(last_byte_at: float) -> None:
    ticktime = 60.0
    ticker = Ticker(ticktime)
    read = 0
    now = 0.0
    while True:
        now += ticker.interval
        if now - ticker.interval < last_byte_at <= now or now <= last_byte_at:
            read += 1  # the peer's bytes up to last_byte_at land before this check
        if ticker.check(read, 0, queue_empty=False) is PEER_SILENT:
            break
    assert ticktime <= now - last_byte_at < ticktime * 1.25


@pytest.mark.parametrize("phase", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_two_idle_live_peers_never_time_out(phase: float) -> None:
    # Each side writes only ticks; their tickers run out of phase.
    interval = Ticker(4.0).interval
    sides = [Ticker(4.0), Ticker(4.0)]
    written = [0, 0]
    read = [0, 0]
    events = sorted(
        [(k * interval, 0) for k in range(1, 200)]
        + [((k + phase) * interval, 1) for k in range(1, 200)]
    )
    for _, who in events:
        action = sides[who].check(read[who], written[who])
        assert action is not PEER_SILENT
        if action is SEND_TICK:
            written[who] += 4
            read[1 - who] += 4


def test_ticktime_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^net_ticktime must be positive, got 0$"):
        Ticker(0)
