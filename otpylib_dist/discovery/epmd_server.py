"""A port mapper speaking EPMD's protocol: what ``otpy-node epmd`` runs.

Nodes on a host find each other with no configuration when one port mapper
per host knows which port each node name listens on (Erlang's ``epmd``).
A node registers with the mapper of its own host (ALIVE2) and keeps that
connection open; the registration lives exactly as long as the connection,
so a node that dies, however it dies, disappears from the map. Anyone asks
the mapper for a name's port (PORT_PLEASE2) or for every name (NAMES).

The wire format is ``otpylib_dist.protocol.epmd_wire``; this module only
moves its bytes with asyncio. ``start_detached`` starts a mapper that
outlives its starter, as ``erl`` starts ``epmd -daemon`` when none answers.

Erlang behaviour followed: the port is 4369 unless ``ERL_EPMD_PORT`` says
otherwise; ``ERL_EPMD_ADDRESS`` (comma-separated IPv4 addresses) limits the
addresses it listens on, loopback always included; a name already registered
is refused (result 1); KILL_REQ is answered ``OK`` (and the mapper stops)
only when no node is registered, else ``NO``; every creation handed out is
new for this mapper. Differs from Erlang: IPv4 only; no DUMP_REQ or
STOP_REQ; a client that sends nothing for ``REQUEST_TIMEOUT`` seconds, or
bytes that are not EPMD, is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Final

from otpylib_dist.protocol.epmd_wire import (
    EPMD_PORT,
    NEED_DATA,
    Alive2Request,
    EpmdProtocolError,
    KillRequest,
    NamesRequest,
    NodeEntry,
    PortPlease2Request,
    decode_request,
    encode_alive2_resp,
    encode_kill_resp,
    encode_names_resp,
    encode_port2_resp,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_REGISTRATIONS",
    "REQUEST_TIMEOUT",
    "EpmdServer",
    "epmd_addresses",
    "epmd_port",
    "start_detached",
]

#: Seconds a client may take to send its whole request: a client that
#: connects and stays silent costs a socket, so it cannot keep it for long.
REQUEST_TIMEOUT: Final = 10.0
#: Most registrations held at once (Erlang's epmd is bounded by its file
#: descriptors, 1024 by default); past it ALIVE2 is refused.
MAX_REGISTRATIONS: Final = 1000
#: Largest request we read: the 2-byte length caps it at 64 KiB anyway.
_MAX_REQUEST: Final = 2 + 0xFFFF


def epmd_port() -> int:
    """The mapper's port: ``ERL_EPMD_PORT`` when set (as Erlang reads it), else 4369.

    Raises:
        ValueError: ``ERL_EPMD_PORT`` is not a port number.
    """
    text = os.environ.get("ERL_EPMD_PORT", "").strip()
    if not text:
        return EPMD_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"ERL_EPMD_PORT={text!r} is not a port number from 1 to 65535")
    return int(text)


def epmd_addresses() -> list[str]:
    """Where a mapper listens: ``ERL_EPMD_ADDRESS`` plus loopback, else every interface."""
    text = os.environ.get("ERL_EPMD_ADDRESS", "").strip()
    if not text:
        return ["0.0.0.0"]
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


class _Registration:
    """One registered node and the connection that holds it."""

    __slots__ = ("creation", "entry", "writer")

    def __init__(self, entry: NodeEntry, creation: int, writer: asyncio.StreamWriter) -> None:
        self.entry = entry
        self.creation = creation
        self.writer = writer


class EpmdServer:
    """The mapper: a registry of names held by live connections, served over TCP.

    Args:
        port: where to listen (0: any free port, see ``port`` after ``start``).
        addresses: the addresses to bind (default ``epmd_addresses()``).
    """

    def __init__(self, port: int = EPMD_PORT, addresses: Sequence[str] | None = None) -> None:
        self._wanted_port = port
        self._addresses = list(addresses) if addresses is not None else epmd_addresses()
        self._servers: list[asyncio.Server] = []
        self._names: dict[str, _Registration] = {}
        self._clients: set[asyncio.Task[None]] = set()
        # Creations count up from a random start, so a name that registers
        # again gets a number its previous incarnation never had.
        self._next_creation = secrets.randbits(31) + 1
        self.port = 0
        self.stopped = asyncio.Event()

    def names(self) -> dict[str, int]:
        """The registered names and their ports (what NAMES answers)."""
        return {name: reg.entry.port for name, reg in self._names.items()}

    async def start(self) -> None:
        """Listen on every address.

        Raises:
            OSError: an address or the port cannot be bound (e.g. in use).
        """
        port = self._wanted_port
        try:
            for address in self._addresses:
                server = await asyncio.start_server(
                    self._serve, address, port, reuse_address=True, limit=_MAX_REQUEST
                )
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
        except OSError:
            await self.close()
            raise
        self.port = port
        logger.info("port mapper listening on %s port %d", ",".join(self._addresses), port)

    async def close(self) -> None:
        """Stop listening and drop every registration (their connections close)."""
        for server in self._servers:
            server.close()
        for reg in list(self._names.values()):
            reg.writer.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients))
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.stopped.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve_one(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except EpmdProtocolError as exc:
            logger.info("port mapper: dropping a client: %s", exc)
        finally:
            self._clients.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while (decoded := decode_request(buf)) is NEED_DATA:
                chunk = await reader.read(_MAX_REQUEST)
                if not chunk:
                    return
                buf += chunk
        request = decoded[0]
        if isinstance(request, Alive2Request):
            await self._alive(request.entry, reader, writer)
        elif isinstance(request, PortPlease2Request):
            reg = self._names.get(request.name)
            writer.write(encode_port2_resp(reg.entry if reg is not None else None))
        elif isinstance(request, NamesRequest):
            writer.write(encode_names_resp(self.port, self.names()))
        elif isinstance(request, KillRequest):
            accepted = not self._names
            writer.write(encode_kill_resp(accepted))
            if accepted:
                logger.info("port mapper stopping (KILL_REQ)")
                asyncio.get_running_loop().call_soon(self.stopped.set)
        with contextlib.suppress(OSError):
            await writer.drain()

    async def _alive(
        self, entry: NodeEntry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        extended = entry.highest_version >= 6
        if entry.name in self._names or len(self._names) >= MAX_REGISTRATIONS:
            logger.info("port mapper: refused %r (name taken or registry full)", entry.name)
            writer.write(encode_alive2_resp(1, 0, extended=extended))
            return
        creation = self._next_creation if extended else (self._next_creation % 3) + 1
        self._next_creation = (self._next_creation % 0xFFFFFFFF) + 1
        reg = _Registration(entry, creation, writer)
        self._names[entry.name] = reg
        logger.info("port mapper: registered %r at port %d", entry.name, entry.port)
        try:
            writer.write(encode_alive2_resp(0, creation, extended=extended))
            # The registration lives as long as this connection: wait for EOF.
            while await reader.read(4096):
                pass
        finally:
            if self._names.get(entry.name) is reg:
                del self._names[entry.name]
                logger.info("port mapper: %r unregistered (connection closed)", entry.name)


def start_detached(port: int) -> subprocess.Popen[bytes]:
    """Start a mapper on ``port`` that outlives this process (``epmd -daemon``).

    It runs ``python -m otpylib_dist.discovery.epmd_server`` in a session of
    its own with no terminal, and inherits ``ERL_EPMD_ADDRESS``. Returns at
    once; the caller waits until it answers. A mapper that finds the port
    taken (another one won a race to start) exits quietly.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "otpylib_dist.discovery.epmd_server", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    _detached.append(proc)  # referenced, so it is never collected (and warned about) while alive
    return proc


_detached: list[subprocess.Popen[bytes]] = []


async def serve(port: int, ready: Callable[[int], None] | None = None) -> int:
    """Run a mapper on ``port`` until SIGTERM, SIGINT or an accepted KILL_REQ; return 0.

    ``ready`` is called with the port once it listens.
    """
    import signal

    server = EpmdServer(port)
    await server.start()
    if ready is not None:
        ready(server.port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopped.set)
    await server.stopped.wait()
    await server.close()
    return 0


def _main(argv: Sequence[str]) -> int:
    """``python -m otpylib_dist.discovery.epmd_server --port P``: what start_detached runs."""
    port = int(argv[1]) if len(argv) == 2 and argv[0] == "--port" else epmd_port()
    try:
        return asyncio.run(serve(port))
    except OSError as exc:
        print(f"port mapper: cannot listen on port {port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
