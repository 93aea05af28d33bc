"""``otpy-node ping|nodes|ps|stats|stop NODE``: asking a running node over the protocol."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from cli_support import DEADLINE, StartNode, error_line, run_cli
from waiting import wait_until

from otpylib_dist import DistributedBackend, control_handlers

#: Every --run application has a master process (as in OTP), shown by ps.
APP_MASTER = "otpylib.application._master"

pytestmark = pytest.mark.multiprocess


def test_ping_answers_pong_via_address_and_via_port_suffix(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("pinged@127.0.0.1")
    by_address = run_cli(
        "ping", node.name, "--address", f"127.0.0.1:{node.port}", "--cookie", cookie
    )
    assert (by_address.returncode, by_address.stdout) == (0, "pong\n")
    assert by_address.stderr == ""
    by_suffix = run_cli("ping", node.address, "--cookie", cookie)
    assert (by_suffix.returncode, by_suffix.stdout) == (0, "pong\n")


def test_ping_finds_the_node_in_a_static_list(start_node: StartNode, cookie: str) -> None:
    node = start_node("listed@127.0.0.1")
    done = run_cli(
        "ping", node.name, "--discovery", "static", "--static", node.address, "--cookie", cookie
    )
    assert (done.returncode, done.stdout) == (0, "pong\n")


def test_ping_of_a_node_that_is_not_there_answers_pang(cookie: str) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = run_cli("ping", f"ghost@127.0.0.1:{port}", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (1, "pang\n")
    assert re.match(
        rf"^otpy-node: cannot connect to ghost@127\.0\.0\.1 at 127\.0\.0\.1:{port}: nothing "
        r"accepts connections there \(.*\); check that the node is running and the port is right$",
        error_line(done.stderr),
    )


async def test_ping_of_a_node_that_connects_but_never_answers_says_pang(
    cookie: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node of this test process that completes handshakes and ignores node rpcs.
    monkeypatch.setattr(control_handlers.ControlHandlers, "_node_rpc", lambda *_args: None)
    mute = DistributedBackend("mute@127.0.0.1", cookie=cookie)
    await mute.initialize()
    try:
        done = await asyncio.to_thread(
            run_cli, "ping", f"{mute.node_name}:{mute.port}", "--cookie", cookie, "--timeout", "1"
        )
    finally:
        await mute.shutdown()
    assert (done.returncode, done.stdout) == (1, "pang\n")
    assert error_line(done.stderr) == (
        "otpy-node: mute@127.0.0.1 did not answer 'ping' within 1 s; raise --timeout if it is busy"
    )


def test_nodes_lists_the_connected_peers_but_not_the_asking_tool(
    start_node: StartNode, cookie: str
) -> None:
    a = start_node("a@127.0.0.1")
    b = start_node("b@127.0.0.1", "--connect", a.address)
    c = start_node("c@127.0.0.1", "--connect", a.address)
    done = run_cli("nodes", a.address, "--cookie", cookie)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == [b.name, c.name]
    # c dialed a only; connect_all then meshes it with b (a told c of b).
    deadline = time.monotonic() + DEADLINE
    while True:
        as_json = run_cli("nodes", c.address, "--cookie", cookie, "--json")
        listed = sorted(json.loads(as_json.stdout))
        if listed == sorted([a.name, b.name]) or time.monotonic() > deadline:
            break
    assert listed == sorted([a.name, b.name])  # the asking tool is never listed


def test_ps_shows_processes_with_name_state_and_queue_length(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("worker@127.0.0.1", "--run", "cli_procs:echo_service")
    deadline = time.monotonic() + DEADLINE
    while True:
        done = run_cli("ps", node.address, "--cookie", cookie)
        assert done.returncode == 0, done.stderr
        header, *rows = done.stdout.splitlines()
        rows = [r for r in rows if not r.endswith(APP_MASTER)]
        if rows or time.monotonic() > deadline:
            break
    assert header.split() == ["PID", "NAME", "STATE", "QUEUE", "MESSAGES", "RUNS"]
    (row,) = rows
    pid, name, state, queue, messages, function = row.split()
    assert pid.startswith("<") and name == "echo" and queue == "0" and messages == "0"
    assert state in ("waiting", "running", "runnable")
    assert function == "cli_procs.echo_service"
    infos = json.loads(run_cli("ps", node.address, "--cookie", cookie, "--json").stdout)
    (info,) = [i for i in infos if i["function"] != APP_MASTER]
    assert info["name"] == "echo" and info["message_queue_len"] == 0


async def test_ps_queue_column_counts_unread_messages(start_node: StartNode, cookie: str) -> None:
    node = start_node("slow@127.0.0.1", "--run", "cli_procs:sleeper")
    sender = DistributedBackend("sender@127.0.0.1", cookie=cookie)
    await sender.initialize()
    try:
        assert await sender.connect(node.name, "127.0.0.1", node.port)
        for i in range(3):
            await sender.send(("sleeper", node.name), ("unread", i))

        async def three_unread() -> bool:
            done = await asyncio.to_thread(run_cli, "ps", node.address, "--cookie", cookie)
            rows = [r.split() for r in done.stdout.splitlines()[1:] if not r.endswith(APP_MASTER)]
            return [r[1:4:2] for r in rows] == [["sleeper", "3"]]

        # Nothing tells when the node has queued them: ask ps until it shows them.
        await wait_until(three_unread, "ps shows 3 unread messages", DEADLINE, interval=0.1)
    finally:
        await sender.shutdown()


def test_stats_reports_counters_and_peers(start_node: StartNode, cookie: str) -> None:
    a = start_node("a@127.0.0.1", "--run", "cli_procs:echo_service")
    b = start_node("b@127.0.0.1", "--connect", a.address)
    done = run_cli("stats", a.address, "--cookie", cookie)
    assert done.returncode == 0, done.stderr
    scalars, _, peers = done.stdout.partition("\n\n")
    fields = dict(line.split(": ", 1) for line in scalars.splitlines())
    assert fields["node"] == a.name
    assert fields["connected_nodes"] == b.name
    assert int(fields["total_spawned"]) >= 1
    assert float(fields["uptime_seconds"]) >= 0
    assert int(fields["rss_bytes"].split()[0]) > 1 << 20
    assert float(fields["loop_lag_seconds"]) >= 0
    header, *rows = peers.splitlines()
    assert header.split()[:3] == ["PEER", "STATE", "ADDRESS"]
    assert [r.split()[:2] for r in rows if "(hidden)" not in r] == [[b.name, "up"]]
    stats = json.loads(run_cli("stats", a.address, "--cookie", cookie, "--json").stdout)
    assert stats["registered_names"] == 1
    assert stats["connected_nodes"] == [b.name]


def test_stop_ends_the_node_with_exit_code_0(start_node: StartNode, cookie: str) -> None:
    node = start_node("doomed@127.0.0.1", "--log-level", "info")
    done = run_cli("stop", node.address, "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, f"{node.name} stopped\n"), done.stderr
    assert node.wait_exit() == 0
    node.wait_for(rf'msg="node {re.escape(node.name)} stopped"', stream="stderr")
