"""``--tls-dir``: nodes with mutual TLS through the CLI, and what a plain node is told."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import StartNode, error_line, run_cli

from otpylib_dist.pki import generate_test_pki

pytestmark = pytest.mark.multiprocess

TLS_ADVICE = (
    "a node with --tls-dir accepts only nodes that also use --tls-dir, with certificates "
    "of the same CA"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA with certificates for nodes a, b and the CLI (``cli``)."""
    directory = tmp_path_factory.mktemp("pki")
    generate_test_pki(directory, ["a", "b", "cli"])
    return directory


def test_two_tls_nodes_connect_and_answer_tls_subcommands(
    start_node: StartNode, cookie: str, pki: Path
) -> None:
    a = start_node("a@127.0.0.1", "--tls-dir", str(pki))
    b = start_node("b@127.0.0.1", "--tls-dir", str(pki), "--connect", a.address)
    done = run_cli("nodes", a.address, "--cookie", cookie, "--tls-dir", str(pki))
    assert (done.returncode, done.stdout) == (0, f"{b.name}\n"), done.stderr
    # Without cli.pem the tool would present the node's own certificate; --tls-name picks one.
    pinged = run_cli(
        "ping", b.address, "--cookie", cookie, "--tls-dir", str(pki), "--tls-name", "a"
    )
    assert (pinged.returncode, pinged.stdout) == (0, "pong\n"), pinged.stderr


def test_a_plain_node_cannot_connect_to_a_tls_node(
    start_node: StartNode, cookie: str, pki: Path
) -> None:
    secure = start_node("a@127.0.0.1", "--tls-dir", str(pki), "--log-level", "info")
    done = run_cli("--name", "plain", "--cookie", cookie, "--connect", secure.address)
    assert done.returncode == 1
    assert re.match(
        rf"^otpy-node: cannot connect to a@127\.0\.0\.1 at 127\.0\.0\.1:{secure.port}: the peer "
        rf"closed the connection during the handshake \(its log says why\); {TLS_ADVICE}$",
        error_line(done.stderr),
    )
    secure.wait_for(r"TLS handshake failed", stream="stderr")
    pinged = run_cli("ping", secure.address, "--cookie", cookie)
    assert (pinged.returncode, pinged.stdout) == (1, "pang\n")
    assert TLS_ADVICE in error_line(pinged.stderr)


def test_a_tls_node_cannot_connect_to_a_plain_node(
    start_node: StartNode, cookie: str, pki: Path
) -> None:
    plain = start_node("p@127.0.0.1", "--log-level", "info")
    done = run_cli(
        "--name", "b", "--cookie", cookie, "--tls-dir", str(pki), "--connect", plain.address
    )
    assert done.returncode == 1
    assert re.match(
        rf"^otpy-node: cannot connect to p@127\.0\.0\.1 at 127\.0\.0\.1:{plain.port}: the TLS "
        rf"handshake failed.*; {TLS_ADVICE}$",
        error_line(done.stderr),
    )
    plain.wait_for(r"peer speaks TLS, but this connection is plain TCP", stream="stderr")
