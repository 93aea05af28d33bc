"""``otpy-node run``: start a node, connect, start applications, run until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Final

from otpylib import application
from otpylib_dist.cli_advice import _RETRYABLE, explain_connect_failure
from otpylib_dist.cli_config import (
    _check_host,
    _check_ticktime,
    _cookie,
    _discovery,
    _discovery_name,
    _Failure,
    _import_from_cwd,
    _import_run_function,
    _resolve_failure,
    _Target,
    _target,
    _tls,
    _UsageError,
)
from otpylib_dist.discovery.base import Discovery, DiscoveryError
from otpylib_dist.errors import ConnectFailure
from otpylib_dist.logformat import JsonFormatter, LogfmtFormatter
from otpylib_dist.names import make_node_name
from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = []

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
        max_message_size=args.max_message_size,
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
