"""top's view and the ps/stats tables, from plain snapshots (no node, no terminal)."""

from __future__ import annotations

from typing import Any

from otpylib_dist.cli_output import format_ps, format_stats, human_bytes
from otpylib_dist.top import render

LONG = "worker@worker-0.worker.production.svc.cluster.local"


def proc(
    n: int, queue: int, messages: int, name: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "pid": f"<{LONG}.{n}.1>",
        "name": name,
        "state": "waiting",
        "message_queue_len": queue,
        "messages": messages,
        "function": "mod.fn",
        "label": extra.get("label"),
    }


def snapshot(procs: list[dict[str, Any]], sent: int = 0) -> dict[str, Any]:
    peer = {
        "peer": "b@h",
        "state": "up",
        "hidden": False,
        "address": "127.0.0.1:1",
        "bytes_in": 10,
        "bytes_out": 2048,
        "messages_in": 0,
        "messages_out": sent,
        "ticks_missed": 0,
        "seconds_since_heard": 0.5,
        "connected_seconds": 9.0,
    }
    stats = {
        "node": LONG,
        "uptime_seconds": 12.0,
        "active_processes": len(procs),
        "total_spawned": 9,
        "messages_processed": 100,
        "rss_bytes": 3 << 20,
        "loop_lag_seconds": 0.002,
        "loop_lag_max_10s_seconds": 0.004,
        "peers": [peer, {**peer, "peer": "cli@h", "hidden": True}],
    }
    return {"statistics": stats, "processes": procs}


def test_top_orders_by_queue_then_rate_and_shows_rates_since_the_last_poll() -> None:
    before = snapshot([proc(1, 0, 0, "idle"), proc(2, 0, 0, "fast"), proc(3, 5, 0, "stuck")])
    now = snapshot(
        [proc(1, 0, 0, "idle"), proc(2, 0, 400, "fast"), proc(3, 5, 0, "stuck")], sent=200
    )
    lines = render(now, before, 2.0, width=200)
    assert lines[0].startswith(f"{LONG}  up 12 s  processes 3")
    assert "event loop lag 2.0 ms (max 10 s: 4.0 ms)" in lines[1]
    peers = lines.index(next(line for line in lines if line.startswith("PEER")))
    assert lines[peers + 1].split()[:4] == ["b@h", "up", "0", "100"]  # 200 sent in 2 s
    assert not any("cli@h" in line for line in lines)  # hidden tool nodes are left out
    header = next(i for i, line in enumerate(lines) if line.startswith("PID"))
    names = [line.split()[1] for line in lines[header + 1 :]]
    assert names == ["stuck", "fast", "idle"]
    rates = [line.split()[3] for line in lines[header + 1 :]]
    assert rates == ["0", "200", "0"]
    by_rate = render(now, before, 2.0, sort="rate", width=200)
    assert [line.split()[1] for line in by_rate[header + 1 :]] == ["fast", "stuck", "idle"]


def test_top_without_a_previous_poll_shows_no_rates_and_fits_the_screen() -> None:
    now = snapshot([proc(i, i, 0) for i in range(50)])
    lines = render(now, width=60, height=20)
    assert len(lines) <= 20 and all(len(line) <= 60 for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("PID"))
    assert lines[header + 1].split()[3] == "-"


def test_ps_columns_grow_with_long_names_and_sort() -> None:
    rows = [
        proc(1, 0, 5, "b_name"),
        proc(2, 3, 1, None, label="gen_server m.C"),
        proc(3, 1, 9, "a_name"),
    ]
    header, *lines = format_ps(rows, "queue")
    assert header.split() == ["PID", "NAME", "STATE", "QUEUE", "MESSAGES", "RUNS"]
    assert header.index("NAME") == len(f"<{LONG}.1.1>") + 2
    assert [line.split()[3] for line in lines] == ["3", "1", "0"]
    assert lines[0].endswith("gen_server m.C")
    assert [line.split()[1] for line in format_ps(rows, "messages")[1:]] == [
        "a_name",
        "b_name",
        "-",
    ]
    assert [line.split()[1] for line in format_ps(rows, "name")[1:]] == ["a_name", "b_name", "-"]


def test_stats_prints_parseable_numbers_then_a_peer_table() -> None:
    text = format_stats(snapshot([])["statistics"])
    assert text[:3] == [f"node: {LONG}", "uptime_seconds: 12.000", "active_processes: 0"]
    assert "rss_bytes: 3145728 (3.0 MiB)" in text
    assert "loop_lag_seconds: 0.0020" in text
    blank = text.index("")
    assert text[blank + 1].split()[:3] == ["PEER", "STATE", "ADDRESS"]
    assert text[blank + 2].split()[:2] == ["b@h", "up"]
    assert text[blank + 3].startswith("cli@h (hidden)")
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"
