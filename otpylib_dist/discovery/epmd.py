"""Discovery through a port mapper speaking EPMD's protocol: the zero-flag default.

Where Erlang is installed, an ``epmd`` runs on port 4369 of each host and
maps node *short* names to ports; ``otpy-node epmd`` is the same service
(``otpylib_dist.discovery.epmd_server``), and either serves. A node registers
``short -> port`` with the mapper of its own host (ALIVE2) and keeps that TCP
connection open, since the mapper drops a registration when its connection
closes; to reach ``short@host`` a node asks the mapper on ``host``
(PORT_PLEASE2). With ``start_mapper=True`` a node that finds no mapper on its
own host starts a detached one first, as ``erl`` runs ``epmd -daemon``.

The wire format lives in ``otpylib_dist.protocol.epmd_wire`` (re-exported
here); this module only moves its bytes.

Differs from Erlang: our distribution protocol is not Erlang's, so we mark our
registrations with ``extra = b"otpylib"`` and ``resolve`` refuses names that
an Erlang node registered (``resolve_failure`` then says "not an otpylib
node"), rather than handing out a port that would then fail the handshake.
The mapper has no notifications, so this discovery sends no events. The
node keeps its own creation number instead of the mapper's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, TypeVar

from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    DiscoveryError,
    _Subscribers,
)
from otpylib_dist.names import NodeNameError, split_node_name
from otpylib_dist.protocol.epmd_wire import (
    ALIVE2_REQ,
    ALIVE2_RESP,
    ALIVE2_X_RESP,
    EPMD_PORT,
    NAMES_REQ,
    NEED_DATA,
    NODE_TYPE_HIDDEN,
    NODE_TYPE_NORMAL,
    OTPYLIB_EXTRA,
    PORT2_RESP,
    PORT_PLEASE2_REQ,
    Alive2Reply,
    EpmdProtocolError,
    NeedData,
    NodeEntry,
    PortNotFound,
    decode_alive2_resp,
    decode_kill_resp,
    decode_names_resp,
    decode_port2_resp,
    encode_alive2_req,
    encode_kill_req,
    encode_names_req,
    encode_port_please2_req,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "EPMD_PORT",
    "NAMES_REQ",
    "NEED_DATA",
    "NODE_TYPE_HIDDEN",
    "NODE_TYPE_NORMAL",
    "OTPYLIB_EXTRA",
    "PORT2_RESP",
    "PORT_PLEASE2_REQ",
    "Alive2Reply",
    "EpmdDiscovery",
    "EpmdProtocolError",
    "NodeEntry",
    "PortNotFound",
    "decode_alive2_resp",
    "decode_names_resp",
    "decode_port2_resp",
    "encode_alive2_req",
    "encode_names_req",
    "encode_port_please2_req",
    "kill_mapper",
]

#: Cap on a NAMES reply we buffer: ~40 bytes a line, so thousands of nodes.
_MAX_NAMES_REPLY: Final = 1 << 20
#: Seconds a node waits for a mapper it started to answer (a Python
#: interpreter starting on a loaded machine; it usually takes ~0.2 s).
MAPPER_START_TIMEOUT: Final = 10.0


# --------------------------------------------------------------------- I/O


class EpmdDiscovery(_Subscribers):
    """Register with and resolve through a port mapper (EPMD's protocol).

    The default of ``otpy-node``: nodes on one host, and ``name@host`` on
    any host running a mapper, are found with no configuration.

    Args:
        port: the mapper's port (default ``ERL_EPMD_PORT``, else 4369).
        host: ask this mapper for every node, instead of the mapper on each
            node's own host; also where ``start`` registers (default the
            loopback address, the local mapper).
        register: whether ``start`` registers this node (``False`` for a
            client that only resolves).
        start_mapper: when no mapper answers on our own host, start a
            detached one (``otpy-node epmd --daemon``) and register with it.
        timeout: seconds to wait for the mapper to accept and answer a
            registration.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str | None = None,
        register: bool = True,
        start_mapper: bool = False,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if port is None:
            from otpylib_dist.discovery.epmd_server import epmd_port

            try:
                port = epmd_port()
            except ValueError as exc:
                raise DiscoveryError(f"{exc}; unset it or fix it") from None
        self._port = port
        self._host = host
        self._register = register
        self._start_mapper = start_mapper
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        self._creation: int | None = None
        self._resolve_failures: dict[str, str] = {}

    @property
    def port(self) -> int:
        """The mapper port this discovery talks to."""
        return self._port

    @property
    def creation(self) -> int | None:
        """The mapper's creation number for our registration, once registered."""
        return self._creation

    def resolve_failure(self, node_name: str) -> str | None:
        """Why the last ``resolve(node_name)`` found nothing, when it was not just "not
        registered" (no mapper answered, or an Erlang node holds the name)."""
        return self._resolve_failures.get(node_name)

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Register the node's short name and port with the mapper, and keep the registration.

        Raises:
            DiscoveryError: no mapper can be reached (or started), or it
                refuses the name (a node of that name is running).
        """
        if not self._register:
            return
        if self._writer is not None:
            raise DiscoveryError("EpmdDiscovery.start() called twice; call stop() first")
        short = _short_name(node_name)
        epmd_host = self._host or "127.0.0.1"
        request = encode_alive2_req(short, port)
        try:
            reader, writer, reply = await self._alive(epmd_host, request)
        except EpmdProtocolError as exc:
            raise DiscoveryError(
                f"the port mapper at {epmd_host}:{self._port} answered garbage ({exc}); is "
                "something else listening on that port?"
            ) from exc
        except (OSError, TimeoutError) as exc:
            if not (self._start_mapper and isinstance(exc, ConnectionRefusedError)):
                raise DiscoveryError(
                    f"cannot register {node_name} with the port mapper at {epmd_host}:"
                    f"{self._port}: {_why(exc)}; start one (otpy-node epmd --daemon) or "
                    "choose another --discovery"
                ) from exc
            reader, writer, reply = await self._start_mapper_and_alive(node_name, request)
        if isinstance(reply, NeedData):
            writer.close()
            raise DiscoveryError(
                f"the port mapper at {epmd_host}:{self._port} closed without answering; "
                "is something else listening on that port?"
            )
        if reply.result != 0:
            writer.close()
            raise DiscoveryError(
                f"a node named {node_name} is already running on this host (the port mapper "
                f"at {epmd_host}:{self._port} holds the name {short!r}); give this node "
                "another --name, or stop the other one first"
            )
        self._writer = writer
        self._creation = reply.creation
        self._watch = asyncio.get_running_loop().create_task(self._watch_registration(reader))
        logger.info(
            "port mapper %s:%d: registered %s at port %d", epmd_host, self._port, short, port
        )

    async def _alive(
        self, epmd_host: str, request: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Alive2Reply | NeedData]:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(epmd_host, self._port)
                writer.write(request)
                reply = await _read_reply(reader, decode_alive2_resp)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        return reader, writer, reply

    async def _start_mapper_and_alive(
        self, node_name: str, request: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Alive2Reply | NeedData]:
        """Start a detached mapper on our port, then register once it answers."""
        from otpylib_dist.discovery.epmd_server import start_detached

        logger.info("no port mapper on 127.0.0.1:%d; starting one", self._port)
        proc = start_detached(self._port)
        deadline = time.monotonic() + MAPPER_START_TIMEOUT
        delay = 0.02
        last_try = False
        while True:
            try:
                return await self._alive("127.0.0.1", request)
            except (OSError, TimeoutError) as exc:
                # Ours may have lost a race to start with another node's
                # mapper (and exited): then that one answers on the next try.
                if time.monotonic() > deadline or last_try:
                    raise DiscoveryError(
                        f"cannot register {node_name}: no port mapper answered on "
                        f"127.0.0.1:{self._port} and the one started did not come up "
                        f"({_why(exc)}); run otpy-node epmd to see why, or choose another "
                        "--discovery"
                    ) from exc
                last_try = proc.poll() is not None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _watch_registration(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(256):
                pass
        if self._writer is not None:
            logger.warning(
                "the port mapper closed our registration connection; this node can no longer "
                "be found by name until it restarts"
            )

    async def stop(self) -> None:
        """Drop the registration by closing its connection."""
        writer, self._writer = self._writer, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def resolve(
        self, node_name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> tuple[str, int] | None:
        """Ask the mapper of ``node_name``'s host for its port (PORT_PLEASE2).

        Returns ``(host, port)`` with the host of the node name, or ``None``
        when the name is not registered, was registered by a node that is
        not otpylib (an Erlang node), or no mapper answered: then one
        warning is logged and ``resolve_failure`` says which.
        """
        self._resolve_failures.pop(node_name, None)
        try:
            return await self._resolve(node_name, timeout)
        except (DiscoveryError, EpmdProtocolError) as exc:
            self._resolve_failures[node_name] = str(exc)
            logger.warning("cannot resolve %s: %s", node_name, exc)
            return None

    async def _resolve(self, node_name: str, timeout: float) -> tuple[str, int] | None:
        short = _short_name(node_name)
        node_host = node_name.partition("@")[2]
        epmd_host = self._host or node_host
        where = f"the port mapper at {epmd_host}:{self._port}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(epmd_host, self._port)
                try:
                    writer.write(encode_port_please2_req(short))
                    entry = await _read_reply(reader, decode_port2_resp)
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise DiscoveryError(
                f"{where} did not answer ({_why(exc)}); no node runs on {epmd_host} with "
                "this port mapper (check ERL_EPMD_PORT), or give NAME@HOST:PORT"
            ) from exc
        if isinstance(entry, NeedData):
            raise DiscoveryError(f"{where} closed mid-reply; is it a port mapper?")
        if isinstance(entry, PortNotFound):
            logger.debug("port mapper %s: %s is not registered", epmd_host, short)
            return None
        if not entry.extra.startswith(OTPYLIB_EXTRA):
            raise DiscoveryError(
                f"{node_name} is not an otpylib node ({where} has it registered by another "
                "kind of node, probably Erlang); otpylib speaks its own distribution "
                "protocol and cannot connect to it"
            )
        return node_host, entry.port

    async def names(
        self, host: str | None = None, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> dict[str, int]:
        """Return every short name registered with the mapper on ``host`` and its port.

        ``host`` defaults to the configured mapper host, else loopback. Like
        ``net_adm:names/1``; Erlang nodes are listed too.

        Raises:
            DiscoveryError: the mapper cannot be reached or answered garbage.
        """
        epmd_host = host or self._host or "127.0.0.1"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(epmd_host, self._port)
                try:
                    writer.write(encode_names_req())
                    data = await reader.read(_MAX_NAMES_REPLY)
                    while chunk := await reader.read(_MAX_NAMES_REPLY - len(data)):
                        data += chunk
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise DiscoveryError(
                f"cannot list names at the port mapper {epmd_host}:{self._port}: {_why(exc)}"
            ) from exc
        return decode_names_resp(data)[1]


async def kill_mapper(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> bool:
    """Ask the mapper at ``host:port`` to stop (``epmd -kill``).

    Returns True when it agreed (no node was registered), False when it
    refused because nodes are still registered.

    Raises:
        DiscoveryError: no mapper answered there.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(encode_kill_req())
                reply = await _read_reply(reader, decode_kill_resp)
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise DiscoveryError(f"no port mapper answers at {host}:{port} ({_why(exc)})") from exc
    if isinstance(reply, NeedData):
        raise DiscoveryError(f"the port mapper at {host}:{port} closed without answering")
    return reply


_T = TypeVar("_T")


async def _read_reply(reader: asyncio.StreamReader, decode: Callable[[bytes], _T]) -> _T:
    """Feed ``decode`` until it returns a reply; its NEED_DATA if the mapper closed first."""
    buf = b""
    while True:
        reply = decode(buf)
        if reply is not NEED_DATA:
            return reply
        chunk = await reader.read(4096)
        if not chunk:
            return reply
        buf += chunk


def _short_name(node_name: str) -> str:
    try:
        return split_node_name(node_name)[0]
    except NodeNameError as exc:
        raise DiscoveryError(f"EPMD cannot handle {node_name!r}: {exc}") from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
