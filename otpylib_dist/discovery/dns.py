"""Discovery through DNS, shaped for Kubernetes headless services.

A StatefulSet behind a *headless* Service (``clusterIP: None``) gives every
pod a stable DNS name and publishes the set in DNS:

- ``otpy-0.otpy.ns.svc.cluster.local`` -> A record, the pod's IP address;
- ``_otpy-dist._tcp.otpy.ns.svc.cluster.local`` -> one SRV record per pod,
  ``(priority, weight, port, target=otpy-0.otpy.ns.svc.cluster.local)``,
  where ``otpy-dist`` is the *name* of the Service's port.

Name mapping: a node is called ``<short>@<pod DNS name>``, and ``<short>`` is
by default the first label of the pod's name, i.e. the pod name, as in
``otpy-0@otpy-0.otpy.ns.svc.cluster.local`` (``deploy/kubernetes``). Give
``node_short_name`` when every node uses the same short name instead.

``resolve`` takes the port from the SRV record whose target is the node's
host (or the fixed ``port``) and the address from the A records, through the
system resolver (``loop.getaddrinfo``). When started, the discovery also
polls the SRV records and reports pods joining and leaving the set as
``NodeAppeared`` / ``NodeDisappeared``, which lets a StatefulSet form a full
mesh on its own.

The SRV query is made here, over UDP (TCP when the answer is truncated),
because the standard library can only look up addresses. Its wire format is
the first half of this module: pure functions over bytes (RFC 1035, RFC 2782
for SRV, RFC 6891 for the EDNS(0) record that allows answers over 512 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    DiscoveryError,
    NodeAppeared,
    NodeDisappeared,
    _Subscribers,
)
from otpylib_dist.names import NodeNameError, split_node_name

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_IN",
    "DEFAULT_PORT_NAME",
    "TYPE_A",
    "TYPE_SRV",
    "DnsDiscovery",
    "DnsProtocolError",
    "DnsResponse",
    "SrvRecord",
    "decode_response",
    "encode_name",
    "encode_query",
    "query_srv",
    "system_nameserver",
]

#: Record type of an IPv4 address.
TYPE_A: Final = 1
#: Record type of a service location (RFC 2782).
TYPE_SRV: Final = 33
_TYPE_OPT: Final = 41
#: The Internet class, the only one we ask for.
CLASS_IN: Final = 1

#: Name of the Service port whose SRV records we read (``deploy/kubernetes``).
DEFAULT_PORT_NAME: Final = "otpy-dist"
#: UDP payload size we advertise with EDNS(0): the DNS Flag Day 2020 value,
#: which avoids IP fragmentation on any path; bigger answers come over TCP.
_EDNS_PAYLOAD: Final = 1232
#: Largest UDP datagram we accept (EDNS allows servers up to 64 KiB).
_MAX_UDP: Final = 65535
#: Pointer hops allowed while decoding one name: more means a loop.
_MAX_POINTER_HOPS: Final = 64
#: Seconds between SRV polls when started: pods come and go on the scale of
#: seconds, and one small query per interval is nothing for cluster DNS.
_DEFAULT_POLL_INTERVAL: Final = 5.0

_HEADER: Final = struct.Struct(">HHHHHH")
_RR_FIXED: Final = struct.Struct(">HHIH")
_FLAG_QR: Final = 0x8000
_FLAG_TC: Final = 0x0200
_FLAG_RD: Final = 0x0100


class DnsProtocolError(DiscoveryError):
    """Raised for a malformed DNS message, or a name that cannot be encoded."""


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV record: a service instance at ``target:port`` (RFC 2782)."""

    #: Lower is preferred.
    priority: int
    #: Share among records of equal priority.
    weight: int
    #: Where the instance listens.
    port: int
    #: Host name of the instance, lower case, without the trailing dot.
    target: str


@dataclass(frozen=True, slots=True)
class DnsResponse:
    """What we need from a DNS reply: its status and its SRV and A records."""

    #: Echo of the query's id.
    query_id: int
    #: Response code: 0 no error, 3 NXDOMAIN (no such name), others failures.
    rcode: int
    #: The server cut the answer to fit UDP; ask again over TCP.
    truncated: bool
    #: SRV records of the answer section.
    srv: tuple[SrvRecord, ...]
    #: A records from any section: (lower-case name, IPv4 address). Servers
    #: often add the targets' addresses to the additional section.
    addresses: tuple[tuple[str, str], ...]


def encode_name(name: str) -> bytes:
    """Encode a domain name as DNS labels (no compression).

    Raises:
        DnsProtocolError: an empty or over-long label, a non-ASCII name, or a
            name over 255 bytes.
    """
    out = bytearray()
    text = name.rstrip(".")
    if text:
        for label in text.split("."):
            try:
                raw = label.encode("ascii")
            except UnicodeEncodeError as exc:
                raise DnsProtocolError(f"DNS name {name!r} is not ASCII") from exc
            if not 0 < len(raw) <= 63:
                raise DnsProtocolError(f"DNS name {name!r} has an empty or >63-byte label")
            out += bytes([len(raw)]) + raw
    out += b"\0"
    if len(out) > 255:
        raise DnsProtocolError(f"DNS name {name!r} is longer than 255 bytes")
    return bytes(out)


def encode_query(
    query_id: int, name: str, qtype: int = TYPE_SRV, *, edns_payload: int | None = _EDNS_PAYLOAD
) -> bytes:
    """Return a recursive DNS query for ``name``/``qtype`` (class IN).

    With ``edns_payload`` an EDNS(0) OPT record advertises that UDP size, so
    answers listing many pods need not fall back to TCP.
    """
    header = _HEADER.pack(query_id & 0xFFFF, _FLAG_RD, 1, 0, 0, 1 if edns_payload else 0)
    question = encode_name(name) + struct.pack(">HH", qtype, CLASS_IN)
    opt = b""
    if edns_payload:
        opt = b"\0" + _RR_FIXED.pack(_TYPE_OPT, edns_payload, 0, 0)
    return header + question + opt


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode the (possibly compressed) name at ``offset``; return it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    total = 0
    while True:
        if offset >= len(msg):
            raise DnsProtocolError("DNS name runs past the end of the message")
        length = msg[offset]
        kind = length & 0xC0
        if kind == 0xC0:
            if offset + 1 >= len(msg):
                raise DnsProtocolError("DNS name pointer runs past the end of the message")
            hops += 1
            if hops > _MAX_POINTER_HOPS:
                raise DnsProtocolError("DNS name compression loops")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        if kind:
            raise DnsProtocolError(f"unsupported DNS label type 0x{kind:02x}")
        offset += 1
        if length == 0:
            break
        label = msg[offset : offset + length]
        if len(label) < length:
            raise DnsProtocolError("DNS label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise DnsProtocolError("DNS name longer than 255 bytes")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels), end if end is not None else offset


def decode_response(msg: bytes) -> DnsResponse:
    """Decode a DNS reply, keeping SRV answers and A records.

    Raises:
        DnsProtocolError: the message is not a reply or is malformed.
    """
    if len(msg) < _HEADER.size:
        raise DnsProtocolError(f"DNS message too short ({len(msg)} bytes)")
    query_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(msg)
    if not flags & _FLAG_QR:
        raise DnsProtocolError("DNS message is a query, not a response")
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = _decode_name(msg, offset)
        offset += 4
    srv: list[SrvRecord] = []
    addresses: list[tuple[str, str]] = []
    for index in range(ancount + nscount + arcount):
        name, offset = _decode_name(msg, offset)
        if offset + _RR_FIXED.size > len(msg):
            raise DnsProtocolError("DNS record header runs past the end of the message")
        rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(msg, offset)
        offset += _RR_FIXED.size
        rdata_end = offset + rdlength
        if rdata_end > len(msg):
            raise DnsProtocolError("DNS record data runs past the end of the message")
        if rtype == TYPE_SRV and rclass == CLASS_IN and index < ancount:
            if rdlength < 7:
                raise DnsProtocolError("SRV record too short")
            priority, weight, port = struct.unpack_from(">HHH", msg, offset)
            target, target_end = _decode_name(msg, offset + 6)
            if target_end > rdata_end:
                raise DnsProtocolError("SRV target runs past its record")
            srv.append(SrvRecord(priority, weight, port, target))
        elif rtype == TYPE_A and rclass == CLASS_IN:
            if rdlength != 4:
                raise DnsProtocolError(f"A record of {rdlength} bytes, expected 4")
            addresses.append((name, socket.inet_ntoa(msg[offset:rdata_end])))
        offset = rdata_end
    return DnsResponse(
        query_id=query_id,
        rcode=flags & 0x000F,
        truncated=bool(flags & _FLAG_TC),
        srv=tuple(srv),
        addresses=tuple(addresses),
    )


# --------------------------------------------------------------------- I/O


def system_nameserver(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, int]:
    """Return the first ``nameserver`` of ``resolv.conf`` as ``(address, 53)``.

    In a Kubernetes pod this is the cluster DNS service.

    Raises:
        DiscoveryError: the file is missing or names no nameserver.
    """
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError as exc:
        raise DiscoveryError(
            f"cannot read {resolv_conf} to find a DNS server: {exc.strerror}; pass nameserver="
        ) from exc
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1], 53
    raise DiscoveryError(f"{resolv_conf} names no nameserver; pass nameserver=")


class _UdpReply(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # The socket is connected, so the kernel already dropped other sources.
        ours = len(data) >= 2 and struct.unpack_from(">H", data)[0] == self.query_id
        if ours and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def query_srv(name: str, nameserver: tuple[str, int], timeout: float) -> DnsResponse:
    """Ask ``nameserver`` for the SRV records of ``name``: UDP, then TCP if truncated.

    The UDP query is sent twice within ``timeout`` (a lost datagram is the
    usual failure), and replies with the wrong id or source are ignored.

    Raises:
        DiscoveryError: no answer within ``timeout``, or a malformed answer.
        OSError: the server cannot be reached (e.g. TCP connection refused).
    """
    query_id = secrets.randbits(16)
    query = encode_query(query_id, name)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _UdpReply(query_id), remote_addr=nameserver
            )
            try:
                transport.sendto(query)
                done, _ = await asyncio.wait([proto.reply], timeout=timeout / 2)
                if not done:
                    transport.sendto(query)
                data = await proto.reply
            finally:
                transport.close()
            response = decode_response(data)
            if response.truncated:
                logger.debug("DNS: answer for %s truncated, asking over TCP", name)
                response = await _query_tcp(query, nameserver)
    except TimeoutError as exc:
        raise DiscoveryError(
            f"DNS server {nameserver[0]}:{nameserver[1]} did not answer for {name} within "
            f"{timeout:.1f} s"
        ) from exc
    if response.query_id != query_id:
        raise DnsProtocolError("DNS answer has the wrong query id")
    return response


async def _query_tcp(query: bytes, nameserver: tuple[str, int]) -> DnsResponse:
    reader, writer = await asyncio.open_connection(*nameserver)
    try:
        writer.write(struct.pack(">H", len(query)) + query)
        (length,) = struct.unpack(">H", await reader.readexactly(2))
        return decode_response(await reader.readexactly(length))
    except asyncio.IncompleteReadError as exc:
        raise DnsProtocolError("DNS server closed the TCP connection mid-answer") from exc
    finally:
        writer.close()


class DnsDiscovery(_Subscribers):
    """Find nodes from the DNS records of a (Kubernetes headless) service.

    Args:
        service: the service's DNS name, e.g. ``otpy.ns.svc.cluster.local``.
        port_name: the name of the service port; SRV records are read from
            ``_<port_name>._tcp.<service>``.
        port: a fixed port to use when SRV records are missing (a Service
            port without a name has none) or do not list the node yet.
        node_short_name: the short name every node uses; default: each
            pod's own name (the first label of its DNS name).
        nameserver: ``(address, port)`` of the DNS server; default the first
            ``nameserver`` of ``/etc/resolv.conf``.
        poll_interval: seconds between SRV polls after ``start`` (0: never
            poll, resolve only).
        timeout: seconds for one DNS query while polling.
    """

    def __init__(
        self,
        service: str,
        *,
        port_name: str = DEFAULT_PORT_NAME,
        port: int | None = None,
        node_short_name: str | None = None,
        nameserver: tuple[str, int] | None = None,
        poll_interval: float = _DEFAULT_POLL_INTERVAL,
        timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self._service = service.rstrip(".").lower()
        self._srv_name = f"_{port_name}._tcp.{self._service}"
        encode_name(self._srv_name)
        self._port = port
        self._short = node_short_name
        self._nameserver = nameserver
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._self: str | None = None
        self._poller: asyncio.Task[None] | None = None
        self._members: dict[str, tuple[str, int]] = {}

    @property
    def srv_name(self) -> str:
        """The DNS name whose SRV records list the nodes."""
        return self._srv_name

    def _server(self) -> tuple[str, int]:
        if self._nameserver is None:
            self._nameserver = system_nameserver()
        return self._nameserver

    def node_name_for(self, target: str) -> str | None:
        """Return the node name of the pod at DNS name ``target``, or None if invalid."""
        host = target.rstrip(".").lower()
        short = self._short if self._short is not None else host.partition(".")[0]
        try:
            split_node_name(f"{short}@{host}")
        except NodeNameError:
            return None
        return f"{short}@{host}"

    async def members(self, timeout: float | None = None) -> dict[str, tuple[str, int]]:
        """Ask DNS for every node in the service now: node name -> (host, port).

        Raises:
            DiscoveryError: DNS did not answer, or answered with an error
                other than "no such name" (which gives an empty mapping).
        """
        return self._members_from(await self._ask(timeout))

    async def _ask(self, timeout: float | None = None) -> DnsResponse | None:
        """The SRV answer, or None for NXDOMAIN."""
        wait = self._timeout if timeout is None else timeout
        try:
            response = await query_srv(self._srv_name, self._server(), wait)
        except OSError as exc:
            raise DiscoveryError(f"cannot query DNS for {self._srv_name}: {exc}") from exc
        if response.rcode == 3:
            return None
        if response.rcode != 0:
            raise DiscoveryError(
                f"DNS server answered {self._srv_name} with error code {response.rcode}"
            )
        return response

    def _members_from(self, response: DnsResponse | None) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        if response is not None:
            for record in sorted(response.srv, key=lambda r: (r.priority, -r.weight)):
                node = self.node_name_for(record.target)
                if node is not None and node not in found:
                    found[node] = (record.target, record.port)
        return found

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Remember who we are and start polling DNS for peers (DNS needs no announcement)."""
        self._self = node_name
        if self._poll_interval > 0 and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        self._members.clear()

    async def _poll(self) -> None:
        failing = False
        while True:
            try:
                current = await self.members()
            except DiscoveryError as exc:
                log = logger.debug if failing else logger.warning
                log("DNS discovery: %s; retrying every %.0f s", exc, self._poll_interval)
                failing = True
            else:
                failing = False
                self._update(current)
            await asyncio.sleep(self._poll_interval)

    def _update(self, current: dict[str, tuple[str, int]]) -> None:
        current = {node: addr for node, addr in current.items() if node != self._self}
        for node in [n for n in self._members if n not in current]:
            del self._members[node]
            self._emit(NodeDisappeared(node))
        for node, addr in current.items():
            if self._members.get(node) != addr:
                self._members[node] = addr
                self._emit(NodeAppeared(node, *addr))

    async def resolve(
        self, node_name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> tuple[str, int] | None:
        """Return ``(ip, port)``: the port from SRV (or the fixed port), the IP from A records.

        A records that came with the SRV answer are used directly; otherwise
        the host is looked up with the system resolver (``getaddrinfo``).
        Returns ``None`` when the node is not listed and no fixed port is set,
        or when its host name does not resolve.

        Raises:
            DiscoveryError: the node name is invalid, or DNS did not answer
                and no fixed port is set.
        """
        try:
            _, host = split_node_name(node_name)
        except NodeNameError as exc:
            raise DiscoveryError(f"cannot resolve {node_name!r}: {exc}") from exc
        host = host.rstrip(".").lower()
        port = self._port
        try:
            async with asyncio.timeout(timeout):
                try:
                    response = await self._ask(timeout)
                except DiscoveryError:
                    if port is None:
                        raise
                    response = None
                members = self._members_from(response)
                listed = members.get(node_name) or next(
                    (addr for addr in members.values() if addr[0] == host), None
                )
                if listed is not None:
                    port = listed[1]
                if port is None:
                    logger.debug(
                        "DNS: %s is not in the SRV records of %s", node_name, self._srv_name
                    )
                    return None
                if response is not None:
                    for name, address in response.addresses:
                        if name == host:
                            return address, port
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            return None
        except socket.gaierror as exc:
            logger.debug("DNS: %s does not resolve: %s", host, exc)
            return None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return str(infos[0][4][0]), port
