"""Whether mDNS can work on loopback here, and what goes over it: shared by the discovery
and CLI tests.

mDNS tests run on the loopback interface only (``interfaces=["127.0.0.1"]``).
That needs ``lo`` to carry multicast, which ``scripts/netns-run`` arranges in
its private network namespace; elsewhere the tests skip, naming what is
missing, instead of waiting for packets that never come.

Imported by basename: pytest puts this directory on ``sys.path`` for the
tests beside it, and ``tests/cli/conftest.py`` adds it for the CLI tests.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time

__all__ = ["group_listener", "loopback_multicast_problem", "wait_for_responses"]

#: The mDNS group; the probe uses it on an ephemeral port, not 5353.
_GROUP = "224.0.0.251"
#: IFF_MULTICAST from <linux/if.h>.
_IFF_MULTICAST = 0x1000
#: SIOCGIFFLAGS from <linux/sockios.h>.
_SIOCGIFFLAGS = 0x8913


def _loopback_flags() -> int | None:
    """Flags of ``lo`` in this network namespace (SIOCGIFFLAGS), None if unknown.

    Not read from /sys/class/net: sysfs may belong to another namespace.
    """
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
    except (ImportError, OSError):
        return None
    return int(struct.unpack_from("16sH", reply)[1])


def loopback_multicast_problem() -> str | None:
    """Return why multicast on loopback cannot work here, or None if it does."""
    flags = _loopback_flags()
    if flags is not None and not flags & _IFF_MULTICAST:
        return (
            "the loopback interface has no MULTICAST flag; run the tests through "
            "scripts/netns-run (it sets `ip link set lo multicast on` in a private namespace)"
        )
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.bind(("", 0))
            port = rx.getsockname()[1]
            membership = struct.pack(
                "4s4s", socket.inet_aton(_GROUP), socket.inet_aton("127.0.0.1")
            )
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            rx.settimeout(2.0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            tx.sendto(b"otpylib-probe", (_GROUP, port))
            data = rx.recv(64)
    except OSError as exc:
        return f"multicast on loopback is not available here: {exc}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mdns:
            # As zeroconf binds it: shared with any other responder on the host.
            mdns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                mdns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            mdns.bind(("", 5353))
    except OSError as exc:
        return f"UDP port 5353 (mDNS) cannot be shared here: {exc}"
    if data != b"otpylib-probe":
        return "multicast on loopback delivered an unexpected datagram"
    return None


def group_listener() -> socket.socket:
    """A socket that receives what is multicast to the mDNS group on loopback, and only that.

    Bound to the group address itself, so unicast answers to port 5353 never reach it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((_GROUP, 5353))
    membership = struct.pack("4s4s", socket.inet_aton(_GROUP), socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setblocking(False)
    return sock


def wait_for_responses(
    sock: socket.socket, label: bytes, count: int, timeout: float
) -> list[bytes]:
    """Read ``sock`` until ``count`` mDNS responses naming ``label`` have come; return them.

    Blocks (from an event loop, call it through ``asyncio.to_thread``).

    Raises:
        AssertionError: fewer came within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    found: list[bytes] = []
    while len(found) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"{len(found)} of {count} mDNS responses naming {label.decode()} within {timeout} s"
            )
        select.select([sock], [], [], left)
        with contextlib.suppress(BlockingIOError):
            while True:
                packet = sock.recv(9000)
                if packet[2] & 0x80 and label in packet:  # QR bit: a response
                    found.append(packet)
    return found
