"""Every failure a user can cause prints one clear line, no traceback, and a non-zero code.

Exit code 2: bad arguments or configuration; 1: the node could not be
started or reached. Log records (logfmt, ``time=...``) may come before the
error line; ``error_line`` checks that exactly one other line is there.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from cli_support import StartNode, error_line, run_cli

pytestmark = pytest.mark.multiprocess


def test_bad_node_name(cookie: str) -> None:
    done = run_cli("--name", "bad name", "--cookie", cookie)
    assert done.returncode == 2
    assert error_line(done.stderr) == (
        "otpy-node: node name 'bad name@127.0.0.1': the part before '@' must be 1-63 "
        "letters, digits, '_' or '-'"
    )
    done = run_cli("ping", "a@b@c", "--cookie", cookie)
    assert done.returncode == 2
    assert error_line(done.stderr).startswith("otpy-node: node name 'a@b@c': ")


def test_port_taken(cookie: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_cli("--name", "late@127.0.0.1", "--port", str(port), "--cookie", cookie)
    assert done.returncode == 1
    assert re.match(
        rf"^otpy-node: node late@127\.0\.0\.1 cannot listen on 127\.0\.0\.1:{port}: .*address "
        r"already in use; choose another --port or stop the process using it$",
        error_line(done.stderr),
    )


COOKIE_REFUSED = (
    r"it refused our cookie \(bad_cookie\); every node of a cluster needs the same cookie: "
    r"pass it with --cookie or --cookie-file, or set OTPY_COOKIE \(default: ~/\.otpylib\.cookie\)$"
)


def test_wrong_cookie_for_run_connect(start_node: StartNode) -> None:
    node = start_node("guarded@127.0.0.1")
    done = run_cli("--name", "intruder", "--cookie", "not-the-cookie", "--connect", node.address)
    assert done.returncode == 1
    assert re.match(
        rf"^otpy-node: cannot connect to guarded@127\.0\.0\.1 at 127\.0\.0\.1:{node.port}: "
        + COOKIE_REFUSED,
        error_line(done.stderr),
    )
    assert done.stdout == ""  # it never said it was listening


def test_wrong_cookie_for_ping_and_ps(start_node: StartNode) -> None:
    node = start_node("guarded@127.0.0.1")
    for verb in ("ping", "ps"):
        done = run_cli(verb, node.address, "--cookie", "not-the-cookie")
        assert done.returncode == 1
        assert re.match(
            r"^otpy-node: cannot connect to guarded@127\.0\.0\.1 at .*: " + COOKIE_REFUSED,
            error_line(done.stderr),
        )
    assert done.stdout == ""
    assert run_cli("ping", node.address, "--cookie", "not-the-cookie").stdout == "pang\n"


def test_unreachable_node_for_run_connect(cookie: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = run_cli(
            *("--name", "lonely", "--cookie", cookie, "--connect", f"gone@127.0.0.1:{port}"),
            *("--connect-timeout", "0.5"),
        )
    assert done.returncode == 1
    assert re.match(
        rf"^otpy-node: cannot connect to gone@127\.0\.0\.1 at 127\.0\.0\.1:{port}: nothing "
        r"accepts connections there .*; check that the node is running and the port is right "
        r"\(retried for 0\.5 s: --connect-timeout\)$",
        error_line(done.stderr),
    )


def test_node_not_registered_with_the_port_mapper(cookie: str) -> None:
    done = run_cli("ping", "nowhere@127.0.0.1", "--cookie", cookie)
    assert (done.returncode, done.stdout) == (1, "pang\n")
    assert error_line(done.stderr) == (
        "otpy-node: cannot connect to nowhere@127.0.0.1: no node of that name is registered "
        "with the port mapper on 127.0.0.1; check that it runs, under that name (or give "
        "NAME@HOST:PORT)"
    )


def test_node_without_any_address(cookie: str) -> None:
    done = run_cli("ping", "nowhere@127.0.0.1", "--cookie", cookie, "--discovery", "none")
    assert (done.returncode, done.stdout) == (1, "pang\n")
    assert error_line(done.stderr) == (
        "otpy-node: cannot connect to nowhere@127.0.0.1: no address known; give "
        "NAME@HOST:PORT (or --address HOST:PORT), or find it with --discovery "
        "epmd|mdns|static|dns"
    )


def test_failed_run_connect_does_not_advise_address(cookie: str) -> None:
    # Regression: the advice named --address, which run does not take.
    done = run_cli(
        *("--name", "alone", "--cookie", cookie, "--discovery", "none"),
        *("--connect", "nowhere@127.0.0.1", "--connect-timeout", "0"),
    )
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        "otpy-node: cannot connect to nowhere@127.0.0.1: no address known; give "
        "NAME@HOST:PORT, or find it with --discovery epmd|mdns|static|dns"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "no_such_module:main",
            "otpy-node: --run no_such_module:main: cannot import 'no_such_module' (No module "
            "named 'no_such_module'); check the spelling, the current directory and PYTHONPATH",
        ),
        (
            "cli_procs:no_such_function",
            "otpy-node: --run cli_procs:no_such_function: module 'cli_procs' has no "
            "'no_such_function'; name a module-level async function as package.module:function",
        ),
        (
            "cli_procs",
            "otpy-node: --run 'cli_procs': function reference 'cli_procs' is not of the form "
            "'package.module:function'",
        ),
        (
            "cli_procs:not_async",
            "otpy-node: --run cli_procs:not_async: 'not_async' is not an async function; a "
            "process function is defined with async def",
        ),
    ],
)
def test_unknown_run_function(cookie: str, ref: str, message: str) -> None:
    done = run_cli("--name", "runner", "--cookie", cookie, "--run", ref)
    assert done.returncode == 2
    assert error_line(done.stderr) == message
    assert done.stdout == ""


def test_a_taken_name_is_refused_by_the_port_mapper(start_node: StartNode, cookie: str) -> None:
    start_node("twin@127.0.0.1")
    done = run_cli("--name", "twin@127.0.0.1", "--cookie", cookie)
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        "otpy-node: a node named twin@127.0.0.1 is already running on this host (the port "
        f"mapper at 127.0.0.1:{os.environ['ERL_EPMD_PORT']} holds the name 'twin'); give this "
        "node another --name, or stop the other one first"
    )
    assert done.stdout == ""


def test_name_clash_is_refused_by_the_peers(start_node: StartNode, cookie: str) -> None:
    first = start_node("twin@127.0.0.1", "--discovery", "none")
    peer = start_node("peer@127.0.0.1", "--connect", first.address, "--discovery", "none")
    done = run_cli(
        *("--name", "twin@127.0.0.1", "--cookie", cookie, "--connect", peer.address),
        *("--discovery", "none"),
    )
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        f"otpy-node: cannot connect to peer@127.0.0.1 at 127.0.0.1:{peer.port}: it already has "
        "a connection from a node named twin@127.0.0.1 (duplicate_name), so another node is "
        "running under the name twin@127.0.0.1; give every node a unique --name, or stop the "
        "other one first"
    )


def test_connect_to_itself_is_a_usage_error(cookie: str) -> None:
    done = run_cli("--name", "me", "--cookie", cookie, "--connect", "me@127.0.0.1:4370")
    assert done.returncode == 2
    assert error_line(done.stderr) == (
        "otpy-node: --connect me@127.0.0.1: that is this node's own name"
    )


def test_cookie_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text("secret\n")
    cookie_file.chmod(0o644)
    expected = (
        f"otpy-node: cookie file {cookie_file} is readable by its group and others (mode 0644); "
        f"run chmod 400 {cookie_file}"
    )
    for argv in (
        ["--name", "careless", "--cookie-file", str(cookie_file)],
        ["ping", "a@127.0.0.1:4370", "--cookie-file", str(cookie_file)],
    ):
        done = run_cli(*argv)
        assert done.returncode == 2
        assert error_line(done.stderr) == expected
        assert done.stdout == ""


def test_bad_option_values(cookie: str) -> None:
    cases = {
        ("--name", "x", "--cookie", cookie, "--net-ticktime", "0.1"): (
            "otpy-node: --net-ticktime must be a number of seconds, at least 1, got 0.1"
        ),
        ("--name", "x", "--cookie", cookie, "--busy-wait", "-1"): (
            "otpy-node: --busy-wait must be 0 (off) or a number of seconds, got -1"
        ),
        ("--name", "x", "--cookie", cookie, "--port", "70000"): (
            "otpy-node: --port: '70000' is not a port number from 0 to 65535; "
            "see otpy-node run --help"
        ),
        ("--name", "x", "--cookie", cookie, "--busy-wait", "inf"): (
            "otpy-node: --busy-wait must be 0 (off) or a number of seconds, got inf"
        ),
        ("--name", "x", "--cookie", cookie, "--net-ticktime", "inf"): (
            "otpy-node: --net-ticktime must be a number of seconds, at least 1, got inf"
        ),
        ("ping", "a@127.0.0.1:4370", "--cookie", cookie, "--timeout", "inf"): (
            "otpy-node: --timeout must be a positive number of seconds, got inf"
        ),
        ("--name", "x", "--cookie", cookie, "--discovery", "static", "--static", "b@h"): (
            "otpy-node: --static: static entry 'b@h' is not 'name@host:port'; write e.g. "
            "'a@127.0.0.1:4370'"
        ),
        ("--name", "x", "--cookie", cookie, "--log-level", "loud"): (
            "otpy-node: --log-level 'loud' is not a level; use debug, info, warning or error"
        ),
        ("--name", "x", "--cookie", cookie, "--discovery", "static"): (
            "otpy-node: --discovery static needs --static NODE@HOST:PORT"
        ),
        ("ping", "a@127.0.0.1", "--cookie", cookie, "--address", "nowhere"): (
            "otpy-node: --address 'nowhere' is not HOST:PORT, e.g. 127.0.0.1:4370"
        ),
        ("--name", "x", "--cookie", cookie, "--tls-dir", "/nonexistent"): (
            "otpy-node: TLS file /nonexistent/ca.pem does not exist; for a test setup "
            "generate one with `python -m otpylib_dist.tls /nonexistent NAME`"
        ),
    }
    for argv, message in cases.items():
        done = run_cli(*argv)
        assert done.returncode == 2, argv
        assert error_line(done.stderr) == message
