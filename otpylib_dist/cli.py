"""``otpy-node``: run a node in the foreground, or ask a running node something.

Usage::

    otpy-node [run] --name NAME[@HOST] [--cookie C | --cookie-file F] [--port P]
              [--discovery epmd|mdns|static|dns|none] [--static NODE@HOST:PORT]...
              [--connect NODE[:PORT]]... [--connect-timeout S]
              [--run package.module:function]...
              [--net-ticktime S] [--tls-dir D] [--log-level L] [--busy-wait S]
    otpy-node ping|nodes|ps|stats|stop NODE[:PORT] [--address HOST:PORT] [same options]
    otpy-node call NODE NAME REQUEST        (gen_server call; JSON, see cli_call.py)
    otpy-node rpc NODE module:function [ARG...]
    otpy-node epmd [--daemon | --names | --kill] [--port P]
    otpy-node --version
    otpy-node top NODE[:PORT] [--once] [--interval S] [--sort queue|rate] [same options]

``--static`` and ``--connect`` take one node each and are repeated for more:
``--connect a@h1:4370 --connect b@h2:4370``.

With no ``--discovery`` (``epmd``), a node registers with the port mapper
of its host (starting a detached one when none answers, as ``erl`` does),
and ``NAME@HOST`` is found by asking the mapper on ``HOST``: so
``otpy-node --name a``, ``otpy-node --name b --connect a`` and
``otpy-node ping a`` need no other flag. The mapper's port is 4369, or
``ERL_EPMD_PORT``. ``--discovery none`` opts out.

``run`` (the default) starts the node, prints ``node NAME listening on PORT``
on stdout once it listens, has announced itself, is connected to every
``--connect`` node (each retried until ``--connect-timeout``) and has
started every ``--run`` application in order, and runs until SIGTERM or
SIGINT (or ``otpy-node stop``), or until an application ends. Modules of the
current directory can be run and spawned, as with ``python -m``. Then it
shuts down in order: applications stop in reverse order, every process gets
the exit signal ``shutdown``, peers see their links and monitors fire and
then ``nodedown``, discovery withdraws the node, and the command exits 0,
or 1 if an application crashed. Logs go to stderr, one logfmt line per
record (``time=... level=... logger=... node=... event=... msg="..."``), or
one JSON object per line with ``--log-format json`` (see ``logformat.py``).
``--metrics HOST:PORT`` serves Prometheus metrics (``metrics.py``).

The subcommands start a short-lived *hidden* node (it never appears in
anyone's ``nodes()``), connect to ``NODE`` with the cookie and ask over the
distribution protocol. ``NODE`` is found at ``--address`` (or a ``:PORT``
suffix on the name), else through ``--discovery``.

Every failure the user can cause or fix prints one line on stderr,
``otpy-node: <what happened>; <what to do>``, and no traceback.
Exit codes:

- 0: success (``ping``: pong); a node stopped by SIGTERM, ``stop``, or the
  normal end of its application;
- 1: the node could not be started or reached: port taken, name taken on
  this host, handshake refused (wrong cookie, duplicate name, TLS on one
  side only), node unreachable or silent (``ping`` also prints ``pang`` on
  stdout); an application failed to start or crashed; ``call``/``rpc``
  failed there;
- 2: bad arguments or configuration: a malformed node name or one whose
  host does not resolve, an unusable or missing cookie file, a ``--run``
  function that cannot be imported or is not async, options of another
  discovery mechanism, missing TLS files, a port out of range, JSON that
  does not parse.

argparse (stdlib) rather than click: one less dependency for a tool whose
grammar is a flat list of options and a few verbs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from otpylib import application
from otpylib.runtime.function_ref import resolve_function
from otpylib_dist.cookie import CookieError, load_cookie
from otpylib_dist.discovery.base import Discovery, DiscoveryError
from otpylib_dist.discovery.static import parse_static_entry
from otpylib_dist.errors import ConnectFailure, ConnectFailureReason, NodeUnreachable, RpcError
from otpylib_dist.logformat import FORMATS, JsonFormatter, LogfmtFormatter, setup_logging
from otpylib_dist.names import NodeNameError, make_node_name
from otpylib_dist.node import DistributedBackend
from otpylib_dist.protocol.ticks import DEFAULT_NET_TICKTIME

if TYPE_CHECKING:
    from otpylib_dist.tls import TlsConfig

logger = logging.getLogger(__name__)

__all__ = ["SUBCOMMANDS", "build_parser", "explain_connect_failure", "main"]

#: The verbs that ask a running node something.
SUBCOMMANDS: Final = ("ping", "nodes", "ps", "stats", "stop", "top")

#: Exit code when the node could not be started or reached.
EXIT_FAILURE: Final = 1
#: Exit code for bad arguments or configuration (argparse uses 2 as well).
EXIT_USAGE: Final = 2

#: The file name (without .pem/.key) a subcommand presents with ``--tls-dir``
#: when there is one and no ``--tls-name`` is given.
_CLI_CERT_NAME: Final = "cli"


class _UsageError(Exception):
    """A combination of options that cannot work; printed as one line, exit code 2."""


class _Failure(Exception):
    """The node cannot be started or reached; printed as one line, exit code 1."""


# ------------------------------------------------------------------ logging


def _setup_logging(level: str, fmt: str = "logfmt") -> LogfmtFormatter | JsonFormatter:
    try:
        return setup_logging(level, fmt)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


# ------------------------------------------------------------------ grammar


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr like every other error."""

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"otpy-node: {message}; see {self.prog} --help\n")


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


# ---------------------------------------------------------- configuration


def _cookie(args: argparse.Namespace) -> str:
    if args.cookie_file is not None:
        _check_cookie_file(args.cookie_file)
        return load_cookie(None, path=args.cookie_file, use_env=False)
    return load_cookie(args.cookie)


def _discovery(args: argparse.Namespace, cookie: str, *, tool: bool = False) -> Discovery | None:
    """The ``--discovery`` mechanism; ``tool``: for a subcommand (never announces)."""
    kind = args.discovery
    if kind != "static" and args.static:
        raise _UsageError("--static needs --discovery static")
    _check_discovery_options(args)
    if kind == "none":
        return None
    if kind == "mdns":
        from otpylib_dist.discovery.mdns import MdnsDiscovery

        return MdnsDiscovery(
            cookie, interfaces=args.mdns_interface, announce=not tool, browse=not tool
        )
    if kind == "dns":
        from otpylib_dist.discovery.dns import DEFAULT_PORT_NAME, DnsDiscovery

        if not args.dns_service:
            raise _UsageError("--discovery dns needs --dns-service NAME")
        port_name = args.dns_port_name or DEFAULT_PORT_NAME
        if tool:  # resolve only: no polling
            return DnsDiscovery(args.dns_service, port_name=port_name, poll_interval=0)
        return DnsDiscovery(args.dns_service, port_name=port_name)
    if kind == "static":
        from otpylib_dist.discovery.static import StaticDiscovery

        if not args.static:
            raise _UsageError("--discovery static needs --static NODE@HOST:PORT")
        try:
            return StaticDiscovery(args.static)
        except DiscoveryError as exc:
            raise _UsageError(f"--static: {exc}") from exc
    return _epmd_discovery(args, tool=tool)


def _check_cookie_file(path: Path) -> None:
    """An explicit ``--cookie-file`` must exist: only the default file is ever created."""
    if not path.exists():
        raise _UsageError(
            f"--cookie-file {path} does not exist; give the file holding the cluster's cookie "
            "(readable by its owner only: chmod 400), or leave --cookie-file out to use "
            "~/.otpylib.cookie (created on first use)"
        )


def _check_discovery_options(args: argparse.Namespace) -> None:
    """Options of one discovery mechanism given with another are refused, not ignored."""
    if args.dns_service and args.discovery != "dns":
        raise _UsageError(
            f"--dns-service is for --discovery dns, but --discovery is {args.discovery}; "
            "add --discovery dns or drop --dns-service"
        )
    if args.dns_port_name is not None and args.discovery != "dns":
        raise _UsageError(
            f"--dns-port-name is for --discovery dns, but --discovery is {args.discovery}; "
            "add --discovery dns or drop --dns-port-name"
        )
    if args.epmd_port is not None and args.discovery != "epmd":
        raise _UsageError(
            f"--epmd-port is for --discovery epmd, but --discovery is {args.discovery}; "
            "drop --discovery or --epmd-port"
        )
    if args.mdns_interface and args.discovery != "mdns":
        raise _UsageError(
            f"--mdns-interface is for --discovery mdns, but --discovery is {args.discovery}; "
            "add --discovery mdns or drop --mdns-interface"
        )


def _epmd_discovery(args: argparse.Namespace, *, tool: bool) -> Discovery:
    """The port mapper: a node registers (starting a mapper if none answers); a tool only asks."""
    from otpylib_dist.discovery.epmd import EpmdDiscovery

    return EpmdDiscovery(port=args.epmd_port, register=not tool, start_mapper=not tool)


async def _check_host(name: str, listen: str | None) -> None:
    """Refuse a node name whose host does not resolve, before it is taken for a port problem."""
    short, host = name.split("@", 1)
    address = listen or host
    try:
        await asyncio.get_running_loop().getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        what = f"--listen {address}" if listen else f"the host of --name {name}"
        raise _UsageError(
            f"{what} does not resolve to an address ({exc.strerror}); name the node after an "
            f"address of this machine where peers reach it, e.g. --name {short}@127.0.0.1"
        ) from None


def _discovery_name(args: argparse.Namespace) -> str | None:
    return None if args.discovery == "none" else str(args.discovery)


def _tls(tls_dir: Path | None, cert_name: str) -> TlsConfig | None:
    if tls_dir is None:
        return None
    from otpylib_dist.tls import TlsError, mutual_tls_from_dir

    try:
        return mutual_tls_from_dir(tls_dir, cert_name)
    except TlsError as exc:
        raise _UsageError(str(exc)) from exc


def _check_ticktime(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.net_ticktime) and args.net_ticktime >= 1.0):
        raise _UsageError(
            f"--net-ticktime must be a number of seconds, at least 1, got {args.net_ticktime:g}"
        )


@dataclass(frozen=True, slots=True)
class _Target:
    """A node to reach, and its address when the command line gave one."""

    node: str
    address: tuple[str, int] | None = None


def _target(text: str, address: str | None = None) -> _Target:
    """Parse ``NAME@HOST`` or ``NAME@HOST:PORT``, plus an optional ``--address HOST:PORT``."""
    if ":" in text:
        try:
            node, host, port = parse_static_entry(text)
        except DiscoveryError as exc:
            raise _UsageError(str(exc).replace("static entry", "node")) from exc
        found: tuple[str, int] | None = (host, port)
    else:
        node, found = make_node_name(text), None
    if address is not None:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _UsageError(f"--address {address!r} is not HOST:PORT, e.g. 127.0.0.1:4370")
        found = (host, int(port_text))
    return _Target(node, found)


def _import_from_cwd() -> None:
    """Make modules of the current directory importable, as ``python -m`` does.

    The console script's ``sys.path`` starts with its own bin directory, so
    without this ``--run app:main`` (and remote spawns of ``app:...``) would
    not find ``app.py`` beside the user.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _import_run_function(ref: str) -> None:
    """Check that ``--run`` names an importable async function before the node starts."""
    try:
        fn = resolve_function(ref)
    except ValueError as exc:
        raise _UsageError(f"--run {ref!r}: {exc}") from exc
    except ImportError as exc:
        raise _UsageError(
            f"--run {ref}: cannot import {exc.name or ref.partition(':')[0]!r} ({exc}); "
            "check the spelling, the current directory and PYTHONPATH"
        ) from exc
    except AttributeError as exc:
        raise _UsageError(
            f"--run {ref}: module {ref.partition(':')[0]!r} has no {ref.partition(':')[2]!r}; "
            "name a module-level async function as package.module:function"
        ) from exc
    except Exception as exc:
        raise _UsageError(f"--run {ref}: importing it failed: {type(exc).__name__}: {exc}") from exc
    # A process runs the coroutine its function returns (as spawn does).
    if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
        raise _UsageError(
            f"--run {ref}: {ref.partition(':')[2]!r} is not an async function; a process "
            "function is defined with async def"
        )


# ------------------------------------------------------ failure messages


_TLS_ADVICE: Final = (
    "a node with --tls-dir accepts only nodes that also use --tls-dir, with certificates of "
    "the same CA"
)

#: What to do about each connect failure reason: ``{where}`` is the node (and
#: address), ``{detail}`` the failure's own text, ``{me}`` our node name.
#: Keyed by ``ConnectFailure.reason``, so rewording a message in the library
#: cannot change the advice. Reasons not here print their detail.
_ADVICE: Final[dict[ConnectFailureReason, str]] = {
    "bad_cookie": (
        "cannot connect to {where}: it refused our cookie (bad_cookie); every node of a "
        "cluster needs the same cookie: pass it with --cookie or --cookie-file, or set "
        "OTPY_COOKIE (default: ~/.otpylib.cookie)"
    ),
    "duplicate_name": (
        "cannot connect to {where}: it already has a connection from a node named {me} "
        "(duplicate_name), so another node is running under the name {me}; give every "
        "node a unique --name, or stop the other one first"
    ),
    "not_allowed": (
        "cannot connect to {where}: it refused the connection (not_allowed); it may be "
        "stopping, or accept only some nodes"
    ),
    # Our own check: another node answered there; the detail says which.
    "wrong_node": "cannot connect to {where}: {detail}",
    "refused": (
        "cannot connect to {where}: nothing accepts connections there ({detail}); check that "
        "the node is running and the port is right"
    ),
    "timeout": (
        "cannot connect to {where}: {detail}; the node may be overloaded or not an otpylib "
        "node (" + _TLS_ADVICE + ")"
    ),
    "closed": (
        "cannot connect to {where}: the peer closed the connection during the handshake "
        "(its log says why); " + _TLS_ADVICE
    ),
    "tls": "cannot connect to {where}: the TLS handshake failed{tls_detail}; " + _TLS_ADVICE,
}

#: Failures that may go away by themselves (the node is not up yet, or silent):
#: ``--connect`` retries these; any other is an answer, and retrying would not
#: change it.
_RETRYABLE: Final[frozenset[ConnectFailureReason]] = frozenset(
    {"no_address", "refused", "unreachable", "timeout"}
)


def explain_connect_failure(
    target: str,
    failure: ConnectFailure | None,
    *,
    me: str,
    address: tuple[str, int] | None = None,
    tls: bool = False,
    discovery: str | None = None,
    detail: str | None = None,
    tool: bool = True,
) -> str:
    """Turn a node's connection failure into one line saying what to do.

    Args:
        target: the node we tried to reach.
        failure: ``Node.last_connect_failure(target)`` (advice is by its reason).
        me: our own node name (a ``duplicate_name`` refusal is about it).
        address: where we dialled, when known.
        tls: whether we dialled with TLS (the advice differs).
        discovery: the ``--discovery`` mechanism used to find ``target``, if any.
        detail: why discovery found no address, when it knows (e.g. no port
            mapper answered, or the name belongs to an Erlang node).
        tool: for a subcommand (which takes ``--address``), not ``run``.

    Returns:
        ``"cannot connect to NODE: <what happened>; <what to do>"``.
    """
    where = f"{target} at {address[0]}:{address[1]}" if address else target
    reason = failure.reason if failure is not None else "closed"
    text = failure.detail if failure is not None else ""
    if reason == "no_address":
        if detail is not None:
            return f"cannot connect to {target}: {detail}"
        if discovery == "epmd":
            host = target.partition("@")[2]
            return (
                f"cannot connect to {target}: no node of that name is registered with the port "
                f"mapper on {host}; check that it runs, under that name (or give NAME@HOST:PORT)"
            )
        if discovery is not None:
            return (
                f"cannot connect to {target}: --discovery {discovery} did not find it; check "
                "that it runs, with the same cookie, where discovery can see it (or give "
                "NAME@HOST:PORT)"
            )
        address_option = " (or --address HOST:PORT)" if tool else ""
        return (
            f"cannot connect to {target}: no address known; give NAME@HOST:PORT{address_option}"
            ", or find it with --discovery epmd|mdns|static|dns"
        )
    if reason == "closed" and tls:
        reason = "tls"  # a TLS peer that rejects us closes without a word
    template = _ADVICE.get(reason)
    if template is None:
        return f"cannot connect to {where}: {text}"
    tls_detail = f" ({text})" if text and tls and reason == "tls" else ""
    return template.format(where=where, detail=text, me=me, tls_detail=tls_detail)


# --------------------------------------------------------------------- run


async def _run_node(args: argparse.Namespace, log: LogfmtFormatter | JsonFormatter) -> int:
    name = make_node_name(args.name)
    log.node = name
    _check_ticktime(args)
    if args.busy_wait is not None and not (math.isfinite(args.busy_wait) and args.busy_wait >= 0):
        raise _UsageError(
            f"--busy-wait must be 0 (off) or a number of seconds, got {args.busy_wait:g}"
        )
    if not (math.isfinite(args.connect_timeout) and args.connect_timeout >= 0):
        raise _UsageError(
            f"--connect-timeout must be a number of seconds, got {args.connect_timeout:g}"
        )
    cookie = _cookie(args)
    targets = [_target(text) for text in args.connect]
    for target in targets:
        if target.node == name:
            raise _UsageError(f"--connect {target.node}: that is this node's own name")
    _import_from_cwd()
    for ref in args.run_fns:
        _import_run_function(ref)
    await _check_host(name, args.listen)
    discovery = _discovery(args, cookie)
    metrics_at = _metrics_address(args.metrics)
    node = DistributedBackend(
        name,
        cookie=cookie,
        port=args.port,
        net_ticktime=args.net_ticktime,
        discovery=discovery,
        tls=_tls(args.tls_dir, name),
        auto_connect=args.auto_connect,
        listen_host=args.listen,
        busy_wait=args.busy_wait,
        connect_all=args.connect_all,
        spawn_allow=tuple(args.spawn_allow) if args.spawn_allow is not None else None,
    )
    stop = asyncio.Event()
    stop_metrics: Callable[[], Coroutine[Any, Any, None]] | None = None
    node.on_stop_request = stop.set
    ended: list[application.ApplicationEnd] = []

    def application_ended(end: application.ApplicationEnd) -> None:
        ended.append(end)
        stop.set()

    application.set_node_stop_handler(node, application_ended)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await node.initialize()
        except DiscoveryError as exc:
            raise _Failure(str(exc)) from exc
        except OSError as exc:
            raise _Failure(str(exc.strerror or exc)) from exc
        stop_metrics = await _start_observing(node, metrics_at)
        await _connect_all_at_start(node, targets, args, discovery, stop)
        await _start_applications(node, args.run_fns, stop)
        if not stop.is_set():
            # Start-up is over and the interpreter is ours: freeze what it
            # made and make collector passes rarer (otpylib.runtime.gc_tuning).
            from otpylib.runtime.gc_tuning import tune_gc

            tune_gc()
            print(f"node {node.node_name} listening on {node.port}", flush=True)
            logger.info(
                "node %s running (pid %d)",
                node.node_name,
                os.getpid(),
                extra={"event": "node_running"},
            )
        await stop.wait()
        logger.info("stopping node %s", node.node_name, extra={"event": "node_stopping"})
    finally:
        await application.stop_all(node)
        if stop_metrics is not None:
            await stop_metrics()
        await node.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("node %s stopped", node.node_name, extra={"event": "node_stopped"})
    if ended and ended[0].failed:
        raise _Failure(f"{ended[0].message}; the node stopped (--log-level debug shows more)")
    return 0


async def _start_applications(
    node: DistributedBackend, refs: list[str], stop: asyncio.Event
) -> None:
    """Start each ``--run`` in order, as a permanent application; give up when told to stop."""
    loop = asyncio.get_running_loop()
    for ref in refs:
        if stop.is_set():
            return
        starting = loop.create_task(application.start(ref, runtime=node))
        stopping = loop.create_task(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            # SIGTERM while a start function still runs: stop_all() ends it.
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        try:
            starting.result()
        except application.ApplicationError as exc:
            raise _Failure(str(exc)) from exc


async def _connect_all_at_start(
    node: DistributedBackend,
    targets: list[_Target],
    args: argparse.Namespace,
    discovery: Discovery | None,
    stop: asyncio.Event,
) -> None:
    """Connect to every ``--connect`` node at once, each retried until ``--connect-timeout``."""
    if not targets:
        return
    deadline = asyncio.get_running_loop().time() + args.connect_timeout
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(
            _connect_at_start(
                node,
                target,
                tls=args.tls_dir is not None,
                discovery=_discovery_name(args),
                detail=discovery,
                deadline=deadline,
                timeout=args.connect_timeout,
                stop=stop,
            )
        )
        for target in targets
    ]
    try:
        await asyncio.gather(*tasks)  # the first failure is the one reported
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: First and longest pause between two attempts of ``--connect``.
_FIRST_RETRY: Final = 0.1
_LONGEST_RETRY: Final = 2.0


async def _connect_at_start(
    node: DistributedBackend,
    target: _Target,
    *,
    tls: bool,
    discovery: str | None,
    detail: Discovery | None = None,
    deadline: float | None = None,
    timeout: float = 0.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Connect to ``target``; retry with backoff until ``deadline`` while nobody answers.

    A refusal (wrong cookie, duplicate name, TLS on one side) is an answer:
    retrying would not change it, so it fails at once.
    """
    loop = asyncio.get_running_loop()
    host, port = target.address if target.address else (None, None)
    delay = _FIRST_RETRY
    retried = False
    while True:
        # connect() already waits out a benign duplicate_name (both sides dialling
        # at once): a refusal left here means another node runs under our name.
        if await node.connect(target.node, host, port):
            return
        failure = node.last_connect_failure(target.node)
        why_unknown = _resolve_failure(detail, target.node) or ""
        if "not an otpylib node" in why_unknown or not _nobody_answered(failure):
            break  # an answer (a refusal, a closed handshake): retrying would not change it
        # The last pause is cut to the deadline, so the last attempt is made at it.
        pause = min(delay, deadline - loop.time()) if deadline is not None else 0.0
        if pause <= 0:
            break
        retried = True
        logger.info(
            "cannot connect to %s yet (%s); retrying in %.1f s",
            target.node,
            failure.detail if failure is not None else "?",
            pause,
        )
        if stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if stop.is_set():
                return  # SIGTERM or stop while waiting: the node stops, exit 0
        else:
            await asyncio.sleep(pause)
        delay = min(delay * 2, _LONGEST_RETRY)
    message = explain_connect_failure(
        target.node,
        node.last_connect_failure(target.node),
        me=node.node_name,
        address=target.address,
        tls=tls,
        discovery=discovery,
        detail=_resolve_failure(detail, target.node),
        tool=False,
    )
    if retried:
        message += f" (retried for {timeout:g} s: --connect-timeout)"
    raise _Failure(message)


def _nobody_answered(failure: ConnectFailure | None) -> bool:
    """Whether a failed connect may succeed later: the node is not (yet) up, or silent."""
    return failure is not None and failure.reason in _RETRYABLE


# ------------------------------------------------- observability (run)


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    """Parse ``--metrics HOST:PORT`` and check ``prometheus_client`` is installed."""
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise _UsageError(f"--metrics {text!r} is not HOST:PORT, e.g. 0.0.0.0:9464")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise _UsageError(
            "--metrics needs prometheus_client, which is not installed; "
            "pip install 'otpylib[metrics]'"
        ) from None
    return host, int(port)


async def _start_observing(
    node: DistributedBackend, metrics_at: tuple[str, int] | None
) -> Callable[[], Coroutine[Any, Any, None]]:
    """Start the loop-lag monitor and, if asked, the metrics endpoint; return its stopper."""
    from otpylib_dist.vitals import loop_lag

    loop_lag()
    if metrics_at is None:

        async def nothing() -> None:
            return None

        return nothing
    from otpylib_dist.metrics import start_metrics

    try:
        server = await start_metrics(node, *metrics_at)
    except OSError as exc:
        raise _Failure(str(exc.strerror or exc)) from exc
    return server.close


# -------------------------------------------------------------- subcommands


#: Subcommand -> the operation ``node_rpc`` answers.
_OPS: Final = {
    "ping": "ping",
    "nodes": "nodes",
    "ps": "processes",
    "stats": "statistics",
    "top": "snapshot",
}


async def _ask(args: argparse.Namespace) -> int:
    target = _target(args.node, args.address)
    _check_ticktime(args)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise _UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    cookie = _cookie(args)
    tls = None
    if args.tls_dir is not None:
        cert = args.tls_name
        if cert is None:
            has_cli = (args.tls_dir / f"{_CLI_CERT_NAME}.pem").is_file()
            cert = _CLI_CERT_NAME if has_cli else target.node
        tls = _tls(args.tls_dir, cert)
    discovery = _discovery(args, cookie, tool=True)
    me = DistributedBackend(
        f"otpy-cli-{os.getpid()}@127.0.0.1",
        cookie=cookie,
        discovery=discovery,
        hidden=True,
        setup_time=args.timeout,
        net_ticktime=args.net_ticktime,
        tls=tls,
    )
    try:
        try:
            await me.initialize()
        except (DiscoveryError, OSError) as exc:
            raise _Failure(f"cannot start the command's own node: {exc}") from exc
        host, port = target.address if target.address else (None, None)
        if not await me.connect(target.node, host, port):
            message = explain_connect_failure(
                target.node,
                me.last_connect_failure(target.node),
                me=me.node_name,
                address=target.address,
                tls=tls is not None,
                discovery=_discovery_name(args),
                detail=_resolve_failure(discovery, target.node),
            )
            if args.command == "ping":
                print("pang", flush=True)
            raise _Failure(message)
        if args.command == "stop":
            return await _stop(me, target, args.timeout, as_json=args.json)
        if args.command in _CALL_VERBS:
            return await _call_verb(me, target.node, args)
        if args.command == "top":
            return await _top(me, target, args)
        try:
            result = await me.rpc(target.node, _OPS[args.command], timeout=args.timeout)
        except (NodeUnreachable, RpcError, TimeoutError) as exc:
            if args.command == "ping":
                print("pang", flush=True)
            if isinstance(exc, TimeoutError):
                raise _Failure(
                    f"{target.node} did not answer {args.command!r} within {args.timeout:g} s; "
                    "raise --timeout if it is busy"
                ) from exc
            raise _Failure(str(exc)) from exc
        _print_result(args.command, result, as_json=getattr(args, "json", False), sort=_sort(args))
        return 0
    finally:
        await me.shutdown()


def _resolve_failure(discovery: Discovery | None, node: str) -> str | None:
    """Why ``discovery`` found no address for ``node``, when the mechanism tells."""
    explain = getattr(discovery, "resolve_failure", None)
    return explain(node) if callable(explain) else None


async def _call_verb(me: DistributedBackend, node: str, args: argparse.Namespace) -> int:
    """``call`` and ``rpc``: run on ``node``, print the answer as JSON."""
    from otpylib_dist import cli_call

    try:
        if args.command == "call":
            answer = await cli_call.call(me, node, args.name, args.request, args.timeout)
        else:
            answer = await cli_call.rpc(me, node, args.function, args.args, args.timeout)
    except cli_call.BadInput as exc:
        raise _UsageError(str(exc)) from exc
    except cli_call.CallFailed as exc:
        raise _Failure(str(exc)) from exc
    print(answer, flush=True)
    return 0


def _sort(args: argparse.Namespace) -> str | None:
    return getattr(args, "sort", None) if args.command == "ps" else None


async def _top(me: DistributedBackend, target: _Target, args: argparse.Namespace) -> int:
    """``top``: poll ``target``'s snapshot and draw it (``top.py``)."""
    from otpylib_dist.top import run_top

    if not (math.isfinite(args.interval) and args.interval > 0):
        raise _UsageError(f"--interval must be a positive number of seconds, got {args.interval:g}")

    async def poll() -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await me.rpc(target.node, "snapshot", timeout=args.timeout)
        except (NodeUnreachable, RpcError, TimeoutError) as exc:
            raise _Failure(f"{target.node} stopped answering: {exc or type(exc).__name__}") from exc
        return answer

    if args.json:
        print(json.dumps(await poll(), indent=2, sort_keys=True, default=str))
        return 0
    return await run_top(poll, once=args.once, interval=args.interval, sort=args.sort)


async def _stop(
    me: DistributedBackend, target: _Target, timeout: float, *, as_json: bool = False
) -> int:
    """Ask ``target`` to stop, then wait (up to ``timeout``) for its connection to close."""
    try:
        await me.rpc(target.node, "stop", timeout=timeout)
    except NodeUnreachable:
        pass  # it went down before its answer reached us: stopped all the same
    except (RpcError, TimeoutError) as exc:
        raise _Failure(f"{target.node} did not accept 'stop': {exc}") from exc
    deadline = asyncio.get_running_loop().time() + timeout
    while target.node in me.nodes(hidden=True):
        if asyncio.get_running_loop().time() >= deadline:
            raise _Failure(
                f"{target.node} accepted 'stop' but was still connected after {timeout:g} s; "
                "it may be waiting for its processes to end"
            )
        await asyncio.sleep(0.02)
    if as_json:
        print(json.dumps({"node": target.node, "stopped": True}), flush=True)
    else:
        print(f"{target.node} stopped", flush=True)
    return 0


def _print_result(
    command: str, result: Any, *, as_json: bool = False, sort: str | None = None
) -> None:
    from otpylib_dist.cli_output import format_ps, format_stats

    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    elif command == "ping":
        print(result)
    elif command == "nodes":
        for n in result:
            print(n)
    elif command == "ps":
        print("\n".join(format_ps(result, sort)))
    elif command == "stats":
        print("\n".join(format_stats(result)))
    else:
        print(result)


# ------------------------------------------------------------- port mapper


def _epmd_command(args: argparse.Namespace) -> int:
    """``otpy-node epmd``: run, start detached, list or stop the port mapper."""
    from otpylib_dist import cli_epmd

    try:
        return cli_epmd.run(args.port, names=args.names, kill=args.kill, daemon=args.daemon)
    except cli_epmd.MapperUsageError as exc:
        raise _UsageError(str(exc)) from None
    except cli_epmd.MapperFailure as exc:
        raise _Failure(str(exc)) from None


# --------------------------------------------------------------------- main


def _run_on_loop(main: Coroutine[Any, Any, int], choice: str) -> int:
    """Run ``main`` on uvloop when asked or (``auto``) when installed, else asyncio's loop."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise _UsageError(
                    "--loop uvloop: uvloop is not installed; pip install 'otpylib[uvloop]'"
                ) from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``otpy-node``; returns the exit code (0, 1 or 2, see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = (*SUBCOMMANDS, *_CALL_VERBS, "epmd", "run", "-h", "--help", "--version")
    if not argv or argv[0] not in verbs:
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        log = _setup_logging(args.log_level, getattr(args, "log_format", "logfmt"))
        if args.command == "epmd":
            return _epmd_command(args)
        if args.command == "run":
            return _run_on_loop(_run_node(args, log), args.loop)
        return asyncio.run(_ask(args))
    except (NodeNameError, CookieError, _UsageError) as exc:
        print(f"otpy-node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (_Failure, DiscoveryError) as exc:
        print(f"otpy-node: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"otpy-node: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
