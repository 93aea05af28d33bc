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
import json
import logging
import math
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, Final

from otpylib_dist.cli_advice import explain_connect_failure
from otpylib_dist.cli_config import (
    _CLI_CERT_NAME,
    EXIT_FAILURE,
    EXIT_USAGE,
    SUBCOMMANDS,
    _check_ticktime,
    _cookie,
    _discovery,
    _discovery_name,
    _Failure,
    _resolve_failure,
    _Target,
    _target,
    _tls,
    _UsageError,
)
from otpylib_dist.cli_grammar import _CALL_VERBS, build_parser
from otpylib_dist.cli_run import _run_node
from otpylib_dist.cookie import CookieError
from otpylib_dist.discovery.base import DiscoveryError
from otpylib_dist.errors import NodeUnreachable, RpcError
from otpylib_dist.logformat import JsonFormatter, LogfmtFormatter, setup_logging
from otpylib_dist.names import NodeNameError
from otpylib_dist.node import DistributedBackend
from otpylib_dist.refusal_log import refusals

logger = logging.getLogger(__name__)

__all__ = ["SUBCOMMANDS", "build_parser", "explain_connect_failure", "main"]

# ------------------------------------------------------------------ logging


def _setup_logging(level: str, fmt: str = "logfmt") -> LogfmtFormatter | JsonFormatter:
    try:
        return setup_logging(level, fmt)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


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


def _say(text: str) -> None:
    """Print the one ``otpy-node: ...`` error line, after every log line already queued.

    Refused-connection lines are written by a thread (``refusal_log``);
    draining it first, and writing the line in one call, keeps the two
    from interleaving on stderr.
    """
    refusals.stop()
    sys.stderr.write(f"otpy-node: {text}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``otpy-node``; returns the exit code (0, 1 or 2, see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("run", *SUBCOMMANDS, *_CALL_VERBS, "epmd")
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        _say(
            f"unknown command {argv[0]!r}; the commands are {', '.join(commands)} "
            "(run is the default when the first argument is an option); see otpy-node --help"
        )
        return EXIT_USAGE
    if not argv or argv[0] not in (*commands, "-h", "--help", "--version"):
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
        _say(str(exc))
        return EXIT_USAGE
    except (_Failure, DiscoveryError) as exc:
        _say(str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        _say(str(exc.strerror or exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
