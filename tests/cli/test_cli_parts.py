"""The pieces of ``otpy-node`` that need no process: grammar, log format, messages."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest
from cli_support import DEADLINE
from port_mappers import pids_listening_on, stop_mappers

from otpylib_dist.cli import (
    _discovery,
    build_parser,
    explain_connect_failure,
    main,
)
from otpylib_dist.discovery.dns import DnsDiscovery
from otpylib_dist.discovery.epmd import EpmdDiscovery
from otpylib_dist.errors import ConnectFailure, ConnectFailureReason
from otpylib_dist.logformat import LogfmtFormatter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("otpylib_dist.node", logging.WARNING, __file__, 1, msg, args, None)


def test_logfmt_quotes_what_needs_quoting_and_stays_on_one_line() -> None:
    formatter = LogfmtFormatter()
    formatter.node = "a@127.0.0.1"
    line = formatter.format(_record('said "hi"\nthen %s', "left"))
    assert line.endswith(
        r' level=warning logger=otpylib_dist.node node=a@127.0.0.1 msg="said \"hi\"\nthen left"'
    )
    assert "\n" not in line
    assert formatter.format(_record("plain")).endswith(" msg=plain")


def test_run_is_the_default_subcommand_and_subcommands_log_errors_only() -> None:
    parser = build_parser()
    run = parser.parse_args(["run", "--name", "a", "--connect", "b@h:1", "--connect", "c@h"])
    assert (run.command, run.connect, run.log_level, run.port) == (
        "run",
        ["b@h:1", "c@h"],
        "warning",
        0,
    )
    ping = parser.parse_args(["ping", "a@h", "--address", "h:1"])
    assert (ping.command, ping.node, ping.address, ping.log_level) == (
        "ping",
        "a@h",
        "h:1",
        "error",
    )


def test_static_and_connect_take_one_node_each_and_leave_the_positional_alone() -> None:
    parser = build_parser()
    ping = parser.parse_args(["ping", "--static", "b@h:1", "b@h", "--static", "c@h:2"])
    assert (ping.node, ping.static) == ("b@h", ["b@h:1", "c@h:2"])
    run = parser.parse_args(["run", "--connect", "b@h:1", "--name", "a"])
    assert (run.name, run.connect) == ("a", ["b@h:1"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "--name", "a", "--port", "70000"],
            "otpy-node: --port: '70000' is not a port number from 0 to 65535; "
            "see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--port", "70000", "--loop", "asyncio"],
            "otpy-node: --port: '70000' is not a port number from 0 to 65535; "
            "see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--port", "-1"],
            "otpy-node: --port: '-1' is not a port number from 0 to 65535; "
            "see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--port", "http"],
            "otpy-node: --port: 'http' is not a port number from 0 to 65535; "
            "see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--discovery", "epmd", "--epmd-port", "70000"],
            "otpy-node: --epmd-port: '70000' is not a port number from 1 to 65535; "
            "see otpy-node run --help",
        ),
        (
            ["ping", "a@h", "--discovery", "epmd", "--epmd-port", "0"],
            "otpy-node: --epmd-port: '0' is not a port number from 1 to 65535; "
            "see otpy-node ping --help",
        ),
        (
            ["run", "--port", "1"],
            "otpy-node: the following arguments are required: --name; see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--max-message-size", "12K"],
            "otpy-node: --max-message-size: expected a size of at least 256K such as 64M, "
            "got '12K'; see otpy-node run --help",
        ),
        (
            ["run", "--name", "a", "--connect", "b@h:1", "c@h:2"],
            "otpy-node: unrecognized arguments: c@h:2; see otpy-node --help",
        ),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)  # as main() does; never starts a node
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message + "\n")


def test_an_unknown_command_is_named_with_the_list_of_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["strat", "--name", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("otpy-node: unknown command 'strat'; the commands are run, ping, ")
    assert err.endswith("see otpy-node --help\n") and err.count("\n") == 1


def test_max_message_size_takes_a_unit() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--name", "a"]).max_message_size == 256 << 20
    for text, value in (("64M", 64 << 20), ("1g", 1 << 30), ("300000", 300000)):
        args = parser.parse_args(["run", "--name", "a", "--max-message-size", text])
        assert args.max_message_size == value


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_subcommands_never_register_with_epmd_but_run_does() -> None:
    port = str(_closed_port())
    parser = build_parser()
    tool = _discovery(
        parser.parse_args(["ping", "a@h", "--discovery", "epmd", "--epmd-port", port]),
        "cookie",
        tool=True,
    )
    assert tool is not None
    await tool.start("otpy-cli-1@127.0.0.1", "127.0.0.1", 1)  # no EPMD needed: no registration
    await tool.stop()
    node = _discovery(
        parser.parse_args(["run", "--name", "a", "--discovery", "epmd", "--epmd-port", port]),
        "cookie",
    )
    assert node is not None and isinstance(node, EpmdDiscovery)
    # No mapper answers there: the node starts a detached one (as erl starts
    # `epmd -daemon`), registers with it, and the test then ends that mapper.
    try:
        await node.start("a@127.0.0.1", "127.0.0.1", 1)
        assert await tool.resolve("a@127.0.0.1") == ("127.0.0.1", 1)
        started = pids_listening_on(int(port))
        assert len(started) == 1 and os.getpid() not in started
        await node.stop()
    finally:
        stop_mappers(int(port))
    assert not pids_listening_on(int(port))


async def test_subcommands_do_not_poll_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[DnsDiscovery] = []
    polled = asyncio.Event()

    async def members(self: DnsDiscovery) -> dict[str, tuple[str, int]]:
        polls.append(self)
        polled.set()
        return {}

    monkeypatch.setattr(DnsDiscovery, "members", members)
    dns = ("--discovery", "dns", "--dns-service", "otpy.example")
    parser = build_parser()
    tool = _discovery(parser.parse_args(["ping", "a@h", *dns]), "cookie", tool=True)
    node = _discovery(parser.parse_args(["run", "--name", "a", *dns]), "cookie")
    assert tool is not None and node is not None
    await tool.start("otpy-cli-1@127.0.0.1", "127.0.0.1", 1)
    assert polls == []
    await node.start("a@127.0.0.1", "127.0.0.1", 1)
    # A poller asks DNS in its first step, and a poller of the tool would have
    # been started first: so once the node has asked, the tool's ask would be in.
    await asyncio.wait_for(polled.wait(), DEADLINE)
    assert polls == [node]
    await tool.stop()
    await node.stop()


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    assert "ping, nodes, ps, stats, stop" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("reason", "detail", "tls", "expected"),
    [
        (
            "version_mismatch",
            "handshake with b@h refused by the peer (version_mismatch): the nodes share no "
            "protocol version; run compatible otpylib versions on both nodes",
            False,
            "cannot connect to b@h at h:1: handshake with b@h refused by the peer "
            "(version_mismatch): the nodes share no protocol version; run compatible otpylib "
            "versions on both nodes",
        ),
        (
            "timeout",
            "no connection within 7.0 s",
            False,
            "cannot connect to b@h at h:1: no connection within 7.0 s; the node may be "
            "overloaded or not an otpylib node (a node with --tls-dir accepts only nodes that "
            "also use --tls-dir, with certificates of the same CA)",
        ),
        (
            "closed",
            "",
            True,
            "cannot connect to b@h at h:1: the TLS handshake failed; a node with --tls-dir "
            "accepts only nodes that also use --tls-dir, with certificates of the same CA",
        ),
    ],
)
def test_connect_failures_say_what_to_do(
    reason: ConnectFailureReason, detail: str, tls: bool, expected: str
) -> None:
    failure = ConnectFailure("b@h", reason, detail, "h:1")
    got = explain_connect_failure("b@h", failure, me="a@h", address=("h", 1), tls=tls)
    assert got == expected
