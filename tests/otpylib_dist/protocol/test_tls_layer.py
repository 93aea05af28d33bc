"""TlsLayer: two TLS ends talking through memory only (no sockets, no loop)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from otpylib_dist.pki import GeneratedPki, generate_test_pki
from otpylib_dist.protocol.tls_layer import TlsLayer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPki:
    return generate_test_pki(tmp_path_factory.mktemp("pki"), ["a", "b"])


def _pump(client: TlsLayer, server: TlsLayer, first: bytes) -> tuple[bytes, bytes]:
    """Shuttle bytes both ways until neither side has anything to say."""
    to_server, got_client, got_server = first, b"", b""
    for _ in range(20):
        got_server += server.receive(to_server) if to_server else b""
        to_client = server.data_to_send()
        got_client += client.receive(to_client) if to_client else b""
        to_server = client.data_to_send()
        if not to_server and not to_client:
            break
    return got_client, got_server


def test_handshake_then_application_bytes_both_ways(pki: GeneratedPki) -> None:
    client = TlsLayer(pki.config("a").client, server_side=False, server_hostname="127.0.0.1")
    server = TlsLayer(pki.config("b").server, server_side=True)
    assert server.start() == b""
    _pump(client, server, client.start())
    assert client.established and server.established
    client.send(b"hello over tls")
    _, got = _pump(client, server, client.data_to_send())
    assert got == b"hello over tls"
    server.send(b"and back")
    got_back, _ = _pump(client, server, b"")
    assert got_back == b"and back"
    peer = server.peer_certificate()
    assert peer is not None
    assert dict(item[0] for item in peer["subject"])["commonName"] == "a"


def test_a_peer_from_another_ca_fails_with_an_ssl_error(pki: GeneratedPki, tmp_path: Path) -> None:
    other = generate_test_pki(tmp_path, ["mallory"])
    client = TlsLayer(other.config("mallory").client, server_side=False, server_hostname="x")
    server = TlsLayer(pki.config("b").server, server_side=True)
    with pytest.raises(ssl.SSLError):
        _pump(client, server, client.start())
    assert not (client.established and server.established)


def test_plain_bytes_are_not_tls(pki: GeneratedPki) -> None:
    server = TlsLayer(pki.config("b").server, server_side=True)
    with pytest.raises(ssl.SSLError, match=r"WRONG_VERSION_NUMBER|wrong version"):
        server.receive(b"\x00\x00\x00\x10otpy hello frame.")
    assert server.peer_certificate() is None
