"""``otpy-node`` with no discovery flag: a --connect chain meshes; --spawn-allow narrows rpc."""

from __future__ import annotations

import json
import time

import pytest
from cli_support import DEADLINE, StartNode, error_line, run_cli

pytestmark = pytest.mark.multiprocess


def _nodes(name: str, cookie: str) -> list[str]:
    done = run_cli("nodes", name, "--cookie", cookie, "--json")
    assert done.returncode == 0, done.stderr
    return sorted(json.loads(done.stdout))


def test_a_connect_chain_ends_as_a_full_mesh(start_node: StartNode, cookie: str) -> None:
    start_node("a")
    start_node("b", "--connect", "a")
    start_node("c", "--connect", "b")
    everyone = ["a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"]
    deadline = time.monotonic() + DEADLINE
    while _nodes("c", cookie) != everyone[:2] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _nodes("c", cookie) == everyone[:2]
    assert _nodes("a", cookie) == everyone[1:]


def test_no_connect_all_keeps_only_the_connects_asked_for(
    start_node: StartNode, cookie: str
) -> None:
    start_node("a")
    start_node("b", "--connect", "a")
    start_node("c", "--connect", "b", "--no-connect-all")
    assert run_cli("ping", "c", "--cookie", cookie).stdout == "pong\n"
    assert _nodes("c", cookie) == ["b@127.0.0.1"]


def test_spawn_allow_narrows_rpc_too(start_node: StartNode, cookie: str) -> None:
    start_node("guarded", "--spawn-allow", "cli_procs")
    done = run_cli("rpc", "guarded", "cli_procs:add", "2", "40", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, "42\n")
    done = run_cli("rpc", "guarded", "os:getpid", "--cookie", cookie)
    assert done.returncode == 1
    assert "not in this node's spawn allow-list (cli_procs)" in error_line(done.stderr)
