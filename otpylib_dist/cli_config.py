"""otpy-node's configuration: cookie, discovery, TLS, targets, --run references.

Every check a user can fail raises ``UsageError`` (exit 2) or ``Failure``
(exit 1) with one line saying what to do; ``cli.main`` prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from otpylib.runtime.function_ref import resolve_function
from otpylib_dist.cookie import load_cookie
from otpylib_dist.discovery.base import Discovery, DiscoveryError
from otpylib_dist.discovery.static import parse_static_entry
from otpylib_dist.names import make_node_name

if TYPE_CHECKING:
    from otpylib_dist.tls import TlsConfig


logger = logging.getLogger(__name__)

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "SUBCOMMANDS"]

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


def _resolve_failure(discovery: Discovery | None, node: str) -> str | None:
    """Why ``discovery`` found no address for ``node``, when the mechanism tells."""
    explain = getattr(discovery, "resolve_failure", None)
    return explain(node) if callable(explain) else None
