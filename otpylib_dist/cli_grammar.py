"""otpy-node's grammar: the argparse parser, its verbs and options."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

from otpylib_dist.cli_config import EXIT_USAGE, SUBCOMMANDS
from otpylib_dist.logformat import FORMATS
from otpylib_dist.protocol.fragments import DEFAULT_MAX_MESSAGE, FRAGMENT_ABOVE
from otpylib_dist.protocol.ticks import DEFAULT_NET_TICKTIME

logger = logging.getLogger(__name__)

__all__ = ["build_parser"]

# ------------------------------------------------------------------ grammar


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr like every other error."""

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"otpy-node: {message}; see {self.prog} --help\n")


_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _byte_size(text: str) -> int:
    """An argparse type: a byte count of at least 256K, with an optional K, M or G suffix."""
    number, unit = text.rstrip("KMGkmg"), text[len(text.rstrip("KMGkmg")) :].upper()
    try:
        value = int(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = -1
    if value < FRAGMENT_ABOVE:
        raise argparse.ArgumentTypeError(
            f"expected a size of at least 256K such as 64M, got {text!r}"
        )
    return value


def _port_number(lowest: int) -> Callable[[str], int]:
    """An argparse type: a TCP port number from ``lowest`` to 65535."""

    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not lowest <= value <= 65535:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a port number from {lowest} to 65535"
            )
        return value

    return port


def _common(parser: argparse.ArgumentParser, *, default_level: str) -> None:
    cookie = parser.add_mutually_exclusive_group()
    cookie.add_argument(
        "--cookie", help="the cluster's shared secret (default: OTPY_COOKIE or ~/.otpylib.cookie)"
    )
    cookie.add_argument(
        "--cookie-file",
        type=Path,
        help="read the cookie from this file (readable by its owner only: chmod 400)",
    )
    parser.add_argument(
        "--discovery",
        choices=("epmd", "mdns", "static", "dns", "none"),
        default="epmd",
        help="how to find other nodes (default: epmd, the port mapper of each host, started "
        "on demand; none: only NAME@HOST:PORT)",
    )
    parser.add_argument(
        "--static",
        action="append",
        default=[],
        metavar="NODE@HOST:PORT",
        help="a node's address for --discovery static (repeat for each node)",
    )
    parser.add_argument(
        "--epmd-port",
        type=_port_number(1),
        default=None,
        help="port of the port mapper (default: ERL_EPMD_PORT, else 4369)",
    )
    parser.add_argument(
        "--dns-service",
        metavar="NAME",
        help="for --discovery dns: the headless service, e.g. otpy.default.svc.cluster.local",
    )
    parser.add_argument(
        "--dns-port-name",
        default=None,
        help="for --discovery dns: the service port's name (SRV _NAME._tcp.SERVICE; "
        "default: otpy-dist)",
    )
    parser.add_argument(
        "--mdns-interface",
        action="append",
        metavar="ADDRESS",
        help="for --discovery mdns: IPv4 address of an interface to use (repeatable)",
    )
    parser.add_argument(
        "--tls-dir", type=Path, help="mutual TLS: directory with ca.pem, NAME.pem, NAME.key"
    )
    parser.add_argument(
        "--net-ticktime",
        type=float,
        default=DEFAULT_NET_TICKTIME,
        help="seconds of silence before a peer is down",
    )
    parser.add_argument(
        "--log-level",
        default=default_level,
        help=f"debug, info, warning, error (default: {default_level})",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="logfmt",
        help="logs on stderr: logfmt lines (default) or JSON objects, one per line",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so tests and docs can check the grammar)."""
    parser = _Parser(
        prog="otpy-node",
        description="Run an otpylib node, or ask a running one (ping, nodes, ps, stats, stop, top, "
        "call, rpc); run a port mapper (epmd).",
    )
    _add_version(parser)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a node in the foreground (the default)")
    run.add_argument("--name", required=True, help="NAME or NAME@HOST (HOST: where peers reach it)")
    run.add_argument(
        "--port", type=_port_number(0), default=0, help="TCP port to listen on (0: any)"
    )
    run.add_argument("--listen", help="address to bind (default: the HOST of --name)")
    run.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="NODE[:PORT]",
        help="a node to connect to at start (NAME@HOST:PORT, or NAME@HOST found by "
        "discovery; repeat for each node); retried until --connect-timeout, then the command "
        "fails",
    )
    _add_run_options(run)
    run.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default; about 1.5x faster "
        "round trips), or asyncio's own",
    )
    run.add_argument(
        "--busy-wait",
        type=float,
        default=None,
        metavar="S",
        help="keep polling S seconds after network traffic instead of sleeping (BEAM's busy "
        "wait), every time; 0: never; default: 0.0002 s, backing off by itself when the "
        "machine's CPUs are busy (adaptive)",
    )
    run.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0.0.0.0:9464 in a "
        "container); needs pip install 'otpylib[metrics]'",
    )
    run.add_argument(
        "--auto-connect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="connect to every discovered node",
    )
    _common(run, default_level="warning")
    for verb in (*SUBCOMMANDS, *_CALL_VERBS):
        p = sub.add_parser(verb, help=_VERB_HELP.get(verb, f"{verb} a running node"))
        p.add_argument("node", help="NAME@HOST of the running node, or NAME@HOST:PORT")
        _add_call_arguments(p, verb)
        p.add_argument(
            "--address", metavar="HOST:PORT", help="where NODE listens (skips discovery)"
        )
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
        p.add_argument(
            "--tls-name",
            metavar="NAME",
            help="with --tls-dir: present NAME.pem/NAME.key (default: cli if the directory "
            "has cli.pem, else NODE's own certificate)",
        )
        _view_options(p, verb)
        _common(p, default_level="error")
    _add_epmd_parser(sub)
    return parser


# ------------------------------------ grammar: applications, call/rpc, epmd

#: The verbs that call into a running node's code.
_CALL_VERBS: Final = ("call", "rpc")

#: One line per verb for ``--help``: what it does.
_VERB_HELP: Final = {
    "ping": "check that a node answers (prints pong, or pang and exits 1)",
    "nodes": "list the nodes a node is connected to",
    "ps": "list a node's processes (pid, name, state, queue length, function)",
    "stats": "print a node's runtime counters",
    "stop": "stop a node cleanly (as SIGTERM does) and wait until it is gone",
    "top": "a live view of a node: processes by queue and messages/s, peers, event-loop lag",
    "call": "gen_server call to a server registered on a node; request and answer as JSON",
    "rpc": "run module:function(ARGS...) on a node and print its result as JSON",
}

#: Default seconds ``--connect`` keeps retrying a node that does not answer.
DEFAULT_CONNECT_TIMEOUT: Final = 30.0


def _add_version(parser: argparse.ArgumentParser) -> None:
    from otpylib._version import __version__

    parser.add_argument(
        "--version",
        action="version",
        version=f"otpy-node {__version__} (Python {sys.version.split()[0]})",
        help="print the version and exit",
    )


def _add_run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--run",
        dest="run_fns",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="start this application at start: a start function returning the pid of its "
        "top process, or a process function (imported from the current directory or "
        "PYTHONPATH); repeat for more, started in order and stopped in reverse; if one "
        "ends the node stops (exit 1 if it crashed)",
    )
    run.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="S",
        help=f"seconds to keep retrying each --connect node (default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    run.add_argument(
        "--no-connect-all",
        dest="connect_all",
        action="store_false",
        help="do not connect to the nodes a peer is connected to (default: connect, so a "
        "cluster becomes a full mesh however it was joined, as Erlang's connect_all)",
    )
    run.add_argument(
        "--spawn-allow",
        dest="spawn_allow",
        action="append",
        default=None,
        metavar="PREFIX",
        help="let peers spawn only functions of modules under this prefix (repeat for more; "
        "otpylib's own are always allowed); default: any importable async function",
    )
    run.add_argument(
        "--max-message-size",
        type=_byte_size,
        default=DEFAULT_MAX_MESSAGE,
        metavar="BYTES",
        help="largest message this node sends or accepts, e.g. 64M or 1G (default 256M; "
        "set the same on every node); messages over 256K travel in fragments",
    )


def _add_call_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    if verb == "call":
        p.add_argument("name", help="the name the gen_server is registered under on NODE")
        p.add_argument(
            "request",
            help='the request as JSON: arrays are tuples, {"atom": "x"} an atom, '
            '{"list": [...]} a list (see otpylib_dist.cli_call)',
        )
    elif verb == "rpc":
        p.add_argument("function", help="package.module:function, importable on NODE")
        p.add_argument("args", nargs="*", help="arguments, each one JSON value")


def _add_epmd_parser(sub: Any) -> None:
    p = sub.add_parser(
        "epmd",
        help="run the port mapper nodes register with (EPMD's protocol; started on demand by run)",
    )
    p.add_argument(
        "--port",
        type=_port_number(1),
        default=None,
        help="port to listen on (default: ERL_EPMD_PORT, else 4369)",
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--daemon", action="store_true", help="detach and run in the background (epmd -daemon)"
    )
    action.add_argument(
        "--names", action="store_true", help="list the names registered with the running mapper"
    )
    action.add_argument(
        "--kill",
        action="store_true",
        help="stop the running mapper (refused while nodes are registered)",
    )
    p.add_argument("--log-level", default="warning", help="debug, info, warning, error")


def _view_options(p: argparse.ArgumentParser, verb: str) -> None:
    """``--json`` on every verb; ``ps --sort``; ``top --once/--interval/--sort``."""
    from otpylib_dist.cli_output import PS_SORTS
    from otpylib_dist.top import TOP_SORTS

    if verb in _CALL_VERBS:
        p.add_argument(
            "--json",
            action="store_true",
            help="accepted for scripts that pass it to every verb: call and rpc always "
            "print their answer as JSON",
        )
    else:
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
    if verb == "ps":
        p.add_argument(
            "--sort", choices=PS_SORTS, help="longest queue, most messages received, or name"
        )
    if verb == "top":
        p.add_argument("--once", action="store_true", help="print one view and exit")
        p.add_argument(
            "--interval", type=float, default=1.0, metavar="S", help="seconds between refreshes"
        )
        p.add_argument(
            "--sort",
            choices=TOP_SORTS,
            default="queue",
            help="processes by queue length (default) or messages per second",
        )
