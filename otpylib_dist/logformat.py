"""Log records as data: logfmt or JSON lines, with real fields instead of free text.

Library code never configures logging (``otpy-node`` does, through
:func:`setup_logging`). What it does is pass the facts of a record as
fields, ``logger.info("nodeup %s", peer, extra={"event": "nodeup", "peer":
peer})``, so that a log pipeline can filter on ``event=nodedown`` or
``peer=b@host`` without parsing sentences. The fields used across the
library are :data:`FIELDS`:

- ``node``: the node that logs (set once by the CLI, or per record);
- ``event``: what happened, one word (``nodeup``, ``nodedown``,
  ``handshake_refused``, ``crash``, ...);
- ``peer``: the other node concerned;
- ``pid``: the process concerned;
- ``reason``: an exit or nodedown reason, a refusal reason;
- ``address``: a ``host:port``.

A traceback is one escaped ``exc`` field in logfmt (every record stays on
one line, so ``grep`` and line-based shippers keep it whole) and a list of
lines in JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = ["FIELDS", "FORMATS", "JsonFormatter", "LogfmtFormatter", "setup_logging"]

#: Fields library code passes with ``extra=``, in the order they are printed.
FIELDS: Final = ("node", "event", "peer", "pid", "reason", "address")

#: The values of ``--log-format``.
FORMATS: Final = ("logfmt", "json")


def _timestamp(record: logging.LogRecord) -> str:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{ts}.{int(record.msecs):03d}Z"


def logfmt_value(value: str) -> str:
    """Quote a logfmt value when it needs it; escapes keep every record on one line."""
    if value and not any(c in value for c in ' ="\\\n\r\t'):
        return value
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


class _FieldsFormatter(logging.Formatter):
    """What both formats share: the node name and the fields of a record."""

    def __init__(self) -> None:
        super().__init__()
        #: The node's name, added to records that do not name one.
        self.node: str | None = None

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        """``[(key, value)]``: time, level, logger, then :data:`FIELDS` that are set."""
        out: list[tuple[str, Any]] = [
            ("time", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
        ]
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is None and key == "node":
                value = self.node
            if value is not None:
                out.append((key, value if isinstance(value, int | float) else str(value)))
        return out

    def traceback(self, record: logging.LogRecord) -> str | None:
        if record.exc_info:
            return self.formatException(record.exc_info)
        if record.exc_text:
            return record.exc_text
        return None


class LogfmtFormatter(_FieldsFormatter):
    """One line per record, ``key=value`` pairs: greppable and machine-readable."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{k}={logfmt_value(str(v))}" for k, v in self.fields(record)]
        parts.append(f"msg={logfmt_value(record.getMessage())}")
        tb = self.traceback(record)
        if tb is not None:
            parts.append(f"exc={logfmt_value(tb)}")
        return " ".join(parts)


class JsonFormatter(_FieldsFormatter):
    """One JSON object per line; a traceback is a list of lines under ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = dict(self.fields(record))
        doc["msg"] = record.getMessage()
        tb = self.traceback(record)
        if tb is not None:
            doc["exc"] = tb.splitlines()
        return json.dumps(doc, default=str, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "logfmt") -> LogfmtFormatter | JsonFormatter:
    """Send every record to stderr in ``fmt``; returns the formatter (set its ``node``).

    Raises:
        ValueError: ``level`` is not a logging level or ``fmt`` not one of
            :data:`FORMATS` (the message says what to use).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--log-format {fmt!r} is not a format; use logfmt or json")
    formatter: LogfmtFormatter | JsonFormatter = (
        JsonFormatter() if fmt == "json" else LogfmtFormatter()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        root.setLevel(logging.WARNING)
        raise ValueError(
            f"--log-level {level!r} is not a level; use debug, info, warning or error"
        ) from None
    return formatter
