"""Discovery through an EPMD (Erlang Port Mapper Daemon), wire-compatible.

Where Erlang is installed, an ``epmd`` already runs on port 4369 of each host
and maps node *short* names to ports. otpylib nodes can use it the same way:
a node registers ``short -> port`` with the EPMD of its own host (ALIVE2) and
keeps that TCP connection open, since EPMD drops a registration when its
connection closes; to reach ``short@host`` a node asks the EPMD on ``host``
(PORT_PLEASE2).

The first half of this module is the wire format as pure functions over
bytes (no sockets, unit-tested on exact bytes); the second half,
``EpmdDiscovery``, only moves those bytes.

Wire summary (all integers big-endian). Every request is a 2-byte length and
the request bytes, whose first byte is the request code:

=================  ===========================================================
ALIVE2_REQ  120    port:2 node_type:1 protocol:1 highest:2 lowest:2
                   name_len:2 name extra_len:2 extra
ALIVE2_RESP 121    result:1 creation:2   (ALIVE2_X_RESP 118: creation:4)
PORT_PLEASE2 122   name
PORT2_RESP  119    result:1, then if result is 0: port:2 node_type:1
                   protocol:1 highest:2 lowest:2 name_len:2 name
                   extra_len:2 extra
NAMES_REQ   110    (nothing); reply: epmd_port:4 then text lines
                   ``name NAME at port PORT``, until EPMD closes
=================  ===========================================================

Differs from Erlang: our distribution protocol is not Erlang's, so we mark our
registrations with ``extra = b"otpylib"`` and ``resolve`` ignores names that
an Erlang node registered, rather than handing out a port that would then
fail the handshake. EPMD has no notifications, so this discovery sends no
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    DiscoveryError,
    _Subscribers,
)
from otpylib_dist.names import NodeNameError, split_node_name

logger = logging.getLogger(__name__)

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "EPMD_PORT",
    "NAMES_REQ",
    "NEED_DATA",
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
]

#: The port EPMD listens on unless told otherwise (IANA-registered).
EPMD_PORT: Final = 4369

#: Register a node (its connection then holds the registration): ``x``.
ALIVE2_REQ: Final = 120
#: Registration reply with a 16-bit creation (EPMD before OTP 23): ``y``.
ALIVE2_RESP: Final = 121
#: Registration reply with a 32-bit creation: ``v``.
ALIVE2_X_RESP: Final = 118
#: Ask for a node's port by short name: ``z``.
PORT_PLEASE2_REQ: Final = 122
#: Reply to PORT_PLEASE2_REQ: ``w``.
PORT2_RESP: Final = 119
#: List every registered name: ``n``.
NAMES_REQ: Final = 110

#: Node type of a visible node ('M'); 'H' (72) would be a hidden node.
NODE_TYPE_NORMAL: Final = 77
#: Transport protocol 0: TCP over IPv4.
PROTOCOL_TCP_IPV4: Final = 0
#: Distribution versions we announce. EPMD needs them to pick ALIVE2_X_RESP
#: (32-bit creation, sent when highest >= 6); they are not our protocol's own.
HIGHEST_VERSION: Final = 6
LOWEST_VERSION: Final = 5
#: Marks a registration as an otpylib node (the ``extra`` field).
OTPYLIB_EXTRA: Final = b"otpylib"
#: Longest name EPMD accepts (its MAXSYMLEN).
_MAX_NAME: Final = 255
#: Cap on a NAMES reply we buffer: ~40 bytes a line, so thousands of nodes.
_MAX_NAMES_REPLY: Final = 1 << 20


class _Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: Returned by decoders when the bytes so far are a valid prefix of a reply.
NEED_DATA: Final = _Need.NEED_DATA


class EpmdProtocolError(DiscoveryError):
    """Raised when EPMD's reply is malformed, or a request cannot be encoded.

    Seeing it from a real EPMD means something else listens on the port.
    """


@dataclass(frozen=True, slots=True)
class Alive2Reply:
    """EPMD's answer to a registration: ``result`` 0 means registered."""

    #: 0 on success; anything else is a refusal (usually: name taken).
    result: int
    #: EPMD's creation number for this incarnation of the name.
    creation: int


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """A registration as EPMD reports it in PORT2_RESP."""

    #: The registered short name.
    name: str
    #: Where the node's distribution listener is.
    port: int
    #: 77 for a visible node, 72 for a hidden one.
    node_type: int
    #: 0 for TCP over IPv4.
    protocol: int
    #: Range of Erlang distribution versions the node announced.
    highest_version: int
    lowest_version: int
    #: Free-form bytes; ``b"otpylib"`` marks our nodes.
    extra: bytes


@dataclass(frozen=True, slots=True)
class PortNotFound:
    """PORT2_RESP with a non-zero result: no node of that name is registered."""

    #: EPMD's non-zero result code.
    result: int


def _encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) > _MAX_NAME or b"@" in raw:
        raise EpmdProtocolError(
            f"EPMD name {name!r} must be 1-{_MAX_NAME} bytes without '@' (the short name)"
        )
    return raw


def _frame(request: bytes) -> bytes:
    return struct.pack(">H", len(request)) + request


def encode_alive2_req(
    name: str,
    port: int,
    *,
    node_type: int = NODE_TYPE_NORMAL,
    protocol: int = PROTOCOL_TCP_IPV4,
    highest_version: int = HIGHEST_VERSION,
    lowest_version: int = LOWEST_VERSION,
    extra: bytes = OTPYLIB_EXTRA,
) -> bytes:
    """Return the framed ALIVE2_REQ registering ``name`` (a short name) at ``port``."""
    raw = _encode_name(name)
    if not 0 < port < 65536:
        raise EpmdProtocolError(f"port {port} is not in 1..65535")
    body = struct.pack(
        ">BHBBHHH",
        ALIVE2_REQ,
        port,
        node_type,
        protocol,
        highest_version,
        lowest_version,
        len(raw),
    )
    return _frame(body + raw + struct.pack(">H", len(extra)) + extra)


def encode_port_please2_req(name: str) -> bytes:
    """Return the framed PORT_PLEASE2_REQ asking for ``name``'s port."""
    return _frame(bytes([PORT_PLEASE2_REQ]) + _encode_name(name))


def encode_names_req() -> bytes:
    """Return the framed NAMES_REQ asking for every registered name."""
    return _frame(bytes([NAMES_REQ]))


def decode_alive2_resp(buf: bytes) -> Alive2Reply | Literal[_Need.NEED_DATA]:
    """Decode ALIVE2_RESP or ALIVE2_X_RESP from the start of ``buf``.

    Raises:
        EpmdProtocolError: the first byte is neither reply code.
    """
    if not buf:
        return NEED_DATA
    code = buf[0]
    if code == ALIVE2_X_RESP:
        if len(buf) < 6:
            return NEED_DATA
        result, creation = struct.unpack_from(">BI", buf, 1)
    elif code == ALIVE2_RESP:
        if len(buf) < 4:
            return NEED_DATA
        result, creation = struct.unpack_from(">BH", buf, 1)
    else:
        raise EpmdProtocolError(f"expected an ALIVE2 reply (118 or 121), got code {code}")
    return Alive2Reply(result=result, creation=creation)


def decode_port2_resp(buf: bytes) -> NodeEntry | PortNotFound | Literal[_Need.NEED_DATA]:
    """Decode PORT2_RESP from the start of ``buf``.

    Raises:
        EpmdProtocolError: wrong reply code or a name that is not UTF-8.
    """
    if len(buf) < 2:
        if buf and buf[0] != PORT2_RESP:
            raise EpmdProtocolError(f"expected PORT2_RESP (119), got code {buf[0]}")
        return NEED_DATA
    if buf[0] != PORT2_RESP:
        raise EpmdProtocolError(f"expected PORT2_RESP (119), got code {buf[0]}")
    if buf[1] != 0:
        return PortNotFound(result=buf[1])
    fixed = ">HBBHHH"
    head = 2 + struct.calcsize(fixed)
    if len(buf) < head:
        return NEED_DATA
    port, node_type, protocol, highest, lowest, name_len = struct.unpack_from(fixed, buf, 2)
    if len(buf) < head + name_len + 2:
        return NEED_DATA
    raw_name = buf[head : head + name_len]
    (extra_len,) = struct.unpack_from(">H", buf, head + name_len)
    extra_at = head + name_len + 2
    if len(buf) < extra_at + extra_len:
        return NEED_DATA
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EpmdProtocolError(f"PORT2_RESP name {raw_name!r} is not UTF-8") from exc
    return NodeEntry(
        name=name,
        port=port,
        node_type=node_type,
        protocol=protocol,
        highest_version=highest,
        lowest_version=lowest,
        extra=bytes(buf[extra_at : extra_at + extra_len]),
    )


_NAMES_LINE: Final = re.compile(rb"^name (.+) at port (\d+)$")


def decode_names_resp(buf: bytes) -> tuple[int, dict[str, int]]:
    """Decode a complete NAMES reply (everything EPMD sent before closing).

    Returns:
        EPMD's own port and a mapping of registered short names to ports.
        Lines that do not match ``name NAME at port PORT`` are skipped.

    Raises:
        EpmdProtocolError: fewer than the 4 bytes of EPMD's port.
    """
    if len(buf) < 4:
        raise EpmdProtocolError(f"NAMES reply too short ({len(buf)} bytes, need 4)")
    (epmd_port,) = struct.unpack_from(">I", buf, 0)
    names: dict[str, int] = {}
    for line in buf[4:].split(b"\n"):
        match = _NAMES_LINE.match(line)
        if match is None:
            if line:
                logger.debug("EPMD NAMES: skipping line %r", line)
            continue
        names[match.group(1).decode("utf-8", "replace")] = int(match.group(2))
    return epmd_port, names


# --------------------------------------------------------------------- I/O


class EpmdDiscovery(_Subscribers):
    """Register with and resolve through EPMD, Erlang's port mapper.

    Use it where an ``epmd`` runs on every host (any machine with Erlang),
    when nodes should be found by name without multicast or a static list.

    Args:
        port: the port EPMD listens on (``epmd -port``), 4369 by default.
        host: ask this EPMD for every node, instead of the EPMD on each
            node's own host; also where ``start`` registers (default the
            loopback address, the local EPMD).
        register: whether ``start`` registers this node (``False`` for a
            client that only resolves).
        timeout: seconds to wait for EPMD to accept and answer a registration.
    """

    def __init__(
        self,
        *,
        port: int = EPMD_PORT,
        host: str | None = None,
        register: bool = True,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self._port = port
        self._host = host
        self._register = register
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        self._creation: int | None = None

    @property
    def creation(self) -> int | None:
        """EPMD's creation number for our registration, once registered."""
        return self._creation

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Register the node's short name and port with EPMD, and keep the registration.

        Raises:
            DiscoveryError: EPMD cannot be reached or refuses the name
                (usually because a node of that name is running).
        """
        if not self._register:
            return
        if self._writer is not None:
            raise DiscoveryError("EpmdDiscovery.start() called twice; call stop() first")
        short = _short_name(node_name)
        epmd_host = self._host or "127.0.0.1"
        request = encode_alive2_req(short, port)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(epmd_host, self._port)
                writer.write(request)
                reply = await _read_reply(reader, decode_alive2_resp)
        except BaseException as exc:
            if writer is not None:
                writer.close()
            if not isinstance(exc, OSError | TimeoutError):
                raise
            raise DiscoveryError(
                f"cannot register {node_name} with EPMD at {epmd_host}:{self._port}: "
                f"{_why(exc)}; start it (`epmd -daemon`) or choose another discovery"
            ) from exc
        if isinstance(reply, _Need):
            writer.close()
            raise DiscoveryError(f"EPMD at {epmd_host}:{self._port} closed without answering")
        if reply.result != 0:
            writer.close()
            raise DiscoveryError(
                f"EPMD at {epmd_host}:{self._port} refused to register {short!r} (result "
                f"{reply.result}): a node of that name is probably running; choose another name"
            )
        self._writer = writer
        self._creation = reply.creation
        self._watch = asyncio.get_running_loop().create_task(self._watch_registration(reader))
        logger.info("EPMD %s:%d: registered %s at port %d", epmd_host, self._port, short, port)

    async def _watch_registration(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(256):
                pass
        if self._writer is not None:
            logger.warning(
                "EPMD closed our registration connection; this node can no longer be found "
                "through EPMD until it restarts"
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
        """Ask the EPMD of ``node_name``'s host for its port (PORT_PLEASE2).

        Returns ``(host, port)`` with the host of the node name, or ``None``
        when the name is not registered or was registered by a non-otpylib
        (Erlang) node.

        Raises:
            DiscoveryError: EPMD cannot be reached or answered garbage.
        """
        short = _short_name(node_name)
        node_host = node_name.partition("@")[2]
        epmd_host = self._host or node_host
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
                f"cannot reach EPMD at {epmd_host}:{self._port} to resolve {node_name}: "
                f"{_why(exc)}; is epmd running on that host?"
            ) from exc
        if isinstance(entry, _Need):
            raise EpmdProtocolError(f"EPMD at {epmd_host}:{self._port} closed mid-reply")
        if isinstance(entry, PortNotFound):
            logger.debug("EPMD %s: %s is not registered", epmd_host, short)
            return None
        if not entry.extra.startswith(OTPYLIB_EXTRA):
            logger.warning(
                "EPMD %s: %r is registered by a node that is not otpylib (an Erlang node?); "
                "otpylib cannot talk to it",
                epmd_host,
                short,
            )
            return None
        return node_host, entry.port

    async def names(
        self, host: str | None = None, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> dict[str, int]:
        """Return every short name registered with the EPMD on ``host`` and its port.

        ``host`` defaults to the configured EPMD host, else loopback. Like
        ``net_adm:names/1``; Erlang nodes are listed too.

        Raises:
            DiscoveryError: EPMD cannot be reached or answered garbage.
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
                f"cannot list names at EPMD {epmd_host}:{self._port}: {_why(exc)}"
            ) from exc
        return decode_names_resp(data)[1]


_T = TypeVar("_T")


async def _read_reply(reader: asyncio.StreamReader, decode: Callable[[bytes], _T]) -> _T:
    """Feed ``decode`` until it returns a reply; its NEED_DATA if EPMD closed first."""
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
