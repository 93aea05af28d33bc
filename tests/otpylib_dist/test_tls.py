"""Mutual TLS: real handshakes on loopback between contexts built from a generated PKI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otpylib_dist.pki import GeneratedPki, generate_test_pki
from otpylib_dist.tls import (
    TlsConfig,
    TlsError,
    main,
    mutual_tls,
    mutual_tls_from_dir,
)

#: Generous: a handshake on loopback takes milliseconds; this only stops a hang.
DEADLINE = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPki:
    return generate_test_pki(
        tmp_path_factory.mktemp("pki"), ["alpha", "beta@127.0.0.1", "gamma@node-3.example"]
    )


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPki:
    return generate_test_pki(tmp_path_factory.mktemp("other-pki"), ["mallory"])


class Server:
    """A TLS echo-of-identity server on 127.0.0.1: tells the client its cert's CN."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, object]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Called only after a successful handshake.
        peer = writer.get_extra_info("peercert")
        self.accepted.append(peer)
        subject = dict(item[0] for item in peer["subject"])
        writer.write(f"hello {subject['commonName']}\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def server(pki: GeneratedPki) -> AsyncIterator[Server]:
    srv = Server()
    tcp = await asyncio.start_server(srv.handle, "127.0.0.1", 0, ssl=pki.config("alpha").server)
    srv.port = tcp.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        tcp.close()
        await tcp.wait_closed()


async def _talk(port: int, client: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname=server_hostname
    )
    try:
        peer = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in peer["subject"])
        assert subject["commonName"] == "alpha"
        return await reader.readline()
    finally:
        writer.close()
        # The server may have refused us after the handshake (TLS 1.3).
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_mutual_handshake_succeeds_and_both_sides_see_the_peer(
    server: Server, pki: GeneratedPki
) -> None:
    line = await asyncio.wait_for(_talk(server.port, pki.config("beta").client), DEADLINE)
    assert line == b"hello beta\n"
    assert len(server.accepted) == 1


async def test_hostname_checking_accepts_a_host_named_in_the_certificate(
    server: Server, pki: GeneratedPki
) -> None:
    client = pki.config("beta", check_hostname=True).client
    assert client.check_hostname
    line = await asyncio.wait_for(_talk(server.port, client, "localhost"), DEADLINE)
    assert line == b"hello beta\n"


async def test_hostname_checking_refuses_a_host_not_in_the_certificate(
    server: Server, pki: GeneratedPki
) -> None:
    client = pki.config("beta", check_hostname=True).client
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await asyncio.wait_for(_talk(server.port, client, "node-3.example"), DEADLINE)


async def _assert_refused(port: int, client: ssl.SSLContext, server: Server) -> None:
    """The handshake fails, or (TLS 1.3) the server drops us before any data."""

    async def attempt() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        try:
            return await reader.read()
        finally:
            writer.close()

    try:
        data = await asyncio.wait_for(attempt(), DEADLINE)
    except (ssl.SSLError, ConnectionError):
        data = b""
    assert data == b""
    assert server.accepted == []


def _client_context(ca_file: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


async def test_client_with_a_certificate_from_another_ca_is_refused(
    server: Server, pki: GeneratedPki, other_pki: GeneratedPki
) -> None:
    # Trusts our CA (so it would accept the server) but presents a foreign cert.
    client = _client_context(pki.ca_file, other_pki.nodes["mallory"])
    await _assert_refused(server.port, client, server)


async def test_client_without_a_certificate_is_refused(server: Server, pki: GeneratedPki) -> None:
    client = _client_context(pki.ca_file, None)
    await _assert_refused(server.port, client, server)


async def test_client_refuses_a_server_from_another_ca(
    server: Server, other_pki: GeneratedPki
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncio.wait_for(_talk(server.port, other_pki.config("mallory").client), DEADLINE)
    assert server.accepted == []


def test_contexts_require_tls12_and_peer_certificates(pki: GeneratedPki) -> None:
    config = pki.config("alpha")
    assert isinstance(config, TlsConfig)
    for ctx in (config.server, config.client):
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert not config.client.check_hostname


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_generated_keys_are_private(pki: GeneratedPki) -> None:
    for _cert, key in pki.nodes.values():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((pki.ca_file.parent / "ca.key").stat().st_mode) == 0o600


def test_generated_certificates_name_loopback_and_the_node_host(pki: GeneratedPki) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pki.nodes["gamma"][0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "node-3.example"}
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_from_dir_uses_the_documented_layout(pki: GeneratedPki) -> None:
    config = mutual_tls_from_dir(pki.ca_file.parent, "beta@127.0.0.1")
    assert config.server.verify_mode == ssl.CERT_REQUIRED


def test_from_dir_names_the_missing_file(tmp_path: Path) -> None:
    generate_test_pki(tmp_path, ["alpha"])
    missing = tmp_path / "zeta.pem"
    with pytest.raises(TlsError, match=rf"^TLS file {missing} does not exist; "):
        mutual_tls_from_dir(tmp_path, "zeta")


def test_key_not_matching_the_certificate_is_refused(pki: GeneratedPki) -> None:
    cert = pki.nodes["alpha"][0]
    key = pki.nodes["beta"][1]
    with pytest.raises(TlsError, match=rf"^cannot load certificate {cert} with key {key}: "):
        mutual_tls(pki.ca_file, cert, key)


def test_generating_again_reuses_the_ca(tmp_path: Path) -> None:
    first = generate_test_pki(tmp_path, ["a"])
    ca = first.ca_file.read_bytes()
    generate_test_pki(tmp_path, ["b"])
    assert first.ca_file.read_bytes() == ca


def test_command_line_writes_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "tls"), "n1", "n2@127.0.0.1", "--days", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "tls").iterdir())
    assert names == ["ca.key", "ca.pem", "n1.key", "n1.pem", "n2.key", "n2.pem"]
    assert "otpy-node --tls-dir" in capsys.readouterr().out
