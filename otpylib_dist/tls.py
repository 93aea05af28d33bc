"""Mutual TLS for node connections: the contexts a node uses.

The cookie handshake proves that a peer knows the cluster's secret, but on its
own it neither hides the traffic nor stops a man in the middle from relaying
it. Mutual TLS does both: every node holds a certificate signed by the
cluster's own certificate authority (CA), and a connection is accepted only if
*both* ends present one. The cookie handshake still runs inside the tunnel.

Identity model, and why host names are not checked by default: a node is
identified by its name in the cookie handshake, and a certificate only proves
"this peer belongs to the cluster" (it was signed by the cluster's CA). Node
hosts are often IP addresses, container names or NAT'd addresses that change
with every deployment and are rarely all in a certificate, so checking the
host name would break clusters without adding much. This is safe **only when
the CA is dedicated to the cluster**: never point ``ca_file`` at a public or
company-wide CA, or every certificate it ever signed becomes a cluster member.
Pass ``check_hostname=True`` when certificates do name the hosts and you want
the client to check them.

File layout read by ``mutual_tls_from_dir`` and written by ``generate_test_pki``
(``NAME`` is the node's short name, the part before ``@``)::

    DIR/ca.pem      the cluster CA certificate (trusted by every node)
    DIR/ca.key      the CA key (generate_test_pki only; keep it off the nodes)
    DIR/NAME.pem    the node's certificate, signed by the CA
    DIR/NAME.key    the node's private key (mode 0600)

``python -m otpylib_dist.tls DIR NAME [NAME...]`` writes such a directory (the
generator lives in ``pki.py``, apart from what a running node needs).
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "TlsConfig",
    "TlsError",
    "main",
    "mutual_tls",
    "mutual_tls_from_dir",
]

#: The CA certificate's file name in a TLS directory.
CA_CERT_FILE: Final = "ca.pem"
#: The CA private key's file name (written by ``generate_test_pki`` only).
CA_KEY_FILE: Final = "ca.key"
#: Oldest protocol accepted: TLS 1.0 and 1.1 are deprecated (RFC 8996).
_MIN_VERSION: Final = ssl.TLSVersion.TLSv1_2
#: Default certificate lifetime for generated test PKIs: long enough for a lab,
#: short enough that a forgotten test key is not valid for years.
_DEFAULT_DAYS: Final = 30
#: Start validity a little in the past so clocks a few minutes apart agree.
_CLOCK_SKEW: Final = datetime.timedelta(minutes=5)


class TlsError(DistError):
    """Raised when TLS contexts cannot be built: a missing or invalid file.

    The message names the file and says how to produce a valid one.
    """


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The two TLS contexts a node needs: one to accept, one to connect.

    A node is both server (peers connect to it) and client (it connects to
    peers), so it carries both; pass it as ``tls=`` to the node. Build it with
    ``mutual_tls`` or ``mutual_tls_from_dir`` rather than by hand, so both
    sides require and verify certificates.
    """

    #: Context for accepted connections; requires a client certificate.
    server: ssl.SSLContext = field(repr=False)
    #: Context for outgoing connections; presents our certificate and verifies
    #: the peer's against the cluster CA.
    client: ssl.SSLContext = field(repr=False)


def mutual_tls(
    ca_file: str | os.PathLike[str],
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    check_hostname: bool = False,
) -> TlsConfig:
    """Build mutual-TLS contexts trusting only ``ca_file``.

    Both contexts use TLS 1.2 or newer, present ``cert_file``/``key_file``,
    and require the peer to present a certificate signed by the CA in
    ``ca_file``; the system's default CAs are *not* trusted. See the module
    docstring for why host names are not checked by default.

    Args:
        ca_file: PEM file of the cluster's CA certificate(s).
        cert_file: PEM file of this node's certificate (may include a chain).
        key_file: PEM file of this node's private key, unencrypted.
        check_hostname: make the client check that the server's certificate
            names the host it dialled (the host part of the node name).

    Raises:
        TlsError: a file is missing or unreadable, or the key does not match
            the certificate.
    """
    ca, cert, key = Path(ca_file), Path(cert_file), Path(key_file)
    for path in (ca, cert, key):
        if not path.is_file():
            raise TlsError(
                f"TLS file {path} does not exist; for a test setup generate one with "
                f"`python -m otpylib_dist.tls {path.parent} NAME`"
            )
    _warn_if_key_is_open(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = _MIN_VERSION
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"cannot load the CA certificate {ca}: {exc}") from exc
        try:
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(
                f"cannot load certificate {cert} with key {key}: {exc}; check that both are "
                "PEM, that the key is unencrypted and that it belongs to the certificate"
            ) from exc
    client.check_hostname = check_hostname
    logger.debug("mutual TLS configured: ca=%s cert=%s", ca, cert)
    return TlsConfig(server=server, client=client)


def mutual_tls_from_dir(
    directory: str | os.PathLike[str],
    node_short_name: str,
    *,
    check_hostname: bool = False,
) -> TlsConfig:
    """Build mutual-TLS contexts from ``DIR/ca.pem``, ``DIR/NAME.pem``, ``DIR/NAME.key``.

    This is what ``otpy-node --tls-dir DIR`` uses. ``node_short_name`` may be
    given as a full ``name@host``; only the part before ``@`` names the files.

    Raises:
        TlsError: a file is missing or invalid (the message names it).
    """
    base = Path(directory)
    short = node_short_name.partition("@")[0]
    if not short or "/" in short or short.startswith("."):
        raise TlsError(f"{node_short_name!r} cannot name certificate files in {base}")
    return mutual_tls(
        base / CA_CERT_FILE,
        base / f"{short}.pem",
        base / f"{short}.key",
        check_hostname=check_hostname,
    )


def _warn_if_key_is_open(key: Path) -> None:
    try:
        mode = key.stat().st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "private key %s is accessible by group or others (mode %04o); run chmod 600 %s",
            key,
            stat.S_IMODE(mode),
            key,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m otpylib_dist.tls DIR NAME...``: see :func:`otpylib_dist.pki.main`."""
    from otpylib_dist.pki import main as pki_main

    return pki_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
