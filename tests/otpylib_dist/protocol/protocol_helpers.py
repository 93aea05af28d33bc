"""Test helpers for the protocol core: two handshakes joined by a pretend wire.

Imported by basename (the test directory is on ``sys.path``, as pytest's
default import mode arranges), like ``cluster_procs`` in tests/cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otpylib_dist.protocol.errors import ProtocolError
from otpylib_dist.protocol.framing import NEED_DATA
from otpylib_dist.protocol.handshake import Established, Handshake, Hello, Role

COOKIE = "test-cookie"
NONCE_A = bytes(range(32))
NONCE_B = bytes(range(100, 132))

#: The I/O layer's decision on a Hello: None to accept, else a refusal reason.
Decide = Callable[[Hello], Any]


def make_pair(
    *,
    initiator_cookie: str = COOKIE,
    acceptor_cookie: str = COOKIE,
    now: float = 0.0,
    **kwargs: Any,
) -> tuple[Handshake, Handshake]:
    """An initiator ``a@host1`` dialing an acceptor ``b@host2``.

    ``kwargs`` prefixed ``i_`` / ``a_`` go to one side only.
    """
    i_kw = {k[2:]: v for k, v in kwargs.items() if k.startswith("i_")}
    a_kw = {k[2:]: v for k, v in kwargs.items() if k.startswith("a_")}
    i_kw.setdefault("expected_peer", "b@host2")
    initiator = Handshake(Role.INITIATOR, "a@host1", 1, initiator_cookie, NONCE_A, now, **i_kw)
    acceptor = Handshake(Role.ACCEPTOR, "b@host2", 2, acceptor_cookie, NONCE_B, now, **a_kw)
    return initiator, acceptor


class Side:
    """One end: its core, the events it produced, how it ended."""

    def __init__(self, hs: Handshake) -> None:
        self.hs = hs
        self.events: list[Any] = []
        self.error: ProtocolError | None = None
        self.refused: str | None = None  # what the I/O layer refused with

    @property
    def established(self) -> Established | None:
        found = [e for e in self.events if isinstance(e, Established)]
        return found[0] if found else None


class HandshakePair:
    """Runs an initiator and an acceptor against each other over a pretend wire.

    Every byte one side writes is fed to the other, ``chunk`` bytes at a
    time (1 = byte by byte), until both are done or nothing moves. Errors
    are recorded per side instead of raised, so a test can check both ends.
    """

    def __init__(
        self,
        initiator: Handshake,
        acceptor: Handshake,
        *,
        decide: Decide = lambda hello: None,
        chunk: int = 1 << 20,
        now: float = 0.0,
    ) -> None:
        self.initiator = Side(initiator)
        self.acceptor = Side(acceptor)
        self.decide = decide
        self.chunk = chunk
        self.now = now
        self.wire: list[tuple[str, bytes]] = []  # (sender, bytes) in order

    def run(self) -> HandshakePair:
        to_acceptor = self.initiator.hs.start()
        to_initiator = self.acceptor.hs.start()
        for _ in range(20):
            if not to_acceptor and not to_initiator:
                break
            if to_acceptor:
                self.wire.append(("initiator", to_acceptor))
            if to_initiator:
                self.wire.append(("acceptor", to_initiator))
            new_to_initiator = self._deliver(self.acceptor, to_acceptor)
            new_to_acceptor = self._deliver(self.initiator, to_initiator)
            to_acceptor, to_initiator = new_to_acceptor, new_to_initiator
        return self

    def _deliver(self, side: Side, data: bytes) -> bytes:
        hs = side.hs
        if side.error is not None or not data or side.established or side.refused:
            return b""
        out = b""
        try:
            for i in range(0, len(data), self.chunk):
                hs.receive_data(data[i : i + self.chunk])
                while (event := hs.next_event(self.now)) is not NEED_DATA:
                    side.events.append(event)
                    if isinstance(event, Hello):
                        refusal = self.decide(event)
                        if refusal is None:
                            out += hs.accept()
                        else:
                            side.refused = refusal
                            return out + hs.refuse(refusal)
                    if isinstance(event, Established):
                        return out + hs.data_to_send()
        except ProtocolError as exc:
            side.error = exc
        return out + hs.data_to_send()
