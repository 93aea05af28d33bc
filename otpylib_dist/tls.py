"""Mutual TLS for node connections, and a small PKI generator for tests and labs.

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

``python -m otpylib_dist.tls DIR NAME [NAME...]`` writes such a directory.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import secrets
import ssl
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "GeneratedPki",
    "TlsConfig",
    "TlsError",
    "generate_test_pki",
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


# ------------------------------------------------------------------ test PKI


@dataclass(frozen=True, slots=True)
class GeneratedPki:
    """Where ``generate_test_pki`` wrote its files.

    Returned so tests and scripts need not rebuild the paths from the layout.
    """

    #: The CA certificate (``DIR/ca.pem``).
    ca_file: Path
    #: Node short name -> (certificate file, key file).
    nodes: dict[str, tuple[Path, Path]]

    def config(self, node_short_name: str, *, check_hostname: bool = False) -> TlsConfig:
        """Return ``mutual_tls`` contexts for one of the generated nodes."""
        cert, key = self.nodes[node_short_name]
        return mutual_tls(self.ca_file, cert, key, check_hostname=check_hostname)


def generate_test_pki(
    directory: str | os.PathLike[str],
    node_names: Sequence[str],
    *,
    days: int = _DEFAULT_DAYS,
) -> GeneratedPki:
    """Write a CA and one certificate per node into ``directory``.

    Meant for tests, demos and labs, not production (use your own CA there):
    keys are unencrypted ECDSA P-256 files with mode 0600. When ``ca.pem`` and
    ``ca.key`` already exist the CA is reused, so nodes can be added later.

    Each name is ``short`` or ``short@host``. A certificate's subject is the
    short name, and its subject alternative names are ``127.0.0.1``,
    ``localhost`` and, when given, ``host``, so ``check_hostname=True`` works
    on loopback and on the named host. Certificates can be both server and
    client, as every node is both.

    Raises:
        TlsError: a name cannot name a file, or only half of an existing CA
            (certificate without key) is present.
        ValueError: ``days`` is not positive.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - _CLOCK_SKEW, now + datetime.timedelta(days=days)
    ca_key, ca_cert = _load_or_make_ca(base, not_before, not_after)
    nodes: dict[str, tuple[Path, Path]] = {}
    for name in node_names:
        short, _, host = name.partition("@")
        if not short or "/" in short or short.startswith(".") or short == "ca":
            raise TlsError(f"{name!r} cannot name certificate files; use a node short name")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, short)]), ca_cert.subject)
            .public_key(key.public_key())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(_alt_names(host)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = base / f"{short}.pem", base / f"{short}.key"
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        nodes[short] = (cert_path, key_path)
        logger.info("wrote certificate %s for node %s", cert_path, name)
    return GeneratedPki(ca_file=base / CA_CERT_FILE, nodes=nodes)


def _load_or_make_ca(
    base: Path, not_before: datetime.datetime, not_after: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    cert_path, key_path = base / CA_CERT_FILE, base / CA_KEY_FILE
    if cert_path.exists() or key_path.exists():
        if not (cert_path.exists() and key_path.exists()):
            raise TlsError(
                f"{base} has only one of {CA_CERT_FILE} and {CA_KEY_FILE}; both are needed to "
                "sign new node certificates (or remove the one present to make a new CA)"
            )
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{key_path} is not an EC key written by generate_test_pki")
        return loaded, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otpylib test CA")])
    cert = (
        _builder(name, name)
        .public_key(key.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    logger.info("wrote test CA %s", cert_path)
    return key, cert


def _builder(subject: x509.Name, issuer: x509.Name) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(secrets.randbits(127) | 1)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(host: str) -> list[x509.GeneralName]:
    loopback = ipaddress.ip_address("127.0.0.1")
    names: list[x509.GeneralName] = [x509.IPAddress(loopback), x509.DNSName("localhost")]
    if host:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                names.append(x509.DNSName(host))
        else:
            if addr != loopback:
                names.append(x509.IPAddress(addr))
    return names


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start: never a moment where the key is readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m otpylib_dist.tls DIR NAME [NAME...] [--days N]``.

    Writes a test CA (reused if present) and one certificate per node into DIR
    and prints what it wrote, ready for ``otpy-node --tls-dir DIR``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m otpylib_dist.tls",
        description="Generate a test CA and node certificates for otpylib mutual TLS.",
    )
    parser.add_argument("directory", type=Path, help="where to write ca.pem, NAME.pem, NAME.key")
    parser.add_argument("names", nargs="+", metavar="NAME", help="node short name or NAME@HOST")
    parser.add_argument("--days", type=int, default=_DEFAULT_DAYS, help="validity in days")
    args = parser.parse_args(argv)
    try:
        pki = generate_test_pki(args.directory, args.names, days=args.days)
    except (TlsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"CA certificate: {pki.ca_file}")
    for short, (cert, key) in pki.nodes.items():
        print(f"node {short}: {cert} {key}")
    print(f"use: otpy-node --tls-dir {args.directory} ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
