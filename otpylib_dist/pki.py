"""A small PKI generator for tests, demos and labs (not for production).

Writes the directory layout ``otpylib_dist.tls.mutual_tls_from_dir`` reads: a
cluster CA and one certificate per node. Kept apart from ``tls.py`` so a
running node imports only what it needs to make its TLS contexts.
``python -m otpylib_dist.tls DIR NAME [NAME...]`` (or ``-m otpylib_dist.pki``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otpylib_dist.tls import CA_CERT_FILE, CA_KEY_FILE, TlsConfig, TlsError, mutual_tls

logger = logging.getLogger(__name__)

__all__ = ["GeneratedPki", "generate_test_pki", "main"]

#: Default certificate lifetime for generated test PKIs: long enough for a lab,
#: short enough that a forgotten test key is not valid for years.
_DEFAULT_DAYS: Final = 30
#: Start validity a little in the past so clocks a few minutes apart agree.
_CLOCK_SKEW: Final = datetime.timedelta(minutes=5)


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
