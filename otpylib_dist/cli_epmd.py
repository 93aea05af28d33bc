"""``otpy-node epmd``: the port mapper's command (run, ``--daemon``, ``--names``, ``--kill``).

As Erlang's ``epmd``, ``epmd -daemon``, ``epmd -names`` and ``epmd -kill``;
the mapper itself is ``otpylib_dist.discovery.epmd_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from otpylib_dist.discovery import epmd_server
from otpylib_dist.discovery.base import DiscoveryError
from otpylib_dist.discovery.epmd import EpmdDiscovery, kill_mapper
from otpylib_dist.discovery.epmd_server import start_detached

logger = logging.getLogger(__name__)

__all__ = ["MapperFailure", "MapperUsageError", "run"]


class MapperUsageError(ValueError):
    """Bad configuration for the mapper (exit code 2)."""


class MapperFailure(Exception):
    """The mapper cannot run, or no mapper answers (exit code 1)."""


def run(port: int | None, *, names: bool, kill: bool, daemon: bool) -> int:
    """Run the mapper in the foreground, or (one of) list, kill, start detached.

    Raises:
        MapperUsageError: ``ERL_EPMD_PORT`` is not a port.
        MapperFailure: the port is taken, no mapper answers, or it refused.
    """
    try:
        port = port if port is not None else epmd_server.epmd_port()
    except ValueError as exc:
        raise MapperUsageError(str(exc)) from None
    if names:
        return asyncio.run(_names(port))
    if kill:
        return asyncio.run(_kill(port))
    if daemon:
        return asyncio.run(_daemon(port))

    def ready(bound: int) -> None:
        print(f"port mapper listening on port {bound}", flush=True)

    try:
        return asyncio.run(epmd_server.serve(port, ready))
    except OSError as exc:
        raise MapperFailure(
            f"the port mapper cannot listen on port {port}: {exc.strerror or exc}; one may "
            "already run there (otpy-node epmd --names), or choose another port (--port, "
            "ERL_EPMD_PORT)"
        ) from None


async def _names(port: int) -> int:
    names = await EpmdDiscovery(port=port, register=False).names()
    print(f"port mapper on port {port}: {len(names)} name(s)")
    for name, node_port in names.items():
        print(f"name {name} at port {node_port}")
    return 0


async def _kill(port: int) -> int:
    if not await kill_mapper(port):
        raise MapperFailure(
            f"the port mapper on port {port} refused to stop: nodes are registered with it; "
            "stop them first (otpy-node epmd --names lists them)"
        )
    print(f"port mapper on port {port} stopped")
    return 0


async def _daemon(port: int) -> int:
    """Start a detached mapper unless one answers already; return once it answers."""
    probe = EpmdDiscovery(port=port, register=False)
    with contextlib.suppress(DiscoveryError):
        await probe.names(timeout=1.0)
        print(f"a port mapper already runs on port {port}")
        return 0
    proc = start_detached(port)
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        try:
            await probe.names(timeout=1.0)
            break
        except DiscoveryError:
            if proc.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise MapperFailure(
                    f"the port mapper did not start on port {port}; run otpy-node epmd "
                    "(in the foreground) to see why"
                ) from None
            await asyncio.sleep(0.05)
    print(f"port mapper started on port {port} (pid {proc.pid})")
    return 0
