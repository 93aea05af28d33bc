"""TLS as a bytes-in, bytes-out layer (``ssl.MemoryBIO``): no sockets, any event loop.

Why not ``create_server(ssl=...)`` / ``loop.start_tls``: the event loop then
owns the TLS handshake, and a failed one is dropped silently (asyncio logs
it only in debug mode; uvloop never), so a node could not say who was
refused and why. uvloop also delivers the peer's first bytes before
``start_tls`` can take over the socket. Here the connection feeds received
bytes in, writes what comes out, and sees every failure as an exception.

Usage (the I/O layer)::

    tls = TlsLayer(context, server_side=False, server_hostname="host")
    write(tls.start())                 # the ClientHello (b"" on a server)
    on data:  plain = tls.receive(data)   # raises ssl.SSLError on failure
              write(tls.data_to_send())   # handshake replies, alerts
              if tls.established: ...use plain...
    to send:  tls.send(plain); write(tls.data_to_send())
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TlsLayer"]

_READ_CHUNK = 1 << 16


class TlsLayer:
    """One TLS session over a byte stream, driven by the caller.

    Args:
        context: a client or server ``ssl.SSLContext`` (see ``otpylib_dist.tls``).
        server_side: whether we accepted the connection.
        server_hostname: for a client, the name to check the peer's
            certificate against (when the context checks host names).
    """

    __slots__ = ("_incoming", "_object", "_outgoing", "established")

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname,
        )
        #: True once the TLS handshake has completed (certificates verified).
        self.established = False

    def start(self) -> bytes:
        """Begin the handshake; return the bytes to write (the client's hello)."""
        self._handshake()
        return self.data_to_send()

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the peer; return the application bytes they complete.

        Raises:
            ssl.SSLError: the handshake failed (bad certificate, not TLS, ...)
                or the stream is corrupt. Write :meth:`data_to_send` (an
                alert for the peer) before closing.
        """
        self._incoming.write(data)
        if not self.established and not self._handshake():
            return b""
        chunks = []
        while True:
            try:
                chunk = self._object.read(_READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer closed TLS cleanly
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt application bytes; collect them with :meth:`data_to_send`."""
        self._object.write(data)

    def data_to_send(self) -> bytes:
        """Remove and return the encrypted bytes to write to the socket."""
        return self._outgoing.read()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified certificate (``ssl.SSLSocket.getpeercert`` form)."""
        return self._object.getpeercert() if self.established else None

    def _handshake(self) -> bool:
        try:
            self._object.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True
