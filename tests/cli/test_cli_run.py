"""``otpy-node run``: a node in the foreground until SIGTERM/SIGINT, then a clean shutdown."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from cli_support import DEADLINE, StartNode, log_lines, run_cli

from otpylib import process
from otpylib.runtime.atoms import EXIT, NODEDOWN, NODEUP, SHUTDOWN, atom
from otpylib_dist import DistributedBackend

pytestmark = pytest.mark.multiprocess

#: A logfmt record, as the CLI writes them.
LOGFMT = re.compile(
    r"^time=\S+Z level=(debug|info|warning|error|critical) logger=\S+ node=\S+ "
    r'(\w+=("[^"]*"|\S+) )*msg=("[^"]*"|\S+)'
)


async def _watch_until_signal(
    observer: DistributedBackend, node_name: str, port: int, deliver: Any
) -> list[Any]:
    """Link a process of ``observer`` to the node's ``echo``; deliver the signal; collect."""
    done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        await observer.monitor_nodes(True)
        assert await observer.connect(node_name, "127.0.0.1", port)
        assert await process.receive(timeout=DEADLINE) == (NODEUP, node_name)
        echo = await observer.rpc(node_name, "whereis", "echo")
        await process.link(echo)
        await process.send(("echo", node_name), (process.self(), "sync"))
        assert await process.receive(timeout=DEADLINE) == ("echo", "sync")
        await asyncio.to_thread(deliver)
        done.set_result([await process.receive(timeout=DEADLINE) for _ in range(2)] + [echo])

    await observer.spawn(watcher, trap_exits=True)
    return await asyncio.wait_for(done, DEADLINE * 2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_cleanly(start_node: StartNode, cookie: str, sig: Any) -> None:
    node = start_node("served@127.0.0.1", "--run", "cli_procs:echo_service", "--log-level", "info")
    observer = DistributedBackend("observer@127.0.0.1", cookie=cookie)
    await observer.initialize()
    try:
        exit_msg, nodedown, echo = await _watch_until_signal(
            observer, node.name, node.port, lambda: node.signal(sig)
        )
    finally:
        await observer.shutdown()
    # The node's processes got the exit signal ``shutdown`` (links fired with
    # it, not with noconnection), and only then did the connection close.
    assert exit_msg == (EXIT, echo, SHUTDOWN)
    assert nodedown == (NODEDOWN, node.name, {"reason": atom.ensure("connection_closed")})
    assert await asyncio.to_thread(node.wait_exit) == 0
    assert "Traceback" not in "\n".join(node.stderr)
    assert any(f'msg="node {node.name} stopped"' in line for line in node.stderr)


def test_logs_are_logfmt_on_stderr(start_node: StartNode, cookie: str) -> None:
    a = start_node("a@127.0.0.1", "--log-level", "info")
    start_node("b@127.0.0.1", "--connect", a.address)
    a.wait_for(r'msg="nodeup b@127\.0\.0\.1 ', stream="stderr")
    assert run_cli("stop", a.address, "--cookie", cookie).returncode == 0
    assert a.wait_exit() == 0
    assert a.stderr and all(LOGFMT.match(line) for line in a.stderr), a.stderr
    assert a.stdout == [f"node a@127.0.0.1 listening on {a.port}"]
    assert log_lines("\n".join(a.stderr)) == a.stderr


def test_run_imports_from_the_current_directory(
    start_node: StartNode, cookie: str, tmp_path: Path
) -> None:
    (tmp_path / "my_service.py").write_text(
        "from otpylib import process\n\n\n"
        "async def main():\n"
        "    await process.register('mine')\n"
        "    await process.receive()\n"
    )
    node = start_node("local@127.0.0.1", "--run", "my_service:main", cwd=tmp_path)
    for _ in range(50):
        ps = run_cli("ps", node.address, "--cookie", cookie)
        if " mine " in ps.stdout:
            break
    assert " mine " in ps.stdout and "my_service.main" in ps.stdout


def test_connect_finds_peers_in_a_static_list(start_node: StartNode, cookie: str) -> None:
    a = start_node("a@127.0.0.1")
    b = start_node(
        "b@127.0.0.1",
        *("--discovery", "static", "--static", a.address, "--connect", a.name),
        *("--busy-wait", "0.0002"),
    )
    assert run_cli("nodes", a.address, "--cookie", cookie).stdout == f"{b.name}\n"
