"""Nodes on one host find each other with no flags: the port mapper, as OS processes.

The suite's mapper (``tests/conftest.py``) listens on the free port in
``ERL_EPMD_PORT``; every node here registers with it. Tests that need a
mapper of their own use another free port and stop what they started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
from cli_support import DEADLINE, StartNode, child_env, cli_command, error_line, run_cli
from port_mappers import free_loopback_port, pids_listening_on, stop_mappers

from otpylib_dist.discovery.epmd import EpmdDiscovery
from otpylib_dist.protocol.epmd_wire import encode_alive2_req

pytestmark = pytest.mark.multiprocess


def _until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_nodes_with_no_flags_connect_and_answer_ping(
    start_node: StartNode, cookie: str
) -> None:
    a = start_node("a")
    b = start_node("b", "--connect", "a")
    assert (a.name, b.name) == ("a@127.0.0.1", "b@127.0.0.1")
    done = run_cli("ping", "a", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, "pong\n")
    assert run_cli("nodes", "b", "--cookie", cookie).stdout == "a@127.0.0.1\n"
    assert "total_spawned" in run_cli("stats", "a", "--cookie", cookie).stdout
    assert run_cli("ps", "a", "--cookie", cookie).returncode == 0
    assert run_cli("stop", "b", "--cookie", cookie).stdout == "b@127.0.0.1 stopped\n"
    assert b.wait_exit() == 0


def test_connect_waits_for_a_node_started_later(start_node: StartNode, cookie: str) -> None:
    early = start_node("early", "--connect", "late", wait=False)
    time.sleep(2.0)  # the scenario itself: the peer comes up two seconds later
    assert early.proc.poll() is None, "\n".join(early.stderr)
    start_node("late")
    early.started()
    assert run_cli("nodes", "late", "--cookie", cookie).stdout == "early@127.0.0.1\n"


def test_connect_gives_up_after_connect_timeout(cookie: str) -> None:
    started = time.monotonic()
    done = run_cli(
        "--name", "hopeful", "--cookie", cookie, "--connect", "never", *("--connect-timeout", "2")
    )
    # It kept trying for the whole timeout (the last pause is cut to the deadline,
    # not skipped: with 0.1 s doubling, skipping it gave up after 1.5 s of 2).
    assert time.monotonic() - started >= 2.0
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        "otpy-node: cannot connect to never@127.0.0.1: no node of that name is registered with "
        "the port mapper on 127.0.0.1; check that it runs, under that name (or give "
        "NAME@HOST:PORT) (retried for 2 s: --connect-timeout)"
    )


def test_the_mapper_drops_a_killed_nodes_registration(start_node: StartNode) -> None:
    port = int(os.environ["ERL_EPMD_PORT"])
    doomed = start_node("doomed")
    client = EpmdDiscovery(port=port, register=False)
    assert asyncio.run(client.names())["doomed"] == doomed.port
    listed = run_cli("epmd", "--names")
    assert f"name doomed at port {doomed.port}" in listed.stdout.splitlines()
    doomed.signal(signal.SIGKILL)
    doomed.wait_exit()
    _until(lambda: "doomed" not in asyncio.run(client.names()), "the name stayed registered")


def test_a_node_starts_a_detached_mapper_when_none_answers(
    start_node: StartNode, cookie: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_loopback_port()
    monkeypatch.setenv("ERL_EPMD_PORT", str(port))
    try:
        node = start_node("founder")
        mappers = pids_listening_on(port)
        assert len(mappers) == 1 and node.proc.pid not in mappers
        assert run_cli("ping", "founder", "--cookie", cookie).stdout == "pong\n"
        assert run_cli("stop", "founder", "--cookie", cookie).returncode == 0
        assert node.wait_exit() == 0
        # Detached: it outlives the node, as `epmd -daemon` outlives erl.
        assert pids_listening_on(port) == mappers
        done = run_cli("epmd", "--kill")
        assert (done.returncode, done.stdout) == (0, f"port mapper on port {port} stopped\n")
        _until(lambda: not pids_listening_on(port), "the mapper did not stop on --kill")
    finally:
        stop_mappers(port)


def test_epmd_subcommand_runs_lists_and_refuses_a_taken_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_loopback_port()
    monkeypatch.setenv("ERL_EPMD_PORT", str(port))
    mapper = subprocess.Popen(
        [*cli_command(), "epmd"], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    try:
        assert mapper.stdout is not None
        assert mapper.stdout.readline() == f"port mapper listening on port {port}\n"
        assert run_cli("epmd", "--names").stdout == f"port mapper on port {port}: 0 name(s)\n"
        done = run_cli("epmd", "--daemon")
        assert (done.returncode, done.stdout) == (0, f"a port mapper already runs on port {port}\n")
        taken = run_cli("epmd")
        assert taken.returncode == 1
        assert error_line(taken.stderr).startswith(
            f"otpy-node: the port mapper cannot listen on port {port}: "
        )
        mapper.send_signal(signal.SIGTERM)
        assert mapper.wait(DEADLINE) == 0
    finally:
        if mapper.poll() is None:
            mapper.kill()
        mapper.wait(DEADLINE)


def test_an_erlang_node_found_through_the_mapper_is_named_as_such(cookie: str) -> None:
    # Register the way an Erlang node does: no otpylib marker in "extra".
    import socket

    port = int(os.environ["ERL_EPMD_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as holder:
        holder.sendall(encode_alive2_req("beam", 4999, extra=b""))
        assert holder.recv(2)[:1] == b"v"
        done = run_cli("ping", "beam", "--cookie", cookie)
        assert (done.returncode, done.stdout) == (1, "pang\n")
        assert error_line(done.stderr) == (
            "otpy-node: cannot connect to beam@127.0.0.1: beam@127.0.0.1 is not an otpylib node "
            f"(the port mapper at 127.0.0.1:{port} has it registered by another kind of node, "
            "probably Erlang); otpylib speaks its own distribution protocol and cannot connect "
            "to it"
        )
        run = run_cli("--name", "curious", "--cookie", cookie, "--connect", "beam")
        assert run.returncode == 1
        assert "beam@127.0.0.1 is not an otpylib node" in error_line(run.stderr)


def test_a_silent_mapper_is_one_line_without_traceback(cookie: str) -> None:
    port = free_loopback_port()
    done = run_cli("ping", "a@127.0.0.1", "--cookie", cookie, "--epmd-port", str(port))
    assert (done.returncode, done.stdout) == (1, "pang\n")
    line = error_line(done.stderr)
    assert line.startswith(
        f"otpy-node: cannot connect to a@127.0.0.1: the port mapper at 127.0.0.1:{port} did "
        "not answer ("
    )
    assert line.endswith(
        "); no node runs on 127.0.0.1 with this port mapper (check ERL_EPMD_PORT), or give "
        "NAME@HOST:PORT"
    )


def test_sigterm_while_connect_retries_exits_0(start_node: StartNode) -> None:
    waiting = start_node("patient", "--connect", "absent", "--log-level", "info", wait=False)
    waiting.wait_for(r"cannot connect to absent@127\.0\.0\.1 yet", stream="stderr")
    waiting.signal(signal.SIGTERM)
    assert waiting.wait_exit() == 0
    assert waiting.stdout == []  # it never said it was up
