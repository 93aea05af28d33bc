"""How ``otpy-node ps`` and ``stats`` print a node's answers: tables that fit what they hold.

Column widths come from the data, not from constants: a Kubernetes pod's
node name (``worker@worker-0.worker.production.svc.cluster.local``) is
longer than any fixed column would allow, and a pid carries it. The last
column (what a process runs) is never padded, so nothing is cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "PS_SORTS",
    "format_peers",
    "format_ps",
    "format_stats",
    "human_bytes",
    "sort_processes",
    "table",
    "what",
]

#: ``ps --sort`` keys: longest queue first, most messages received first, or by name.
PS_SORTS: Final = ("queue", "messages", "name")


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: short enough for a table cell."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> list[str]:
    """Align ``rows`` under ``headers``; columns in ``numeric`` are right-aligned.

    Every column is as wide as its widest cell; the last is left unpadded.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    last = len(headers) - 1

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == last:
                out.append(cell)
            elif i in numeric:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def what(row: dict[str, Any]) -> str:
    """What a process runs: its label (``gen_server mod.Class``) or its function."""
    return str(row.get("label") or row["function"])


_SORT_KEYS: Final[dict[str, Callable[[dict[str, Any]], Any]]] = {
    "queue": lambda r: (-r["message_queue_len"], -r.get("messages", 0), r["pid"]),
    "messages": lambda r: (-r.get("messages", 0), -r["message_queue_len"], r["pid"]),
    "name": lambda r: (r["name"] is None, r["name"] or what(r), r["pid"]),
}


def sort_processes(rows: list[dict[str, Any]], key: str | None) -> list[dict[str, Any]]:
    """``rows`` in ``ps --sort`` order (``None``: as the node listed them, i.e. by age)."""
    if key is None:
        return rows
    return sorted(rows, key=_SORT_KEYS[key])


def format_ps(rows: list[dict[str, Any]], sort: str | None = None) -> list[str]:
    """The ``ps`` table: pid, name, state, queue, messages received, what it runs."""
    cells = [
        [
            r["pid"],
            r["name"] or "-",
            r["state"],
            str(r["message_queue_len"]),
            str(r.get("messages", "-")),
            what(r),
        ]
        for r in sort_processes(rows, sort)
    ]
    return table(("PID", "NAME", "STATE", "QUEUE", "MESSAGES", "RUNS"), cells, {3, 4})


_PEER_HEADERS: Final = ("PEER", "STATE", "ADDRESS", "IN", "OUT", "MSGS IN", "MSGS OUT", "HEARD")


def format_peers(peers: list[dict[str, Any]]) -> list[str]:
    """The peers part of ``stats``: one row per connection, hidden ones marked."""
    cells = [
        [
            p["peer"] + (" (hidden)" if p["hidden"] else ""),
            p["state"],
            p["address"],
            human_bytes(p["bytes_in"]),
            human_bytes(p["bytes_out"]),
            str(p["messages_in"]),
            str(p["messages_out"]),
            f"{p['seconds_since_heard']:.1f}s ago",
        ]
        for p in sorted(peers, key=lambda p: (p["hidden"], p["peer"]))
    ]
    return table(_PEER_HEADERS, cells, {3, 4, 5, 6})


def _scalar(key: str, value: Any) -> str:
    """A ``stats`` value: plain numbers a script can parse (sizes also in KiB/MiB)."""
    if key == "rss_bytes":
        return f"{value} ({human_bytes(value)})"
    if isinstance(value, float):
        return f"{value:.4f}" if "lag" in key else f"{value:.3f}"
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def format_stats(result: dict[str, Any]) -> list[str]:
    """The ``stats`` answer: ``key: value`` lines, then a table of peers."""
    lines = [f"{k}: {_scalar(k, v)}" for k, v in result.items() if k != "peers"]
    peers = result.get("peers")
    if peers:
        lines.append("")
        lines.extend(format_peers(peers))
    return lines
