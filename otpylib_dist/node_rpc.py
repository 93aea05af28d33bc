"""Questions a node answers about itself: what ``otpy-node`` subcommands ask.

These run in the node, outside any process, and answer from local state at
once. The answers are plain data (str, int, float, lists and dicts) so that
any peer can decode them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from otpylib_dist.vitals import loop_lag, rss_bytes

if TYPE_CHECKING:
    from otpylib_dist.node import Node  # the caller's type only: no import at run time

logger = logging.getLogger(__name__)

__all__ = ["OPS", "answer"]


def _ping(node: Node, arg: Any) -> Any:
    return "pong"


def _nodes(node: Node, arg: Any) -> Any:
    return node.nodes()


def _whereis(node: Node, arg: Any) -> Any:
    return node.whereis(str(arg))


def _processes(node: Node, arg: Any) -> Any:
    rows = []
    for pid in node.processes():
        info = node.process_info(pid)
        if info is None:
            continue
        rows.append(
            {
                "pid": str(info.pid),
                "name": info.name,
                "state": info.state,
                "message_queue_len": info.message_queue_len,
                "function": info.function,
                "links": len(info.links),
                "trap_exits": info.trap_exits,
                "label": info.label,
                "messages": info.messages_received,
            }
        )
    return rows


def _statistics(node: Node, arg: Any) -> Any:
    stats = node.statistics()
    return {
        "node": node.node_name,
        "uptime_seconds": stats.uptime_seconds,
        "total_spawned": stats.total_spawned,
        "active_processes": stats.active_processes,
        "messages_processed": stats.messages_processed,
        "active_monitors": stats.active_monitors,
        "active_links": stats.active_links,
        "registered_names": stats.registered_names,
        "connected_nodes": node.nodes(),
        **_vitals(node),
    }


def _vitals(node: Node) -> dict[str, Any]:
    """What ``stats`` adds to the runtime's counters: memory, loop lag, connections.

    The lag monitor starts at the first question if nothing started it (a
    node run by ``otpy-node run`` has it from the start).
    """
    rss, current = rss_bytes()
    lag = loop_lag().statistics()
    net = node.node_statistics()
    stats = node.statistics()
    return {
        "rss_bytes": rss,
        "rss_is_peak": not current,
        "loop_lag_seconds": lag.last_seconds,
        "loop_lag_max_10s_seconds": lag.recent_max_seconds,
        "exits": stats.exits,
        "nodeups": net.nodeups,
        "nodedowns": net.nodedowns,
        "handshake_refusals": net.refusals,
        "spin_sessions": net.spin_sessions,
        "spin_sessions_starved": net.spin_sessions_starved,
        "peers": [msgspec.to_builtins(p) for p in node.peer_statistics()],
    }


def _snapshot(node: Node, arg: Any) -> Any:
    """``statistics`` and ``processes`` in one answer: what ``otpy-node top`` polls."""
    return {"statistics": _statistics(node, arg), "processes": _processes(node, arg)}


def _stop(node: Node, arg: Any) -> Any:
    # The answer is queued before the stop starts (request_stop acts after
    # this step), and a closing connection writes what it has queued first.
    node.request_stop()
    return "stopping"


#: The operations a node answers, by name.
OPS: dict[str, Callable[[Node, Any], Any]] = {
    "ping": _ping,
    "nodes": _nodes,
    "whereis": _whereis,
    "processes": _processes,
    "statistics": _statistics,
    "snapshot": _snapshot,
    "stop": _stop,
}


def answer(node: Node, op: str, arg: Any) -> tuple[bool, Any]:
    """Answer ``op``: ``(True, result)``, or ``(False, explanation)``."""
    handler = OPS.get(op)
    if handler is None:
        return False, f"unknown operation {op!r}; known: {', '.join(sorted(OPS))}"
    try:
        return True, handler(node, arg)
    except Exception as exc:
        logger.exception("node rpc %r failed", op)
        return False, f"{type(exc).__name__}: {exc}"
