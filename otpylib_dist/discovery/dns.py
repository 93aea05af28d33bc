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
``otpylib_dist.protocol.dns_wire`` (re-exported here); this module only moves
its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
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
from otpylib_dist.protocol.dns_wire import (
    CLASS_IN,
    TYPE_A,
    TYPE_SRV,
    DnsProtocolError,
    DnsResponse,
    SrvRecord,
    decode_response,
    encode_name,
    encode_query,
)

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

#: Name of the Service port whose SRV records we read (``deploy/kubernetes``).
DEFAULT_PORT_NAME: Final = "otpy-dist"
#: Seconds between SRV polls when started: pods come and go on the scale of
#: seconds, and one small query per interval is nothing for cluster DNS.
_DEFAULT_POLL_INTERVAL: Final = 5.0


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
        self._resolve_failures: dict[str, str] = {}
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
        except (OSError, DnsProtocolError) as exc:
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

        When DNS did not answer (and no fixed port is set), returns ``None``
        too, logs one warning, and ``resolve_failure`` says why.
        """
        self._resolve_failures.pop(node_name, None)
        try:
            return await self._resolve(node_name, timeout)
        except DiscoveryError as exc:
            self._resolve_failures[node_name] = str(exc)
            logger.warning("cannot resolve %s: %s", node_name, exc)
            return None

    def resolve_failure(self, node_name: str) -> str | None:
        """Why the last ``resolve(node_name)`` found nothing, when DNS did not answer."""
        return self._resolve_failures.get(node_name)

    async def _resolve(self, node_name: str, timeout: float) -> tuple[str, int] | None:
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
            raise DiscoveryError(
                f"DNS did not answer for {node_name} within {timeout:g} s (nameserver "
                f"{self._server()[0]}:{self._server()[1]})"
            ) from None
        except socket.gaierror as exc:
            logger.debug("DNS: %s does not resolve: %s", host, exc)
            return None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return str(infos[0][4][0]), port
