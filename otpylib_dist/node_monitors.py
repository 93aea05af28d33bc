"""Who wants to hear of nodes coming and going: ``monitor_node`` and ``monitor_nodes``.

``monitor_node(node)`` subscriptions fire once, with ``(nodedown, node)``,
and are then gone; ``monitor_nodes()`` subscribers hear every
``(nodeup, node)`` and ``(nodedown, node, {"reason": R})`` of visible nodes
until they unsubscribe. As in Erlang, a subscription ends with its process:
dead subscribers are dropped when a delivery to them fails and, so a
process that subscribes and dies over and over cannot grow the tables
between node events, whenever a table has doubled since it was last swept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from otpylib.runtime.atoms import NODEDOWN, NODEUP
from otpylib.runtime.backends.base import RuntimeEntry
from otpylib.runtime.data import Pid

logger = logging.getLogger(__name__)

__all__ = ["NodeMonitors"]

#: Sweep a table once it holds this many more entries than after its last sweep.
_SWEEP_SLACK = 16


class NodeMonitors:
    """The node-monitor subscriptions of one node."""

    __slots__ = ("_entry", "_node_subs", "_nodes_subs", "_swept_at")

    def __init__(self, entry: RuntimeEntry) -> None:
        self._entry = entry
        #: node -> {subscriber: count}, for monitor_node.
        self._node_subs: dict[str, dict[Pid, int]] = {}
        #: monitor_nodes subscribers.
        self._nodes_subs: set[Pid] = set()
        #: Table sizes right after the last sweep (node_subs total, nodes_subs).
        self._swept_at = [0, 0]

    def __len__(self) -> int:
        """Subscriptions held (for tests and statistics)."""
        return len(self._nodes_subs) + sum(len(s) for s in self._node_subs.values())

    def add_node(self, node: str, pid: Pid) -> None:
        """One more ``(nodedown, node)`` for ``pid`` (``monitor_node(node, true)``)."""
        subs = self._node_subs.setdefault(node, {})
        subs[pid] = subs.get(pid, 0) + 1
        self._maybe_sweep()

    def remove_node(self, node: str, pid: Pid) -> None:
        """One less (``monitor_node(node, false)``)."""
        subs = self._node_subs.get(node)
        if subs and pid in subs:
            subs[pid] -= 1
            if subs[pid] <= 0:
                del subs[pid]
            if not subs:
                del self._node_subs[node]

    def subscribe(self, pid: Pid, flag: bool) -> None:
        """``monitor_nodes(flag)`` for ``pid``."""
        if flag:
            self._nodes_subs.add(pid)
            self._maybe_sweep()
        else:
            self._nodes_subs.discard(pid)

    def nodeup(self, node: str, *, visible: bool) -> None:
        """``node`` connected: tell the monitor_nodes subscribers (visible nodes only)."""
        if visible:
            self._broadcast((NODEUP, node))

    def nodedown(self, node: str, reason: Any, *, visible: bool) -> None:
        """``node`` is gone: fire its monitor_node subscriptions, then tell subscribers."""
        deliver = self._entry.deliver
        for pid, count in self._node_subs.pop(node, {}).items():
            for _ in range(count):
                deliver(pid, (NODEDOWN, node))
        if visible:
            self._broadcast((NODEDOWN, node, {"reason": reason}))

    def _broadcast(self, message: Any) -> None:
        deliver = self._entry.deliver
        dead = [pid for pid in self._nodes_subs if not deliver(pid, message)]
        self._nodes_subs.difference_update(dead)

    def _maybe_sweep(self) -> None:
        """Drop dead subscribers once a table has grown well past its last swept size."""
        alive: Callable[[Pid], bool] = self._entry.is_alive
        if len(self._nodes_subs) > 2 * self._swept_at[1] + _SWEEP_SLACK:
            self._nodes_subs = {pid for pid in self._nodes_subs if alive(pid)}
            self._swept_at[1] = len(self._nodes_subs)
        total = sum(len(s) for s in self._node_subs.values())
        if total > 2 * self._swept_at[0] + _SWEEP_SLACK:
            for node in list(self._node_subs):
                subs = {pid: n for pid, n in self._node_subs[node].items() if alive(pid)}
                if subs:
                    self._node_subs[node] = subs
                else:
                    del self._node_subs[node]
            self._swept_at[0] = sum(len(s) for s in self._node_subs.values())
