"""``otpy-node top NODE``: a live view of one node, refreshed every second.

Erlang has ``etop`` and ``observer``; this is the terminal-sized version:
the processes with the longest queues and the most messages per second,
the peers with their traffic, the event loop's lag and the node's memory.
Rates are differences between two snapshots (the node's ``snapshot``
answer, see ``node_rpc``), so the node does no extra work between polls.

Pids are shown as Erlang shows local ones, ``<0.ID.0>``: they all belong to
the node in the title. Keys: ``q`` quits (so does Ctrl-C). ``--once`` prints one view and exits
(two polls ``--interval`` apart, so the rates are real), for scripts and
logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

from otpylib_dist.cli_output import human_bytes, table, what

logger = logging.getLogger(__name__)

__all__ = ["TOP_SORTS", "render", "run_top"]

#: ``top --sort``: by queue length (default) or by messages per second.
TOP_SORTS: Final = ("queue", "rate")

#: Escape sequences: clear the screen and home the cursor; the alternate
#: screen keeps the user's scrollback intact while top runs.
_CLEAR: Final = "\x1b[H\x1b[2J"
_ALT_ON: Final = "\x1b[?1049h\x1b[?25l"
_ALT_OFF: Final = "\x1b[?25h\x1b[?1049l"

Snapshot = dict[str, Any]


def _rates(
    now: Snapshot, before: Snapshot | None, seconds: float
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Messages per second by pid, and (in, out) per second by peer, since ``before``."""
    if before is None or seconds <= 0:
        return {}, {}
    old = {r["pid"]: r.get("messages", 0) for r in before["processes"]}
    procs = {
        r["pid"]: (r.get("messages", 0) - old[r["pid"]]) / seconds
        for r in now["processes"]
        if r["pid"] in old
    }
    old_peers = {p["peer"]: p for p in before["statistics"].get("peers", [])}
    peers = {}
    for p in now["statistics"].get("peers", []):
        o = old_peers.get(p["peer"])
        if o is not None:
            peers[p["peer"]] = (
                (p["messages_in"] - o["messages_in"]) / seconds,
                (p["messages_out"] - o["messages_out"]) / seconds,
            )
    return procs, peers


def render(
    now: Snapshot,
    before: Snapshot | None = None,
    seconds: float = 0.0,
    *,
    sort: str = "queue",
    width: int = 120,
    height: int = 40,
) -> list[str]:
    """The lines of one view of ``now`` (rates against ``before``, ``seconds`` earlier).

    Processes are ordered by queue length then messages per second (or the
    other way round with ``sort="rate"``); the list is cut to fit ``height``
    and every line to ``width``.
    """
    stats = now["statistics"]
    proc_rates, peer_rates = _rates(now, before, seconds)
    lag = stats.get("loop_lag_seconds")
    lag_max = stats.get("loop_lag_max_10s_seconds")
    header = [
        f"{stats['node']}  up {stats['uptime_seconds']:.0f} s  "
        f"processes {stats['active_processes']}  spawned {stats['total_spawned']}  "
        f"rss {human_bytes(stats.get('rss_bytes', 0))}",
        f"event loop lag {_ms(lag)} (max 10 s: {_ms(lag_max)})  "
        f"messages delivered {stats['messages_processed']}",
        "",
    ]
    visible = [p for p in stats.get("peers", []) if not p["hidden"]]
    peer_rows = [
        [
            p["peer"],
            p["state"],
            _rate(peer_rates.get(p["peer"], (None, None))[0]),
            _rate(peer_rates.get(p["peer"], (None, None))[1]),
            human_bytes(p["bytes_in"]),
            human_bytes(p["bytes_out"]),
            f"{p['seconds_since_heard']:.1f}s",
        ]
        for p in sorted(visible, key=lambda p: p["peer"])
    ]
    peers = (
        table(
            ("PEER", "STATE", "IN/S", "OUT/S", "BYTES IN", "BYTES OUT", "HEARD"),
            peer_rows,
            {2, 3, 4, 5},
        )
        if peer_rows
        else ["(no peers)"]
    )

    def order(r: dict[str, Any]) -> tuple[float, float, str]:
        rate = proc_rates.get(r["pid"], 0.0)
        if sort == "rate":
            return (-rate, -r["message_queue_len"], r["pid"])
        return (-r["message_queue_len"], -rate, r["pid"])

    rows = sorted(now["processes"], key=order)
    room = max(1, height - len(header) - len(peers) - 2)
    proc_rows = [
        [
            _local_pid(r["pid"]),
            r["name"] or "-",
            str(r["message_queue_len"]),
            _rate(proc_rates.get(r["pid"])),
            r["state"],
            what(r),
        ]
        for r in rows[:room]
    ]
    procs = table(("PID", "NAME", "QUEUE", "MSG/S", "STATE", "RUNS"), proc_rows, {2, 3})
    lines = [*header, *peers, "", *procs]
    return [line[:width] for line in lines]


def _local_pid(pid: str) -> str:
    """``<node.12.345>`` as ``<0.12.0>``: every pid here is the node's own, so its
    name (which may be a long DNS name) says nothing; Erlang writes local pids so."""
    _, _, rest = pid.rpartition("@")
    parts = rest.rstrip(">").split(".")
    return f"<0.{parts[-2]}.0>" if len(parts) >= 3 and parts[-2].isdigit() else pid


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


@contextlib.contextmanager
def _terminal(live: bool) -> Iterator[None]:
    """Keys without Enter (cbreak) and the alternate screen, restored however we leave."""
    if not live or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        sys.stdout.write(_ALT_ON)
        sys.stdout.flush()
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write(_ALT_OFF)
        sys.stdout.flush()


async def run_top(
    poll: Callable[[], Awaitable[Snapshot]],
    *,
    once: bool = False,
    interval: float = 1.0,
    sort: str = "queue",
) -> int:
    """Poll a node and draw its view until ``q``, Ctrl-C or (``once``) one view.

    Args:
        poll: returns the node's ``snapshot`` answer (raises if unreachable).
        once: print one view and return.
        interval: seconds between polls.
        sort: ``queue`` or ``rate`` (see :func:`render`).

    Returns:
        The exit code (0).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    previous: Snapshot | None = None
    taken = 0.0
    if once:
        previous, taken = await poll(), time.monotonic()
        await asyncio.sleep(interval)
        now = await poll()
        size = shutil.get_terminal_size((120, 40))
        lines = render(
            now, previous, time.monotonic() - taken, sort=sort, width=size.columns, height=10_000
        )
        print("\n".join(lines), flush=True)
        return 0
    with _terminal(live=True):
        fd = sys.stdin.fileno()

        def on_key() -> None:
            try:
                data = os.read(fd, 64)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)  # stdin closed: Ctrl-C still works
            elif b"q" in data or b"Q" in data:
                stop.set()

        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            loop.add_reader(fd, on_key)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            while not stop.is_set():
                now = await poll()
                moment = time.monotonic()
                size = shutil.get_terminal_size((120, 40))
                lines = render(
                    now,
                    previous,
                    moment - taken,
                    sort=sort,
                    width=size.columns,
                    height=size.lines - 1,
                )
                sys.stdout.write(_CLEAR + "\n".join(lines) + "\n")
                sys.stdout.flush()
                previous, taken = now, moment
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGINT)
    return 0
