"""A tiny DNS responder for tests: SRV and A answers, on 127.0.0.1 only.

Written independently of ``otpylib_dist.discovery.dns`` (its own encoder), so
the tests check our decoder against bytes we did not produce with it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field


def name_bytes(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 30) -> bytes:
    return name + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def build_response(
    query: bytes,
    srv: list[tuple[int, int, int, str]],
    a_records: dict[str, str],
    *,
    rcode: int = 0,
    truncated: bool = False,
) -> bytes:
    """Answer ``query`` with SRV records (priority, weight, port, target) and A records.

    SRV owner names point back at the question (compression, offset 12); A
    records go to the additional section, as cluster DNS does.
    """
    qid = struct.unpack_from(">H", query)[0]
    end = 12
    while query[end]:
        end += query[end] + 1
    question = query[12 : end + 5]
    answers = b"".join(
        rr(b"\xc0\x0c", 33, struct.pack(">HHH", p, w, port) + name_bytes(target))
        for p, w, port, target in srv
    )
    additional = b"".join(
        rr(name_bytes(host), 1, socket.inet_aton(ip)) for host, ip in a_records.items()
    )
    flags = 0x8180 | rcode | (0x0200 if truncated else 0)
    header = struct.pack(">HHHHHH", qid, flags, 1, len(srv), 0, len(a_records))
    return header + question + answers + additional


@dataclass
class FakeDns:
    """Serves ``srv``/``a_records`` over UDP (and TCP) on 127.0.0.1:``port``."""

    srv: list[tuple[int, int, int, str]] = field(default_factory=list)
    a_records: dict[str, str] = field(default_factory=dict)
    rcode: int = 0
    #: Set the TC bit on UDP answers, so clients must ask again over TCP.
    truncate_udp: bool = False
    #: Do not answer at all (a dead server).
    silent: bool = False
    port: int = 0
    queries: list[bytes] = field(default_factory=list)
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.Server | None = None

    def answer(self, query: bytes, *, udp: bool) -> bytes:
        self.queries.append(query)
        return build_response(
            query,
            self.srv,
            self.a_records,
            rcode=self.rcode,
            truncated=udp and self.truncate_udp,
        )

    async def __aenter__(self) -> FakeDns:
        loop = asyncio.get_running_loop()
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if not fake.silent:
                    self.transport.sendto(fake.answer(data, udp=True), addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            (length,) = struct.unpack(">H", await reader.readexactly(2))
            reply = fake.answer(await reader.readexactly(length), udp=False)
            writer.write(struct.pack(">H", len(reply)) + reply)
            await writer.drain()
            writer.close()

        # UDP and TCP on the same port number; retry if the TCP port is taken.
        for _ in range(20):
            transport, _proto = await loop.create_datagram_endpoint(
                Udp, local_addr=("127.0.0.1", 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(tcp, "127.0.0.1", port)
            except OSError:
                transport.close()
                continue
            self._udp, self.port = transport, port
            return self
        raise RuntimeError("no free loopback port for the fake DNS server")

    async def __aexit__(self, *exc: object) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port
