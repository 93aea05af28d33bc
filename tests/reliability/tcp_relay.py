"""A TCP relay between two nodes that can delay, freeze one direction, or cut the link.

The dialing node connects to the relay's port instead of the peer's; every
byte then passes through here. Directions are named from the dialer:
``"out"`` (dialer to listener) and ``"back"``.

- :meth:`Relay.freeze` holds a direction's bytes (a partition: TCP would
  retransmit them once it heals); :meth:`Relay.thaw` delivers them.
- :meth:`Relay.blackhole` freezes both directions and also hides closes: a
  side that gives up and closes is not seen by the other (one side
  noticed the partition, the other did not).
- :meth:`Relay.cut` resets every relayed connection at once.
- ``delay`` holds every chunk that long before forwarding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

DIRECTIONS = ("out", "back")


@dataclass
class _Pipe:
    """One direction of one relayed connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    held: list[bytes] = field(default_factory=list)
    bytes: int = 0


class Relay:
    """Relay 127.0.0.1:<port> to 127.0.0.1:<target>; start with ``await Relay.start(target)``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.delay = 0.0
        self.frozen: set[str] = set()
        self.hide_closes = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()

    @classmethod
    async def start(cls, target: int) -> Relay:
        relay = cls(target)
        relay._server = await asyncio.start_server(relay._accept, "127.0.0.1", 0)
        relay.port = relay._server.sockets[0].getsockname()[1]
        return relay

    def freeze(self, *directions: str) -> None:
        """Hold the bytes of these directions (both when none given)."""
        self.frozen.update(directions or DIRECTIONS)
        self._thawed.clear()

    def thaw(self) -> None:
        """Deliver what was held, in order, and let bytes flow again."""
        self.frozen.clear()
        self.hide_closes = False
        self._thawed.set()

    def blackhole(self) -> None:
        """Freeze both directions and keep a side's close from reaching the other."""
        self.hide_closes = True
        self.freeze()

    def cut(self) -> None:
        """Reset every relayed connection (RST to both nodes)."""
        for a, b in self._links:
            for w in (a, b):
                _reset(w)
        self._links.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            _reset(writer)
            return
        self._links.append((writer, up_writer))
        for name, src, dst in (("out", reader, up_writer), ("back", up_reader, writer)):
            task = asyncio.ensure_future(self._pump(name, src, dst, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        name: str,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *ends: asyncio.StreamWriter,
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                while name in self.frozen:
                    await self._thawed.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        while self.hide_closes:  # the other side must not learn of it
            await self._thawed.wait()
        for w in ends:
            _reset(w)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a cut cable plus a reboot would look."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
