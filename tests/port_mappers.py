"""Find and stop port mappers by the port they listen on (Linux ``/proc``), for tests.

A node started with no ``--discovery`` starts a detached mapper when none
answers; it is no child of the test, so the test finds it by its listening
port and ends it by pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Generous bound on a mapper starting or stopping.
DEADLINE = 10.0


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pids_listening_on(port: int) -> set[int]:
    """Pids of the processes holding a TCP socket that listens on ``port``."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: set[int] = set()
    if not targets:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    found.add(int(entry.name))
                    break
        except OSError:
            continue
    return found


def stop_mappers(port: int) -> list[int]:
    """SIGTERM (then SIGKILL) whatever listens on ``port``; return the pids ended."""
    pids = sorted(pids_listening_on(port) - {os.getpid()})
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE
    while pids_listening_on(port) - {os.getpid()}:
        if time.monotonic() > deadline:
            for pid in pids_listening_on(port) - {os.getpid()}:
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    return pids


def answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_mapper(port: int) -> subprocess.Popen[bytes]:
    """Start our mapper in the foreground on 127.0.0.1:``port``; return once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "otpylib_dist.discovery.epmd_server", "--port", str(port)],
        env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
    )
    deadline = time.monotonic() + DEADLINE
    while not answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the port mapper did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return proc
