"""``otpy-node``: run a node in the foreground, or ask a running node something.

Usage::

    otpy-node --name NAME[@HOST] [--cookie C | --cookie-file F] [--port P]
              [--discovery mdns|static|epmd|none] [--static NODE@HOST:PORT ...]
              [--connect NODE ...] [--run package.module:function]
              [--net-ticktime S] [--tls-dir D] [--log-level L]
    otpy-node ping|nodes|ps|stats|stop NODE [--address HOST:PORT] [same options]

The subcommands start a short-lived *hidden* node (it does not appear in
anyone's ``nodes()``), connect to ``NODE`` with the cookie and ask over the
distribution protocol. Exit codes: 0 success, 1 the node could not be
reached or refused (``pang``), 2 bad arguments.

argparse (stdlib) rather than click: one less dependency for a tool whose
grammar is a flat list of options and five verbs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final

from otpylib_dist.cookie import CookieError, load_cookie
from otpylib_dist.discovery.base import Discovery
from otpylib_dist.names import NodeNameError, make_node_name, split_node_name
from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]

SUBCOMMANDS: Final = ("ping", "nodes", "ps", "stats", "stop")


class _LogfmtFormatter(logging.Formatter):
    """One line per record, ``key=value`` pairs: greppable and machine-readable."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
        line = (
            f"time={ts}.{int(record.msecs):03d}Z level={record.levelname} "
            f'logger={record.name} msg="{msg}"'
        )
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _common(parser: argparse.ArgumentParser) -> None:
    cookie = parser.add_mutually_exclusive_group()
    cookie.add_argument(
        "--cookie", help="the cluster's shared secret (default: OTPY_COOKIE or ~/.otpylib.cookie)"
    )
    cookie.add_argument(
        "--cookie-file", type=Path, help="read the cookie from this file (mode 0400)"
    )
    parser.add_argument(
        "--discovery",
        choices=("mdns", "static", "epmd", "dns", "none"),
        default="none",
        help="how to find other nodes (default: none)",
    )
    parser.add_argument(
        "--static",
        nargs="*",
        default=[],
        metavar="NODE@HOST:PORT",
        help="addresses for --discovery static",
    )
    parser.add_argument("--epmd-port", type=int, default=4369, help="port of the EPMD to use")
    parser.add_argument(
        "--dns-service",
        metavar="NAME",
        help="for --discovery dns: the headless service, e.g. otpy.default.svc.cluster.local",
    )
    parser.add_argument(
        "--dns-port-name",
        default="otpy-dist",
        help="for --discovery dns: the service port's name (SRV _NAME._tcp.SERVICE)",
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
        "--net-ticktime", type=float, default=60.0, help="seconds of silence before a peer is down"
    )
    parser.add_argument("--log-level", default="warning", help="debug, info, warning, error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so tests and docs can check the grammar)."""
    parser = argparse.ArgumentParser(
        prog="otpy-node",
        description="Run an otpylib node, or ask a running one (ping, nodes, ps, stats, stop).",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a node in the foreground (the default)")
    run.add_argument("--name", required=True, help="NAME or NAME@HOST (HOST: where peers reach it)")
    run.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: any)")
    run.add_argument("--listen", help="address to bind (default: the HOST of --name)")
    run.add_argument(
        "--connect", nargs="*", default=[], metavar="NODE", help="nodes to connect to at start"
    )
    run.add_argument(
        "--run", dest="run_fn", metavar="MODULE:FUNCTION", help="spawn this process at start"
    )
    run.add_argument(
        "--auto-connect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="connect to every discovered node",
    )
    _common(run)
    for verb in SUBCOMMANDS:
        p = sub.add_parser(verb, help=f"{verb} a running node")
        p.add_argument("node", help="NAME@HOST of the running node")
        p.add_argument(
            "--address", metavar="HOST:PORT", help="where NODE listens (skips discovery)"
        )
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
        _common(p)
    return parser


def _cookie(args: argparse.Namespace) -> str:
    if args.cookie_file is not None:
        return load_cookie(None, path=args.cookie_file, use_env=False)
    return load_cookie(args.cookie)


def _discovery(args: argparse.Namespace, cookie: str, *, announce: bool = True) -> Discovery | None:
    kind = args.discovery
    if kind == "none":
        return None
    if kind == "mdns":
        from otpylib_dist.discovery.mdns import MdnsDiscovery

        return MdnsDiscovery(cookie, interfaces=args.mdns_interface, announce=announce)
    if kind == "dns":
        from otpylib_dist.discovery.dns import DnsDiscovery

        if not args.dns_service:
            raise _UsageError("--discovery dns needs --dns-service NAME")
        return DnsDiscovery(args.dns_service, port_name=args.dns_port_name)
    if kind == "static":
        from otpylib_dist.discovery.static import StaticDiscovery

        return StaticDiscovery(args.static)
    from otpylib_dist.discovery.epmd import EpmdDiscovery

    return EpmdDiscovery(port=args.epmd_port)


class _UsageError(Exception):
    """A combination of options that cannot work; printed as one line, exit code 2."""


def _tls(args: argparse.Namespace, node_name: str) -> Any:
    if args.tls_dir is None:
        return None
    from otpylib_dist.tls import mutual_tls_from_dir

    return mutual_tls_from_dir(args.tls_dir, split_node_name(node_name)[0])


async def _run_node(args: argparse.Namespace) -> int:
    name = make_node_name(args.name)
    cookie = _cookie(args)
    node = DistributedBackend(
        name,
        cookie=cookie,
        port=args.port,
        net_ticktime=args.net_ticktime,
        discovery=_discovery(args, cookie),
        tls=_tls(args, name),
        auto_connect=args.auto_connect,
        listen_host=args.listen,
    )
    stop = asyncio.Event()
    node.on_stop_request = stop.set
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.initialize()
    print(f"node {node.node_name} listening on {node.port}", flush=True)
    for peer in args.connect:
        if not await node.connect(peer):
            logger.warning("could not connect to %s at start", peer)
    if args.run_fn:
        await node.spawn(args.run_fn)
    await stop.wait()
    logger.info("stopping node %s", node.node_name)
    await node.shutdown()
    return 0


async def _ask(args: argparse.Namespace) -> int:
    target = args.node
    split_node_name(target)
    cookie = _cookie(args)
    me = DistributedBackend(
        f"otpy-cli-{os.getpid()}@127.0.0.1",
        cookie=cookie,
        discovery=_discovery(args, cookie, announce=False),
        hidden=True,
        setup_time=args.timeout,
        tls=_tls(args, target) if args.tls_dir else None,
    )
    await me.initialize()
    try:
        if args.address:
            host, _, port = args.address.rpartition(":")
            me.add_address(target, host, int(port))
        if not await me.connect(target):
            why = me.connect_failure(target) or "unreachable"
            print(f"pang: cannot reach {target}: {why}", file=sys.stderr)
            if args.command == "ping":
                print("pang")
            return 1
        op = {
            "ping": "ping",
            "nodes": "nodes",
            "ps": "processes",
            "stats": "statistics",
            "stop": "stop",
        }[args.command]
        result = await me.rpc(target, op, timeout=args.timeout)
        _print_result(args.command, result)
        return 0
    finally:
        await me.shutdown()


def _print_result(command: str, result: Any) -> None:
    if command == "ping":
        print(result)
    elif command == "nodes":
        for n in result:
            print(n)
    elif command == "ps":
        print(f"{'PID':<28} {'NAME':<20} {'STATE':<8} {'QUEUE':>5}  FUNCTION")
        for row in result:
            print(
                f"{row['pid']:<28} {row['name'] or '-':<20} {row['state']:<8} "
                f"{row['message_queue_len']:>5}  {row['function']}"
            )
    elif command == "stats":
        for key, value in result.items():
            print(f"{key}: {value}")
    else:
        print(result)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``otpy-node``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "run", "-h", "--help"):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "run":
            return asyncio.run(_run_node(args))
        return asyncio.run(_ask(args))
    except (NodeNameError, CookieError, _UsageError) as exc:
        print(f"otpy-node: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otpy-node: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
