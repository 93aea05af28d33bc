"""``otpy-node --run`` applications and exit codes; ``call``, ``rpc``, ``--version``;
and the new-user papercuts of issue 11, one clear line each. OS processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import StartNode, error_line, run_cli

from otpylib._version import __version__

pytestmark = pytest.mark.multiprocess


def test_a_start_function_returning_a_linked_server_keeps_it_serving(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("keeper", "--run", "cli_procs:start_kv")
    ps = run_cli("ps", "keeper", "--cookie", cookie, "--json")
    rows = {row["name"]: row for row in json.loads(ps.stdout)}
    assert rows["kv"]["function"] == "otpylib._gen_server_loop.serve"
    done = run_cli("call", "keeper", "kv", '["put", "k", {"list": [1, "two"]}]', "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, '{"atom": "ok"}\n')
    done = run_cli("call", "keeper", "kv", '["get", "k"]', "--cookie", cookie)
    assert done.stdout == '[{"atom": "ok"}, {"list": [1, "two"]}]\n'
    assert run_cli("stop", "keeper", "--cookie", cookie).returncode == 0
    assert node.wait_exit() == 0


def test_a_permanent_application_that_crashes_stops_the_node_with_1(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("fragile", "--run", "cli_procs:start_kv")
    done = run_cli("call", "fragile", "kv", '"crash"', "--cookie", cookie)
    assert done.returncode == 1
    assert error_line(done.stderr).startswith("otpy-node: call to 'kv' on fragile@127.0.0.1 ")
    assert node.wait_exit() == 1
    assert node.stderr[-1] == (
        "otpy-node: application cli_procs:start_kv crashed: RuntimeError: kv crashed on "
        "request; the node stopped (--log-level debug shows more)"
    )


def test_a_start_function_that_raises_exits_1_with_one_line(cookie: str) -> None:
    done = run_cli("--name", "broken", "--cookie", cookie, "--run", "cli_procs:failing_start")
    assert (done.returncode, done.stdout) == (1, "")
    assert error_line(done.stderr) == (
        "otpy-node: application cli_procs:failing_start failed to start: ValueError: no "
        "configuration found"
    )


def test_several_run_start_in_order_and_stop_in_reverse(start_node: StartNode, cookie: str) -> None:
    node = start_node(
        "multi",
        *("--run", "cli_procs:start_kv", "--run", "cli_procs:echo_service"),
        *("--log-level", "info"),
    )
    names = {
        row["name"]
        for row in json.loads(run_cli("ps", "multi", "--cookie", cookie, "--json").stdout)
    }
    assert {"kv", "echo"} <= names
    assert run_cli("stop", "multi", "--cookie", cookie).returncode == 0
    assert node.wait_exit() == 0
    stopped = [
        m.group(1)
        for line in node.stderr
        if (m := re.search(r'msg="application (\S+) stopped"', line))
    ]
    assert stopped == ["cli_procs:echo_service", "cli_procs:start_kv"]


def test_a_start_function_returning_no_pid_is_one_log_line_and_a_normal_end(
    cookie: str, tmp_path: Path
) -> None:
    (tmp_path / "setup_only.py").write_text("async def main():\n    return None\n")
    done = run_cli("--name", "brief", "--cookie", cookie, "--run", "setup_only:main", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "not the pid" in line]
    assert "start function setup_only:main returned None, not the pid of its top process" in line


def test_rpc_runs_a_function_by_reference(start_node: StartNode, cookie: str) -> None:
    start_node("worker")
    done = run_cli("rpc", "worker", "cli_procs:add", "2", "40", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, "42\n")
    done = run_cli("rpc", "worker", "cli_procs:add", "2", "--cookie", cookie)
    assert done.returncode == 1
    assert error_line(done.stderr).startswith(
        "otpy-node: cli_procs:add on worker@127.0.0.1 failed: TypeError: "
    )
    done = run_cli("rpc", "worker", "cli_procs:add", "two", "--cookie", cookie)
    assert done.returncode == 2
    assert error_line(done.stderr).startswith("otpy-node: ARGS 'two' is not JSON (")


def test_call_of_an_unknown_name_and_bad_json(start_node: StartNode, cookie: str) -> None:
    start_node("empty")
    done = run_cli("call", "empty", "nobody", '"hi"', "--cookie", cookie)
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        "otpy-node: no process is registered as 'nobody' on empty@127.0.0.1; "
        "`otpy-node ps empty@127.0.0.1` lists the names there"
    )
    done = run_cli("call", "empty", "kv", "{not json", "--cookie", cookie)
    assert done.returncode == 2


def test_version_and_help_lines() -> None:
    done = run_cli("--version")
    assert (done.returncode, done.stdout.split()[:2]) == (0, ["otpy-node", __version__])
    helped = run_cli("--help").stdout
    for verb, words in (
        ("ping", "check that a node answers"),
        ("call", "gen_server call"),
        ("rpc", "run module:function"),
        ("epmd", "run the port mapper"),
        ("top", "a live view of a node"),
    ):
        assert re.search(rf"^\s+{verb}\s+{words}", helped, re.M), helped
    # The fallback help line says nothing ("top top a running node"): every verb has its own.
    assert not re.search(r"\b(\w+) \1 a running node", " ".join(helped.split())), helped


# ------------------------------------------------ papercuts (issue 11, point 6)


def test_a_name_whose_host_does_not_resolve_is_a_usage_error(cookie: str) -> None:
    done = run_cli("--name", "a@no-such-host.invalid", "--cookie", cookie)
    assert done.returncode == 2
    line = error_line(done.stderr)
    assert line.startswith(
        "otpy-node: the host of --name a@no-such-host.invalid does not resolve to an address ("
    )
    assert line.endswith(
        "); name the node after an address of this machine where peers reach it, e.g. "
        "--name a@127.0.0.1"
    )
    assert "--port" not in line


def test_the_wrong_name_at_an_address_says_whose_address_it_is(
    start_node: StartNode, cookie: str
) -> None:
    a = start_node("a")
    done = run_cli("ping", f"b@127.0.0.1:{a.port}", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (1, "pang\n")
    assert error_line(done.stderr) == (
        f"otpy-node: cannot connect to b@127.0.0.1 at 127.0.0.1:{a.port}: the node at that "
        "address is a@127.0.0.1, not b@127.0.0.1; check the address, or the discovery records"
    )


def test_dns_service_without_dns_discovery_is_refused(cookie: str) -> None:
    done = run_cli("--name", "x", "--cookie", cookie, "--dns-service", "otpy.example")
    assert done.returncode == 2
    assert error_line(done.stderr) == (
        "otpy-node: --dns-service is for --discovery dns, but --discovery is epmd; add "
        "--discovery dns or drop --dns-service"
    )
    done = run_cli("--name", "x", "--cookie", cookie, "--dns-port-name", "dist")
    assert done.returncode == 2
    assert error_line(done.stderr) == (
        "otpy-node: --dns-port-name is for --discovery dns, but --discovery is epmd; add "
        "--discovery dns or drop --dns-port-name"
    )


def test_a_missing_explicit_cookie_file_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no.cookie"
    for argv in (("--name", "x"), ("ping", "x")):
        done = run_cli(*argv, "--cookie-file", str(missing))
        assert done.returncode == 2
        assert error_line(done.stderr) == (
            f"otpy-node: --cookie-file {missing} does not exist; give the file holding the "
            "cluster's cookie (readable by its owner only: chmod 400), or leave --cookie-file "
            "out to use ~/.otpylib.cookie (created on first use)"
        )
    assert not missing.exists()
