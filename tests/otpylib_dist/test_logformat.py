"""Log records as logfmt and JSON lines with real fields (no process, no loop)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from otpylib_dist.logformat import JsonFormatter, LogfmtFormatter, setup_logging


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("otpylib_dist.node", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_logfmt_puts_fields_before_the_message_in_a_fixed_order() -> None:
    formatter = LogfmtFormatter()
    formatter.node = "a@127.0.0.1"
    line = formatter.format(
        _record(
            "nodedown %s: %s",
            "b@h",
            "net_tick_timeout",
            event="nodedown",
            peer="b@h",
            reason="net_tick_timeout",
        )
    )
    fields = line.split(" ")
    assert fields[0].startswith("time=") and fields[0].endswith("Z")
    assert fields[1:] == [
        "level=info",
        "logger=otpylib_dist.node",
        "node=a@127.0.0.1",
        "event=nodedown",
        "peer=b@h",
        "reason=net_tick_timeout",
        'msg="nodedown',
        "b@h:",
        'net_tick_timeout"',
    ]


def test_a_record_naming_its_node_wins_over_the_formatter_default() -> None:
    formatter = LogfmtFormatter()
    formatter.node = "a@h"
    assert " node=b@h " in formatter.format(_record("x", node="b@h"))


def test_logfmt_traceback_is_one_escaped_field() -> None:
    line = LogfmtFormatter().format(_record("crashed", exc=True, event="crash", pid="<a@h.1.2>"))
    assert "\n" not in line
    assert (
        ' event=crash pid=<a@h.1.2> msg=crashed exc="Traceback (most recent call last):\\n' in line
    )
    assert line.endswith('ValueError: boom\\nsecond line"')


def test_json_lines_parse_and_carry_the_fields_and_a_traceback_list() -> None:
    formatter = JsonFormatter()
    formatter.node = "a@h"
    line = formatter.format(
        _record(
            "refusing %s",
            "c@h",
            exc=True,
            event="handshake_refused",
            peer="c@h",
            reason="bad_cookie",
            address="127.0.0.1:5000",
        )
    )
    assert "\n" not in line
    doc = json.loads(line)
    assert {
        k: doc[k] for k in ("level", "logger", "event", "node", "peer", "reason", "address")
    } == {
        "level": "info",
        "logger": "otpylib_dist.node",
        "event": "handshake_refused",
        "node": "a@h",
        "peer": "c@h",
        "reason": "bad_cookie",
        "address": "127.0.0.1:5000",
    }
    assert doc["msg"] == "refusing c@h"
    assert doc["exc"][0] == "Traceback (most recent call last):"
    assert doc["exc"][-2:] == ["ValueError: boom", "second line"]


def test_fields_that_are_not_set_are_left_out() -> None:
    doc = json.loads(JsonFormatter().format(_record("plain")))
    assert set(doc) == {"time", "level", "logger", "msg"}


def test_setup_logging_rejects_unknown_formats_and_levels_in_one_line() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with pytest.raises(
            ValueError, match=r"^--log-format 'xml' is not a format; use logfmt or json$"
        ):
            setup_logging("info", "xml")
        with pytest.raises(ValueError, match=r"^--log-level 'loud' is not a level; use debug"):
            setup_logging("loud", "json")
        assert isinstance(setup_logging("info", "json"), JsonFormatter)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
