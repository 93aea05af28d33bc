"""The pieces of ``otpy-node`` that need no process: grammar, log format, messages."""

from __future__ import annotations

import logging

import pytest

from otpylib_dist.cli import _LogfmtFormatter, build_parser, explain_connect_failure, main


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("otpylib_dist.node", logging.WARNING, __file__, 1, msg, args, None)


def test_logfmt_quotes_what_needs_quoting_and_stays_on_one_line() -> None:
    formatter = _LogfmtFormatter()
    formatter.node = "a@127.0.0.1"
    line = formatter.format(_record('said "hi"\nthen %s', "left"))
    assert line.endswith(
        r' level=warning logger=otpylib_dist.node node=a@127.0.0.1 msg="said \"hi\"\nthen left"'
    )
    assert "\n" not in line
    assert formatter.format(_record("plain")).endswith(" msg=plain")


def test_run_is_the_default_subcommand_and_subcommands_log_errors_only() -> None:
    parser = build_parser()
    run = parser.parse_args(["run", "--name", "a", "--connect", "b@h:1", "c@h"])
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


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    assert "ping, nodes, ps, stats, stop" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("failure", "refusal", "tls", "expected"),
    [
        (
            "handshake with b@h refused by the peer (version_mismatch): the nodes share no "
            "protocol version; run compatible otpylib versions on both nodes",
            "version_mismatch",
            False,
            "cannot connect to b@h at h:1: handshake with b@h refused by the peer "
            "(version_mismatch): the nodes share no protocol version; run compatible otpylib "
            "versions on both nodes",
        ),
        (
            "no connection within 7.0 s",
            None,
            False,
            "cannot connect to b@h at h:1: no connection within 7.0 s; the node may be "
            "overloaded or not an otpylib node (a node with --tls-dir accepts only nodes that "
            "also use --tls-dir, with certificates of the same CA)",
        ),
        (
            "",
            None,
            True,
            "cannot connect to b@h at h:1: the TLS handshake failed; a node with --tls-dir "
            "accepts only nodes that also use --tls-dir, with certificates of the same CA",
        ),
    ],
)
def test_connect_failures_say_what_to_do(
    failure: str, refusal: str | None, tls: bool, expected: str
) -> None:
    got = explain_connect_failure(
        "b@h", failure, refusal=refusal, me="a@h", address=("h", 1), tls=tls
    )
    assert got == expected
