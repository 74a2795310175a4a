"""The sandbox bank's CA: what it issues, what it reuses, and what real TLS makes of it."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.config import SSL_PROTOCOL_VERSION, create_ssl_context

from connectors.sandbox import pki
from yinqi.errors import ConfigError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_self_signed_ca_with_a_private_key_file(tmp_path: Path) -> None:
    files = pki.ensure_ca(tmp_path, bank_name="Test Bank")

    ca = pki.load_cert(files.cert)
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Test Bank"
    assert (files.cert, files.key) == (tmp_path / "ca.pem", tmp_path / "ca.key")
    assert _mode(files.key) == 0o600


def test_ca_is_reused_on_the_second_call(tmp_path: Path) -> None:
    first = pki.fingerprint(pki.ensure_ca(tmp_path).cert.read_bytes())
    second = pki.fingerprint(pki.ensure_ca(tmp_path).cert.read_bytes())
    assert first == second


def test_half_a_ca_is_refused_rather_than_silently_replaced(tmp_path: Path) -> None:
    files = pki.ensure_ca(tmp_path)
    files.cert.unlink()
    with pytest.raises(ConfigError, match="ca.key"):
        pki.ensure_ca(tmp_path)


def test_server_cert_chains_to_the_ca_and_names_the_ip_as_an_ip(tmp_path: Path) -> None:
    cert_path, key_path = pki.ensure_server_cert(tmp_path)

    cert = pki.load_cert(cert_path)
    cert.verify_directly_issued_by(pki.load_cert(tmp_path / "ca.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" not in san.get_values_for_type(x509.DNSName)
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=300)
    assert _mode(key_path) == 0o600


def test_server_cert_is_reused_on_the_second_call(tmp_path: Path) -> None:
    first, _ = pki.ensure_server_cert(tmp_path)
    fp = pki.fingerprint(first.read_bytes())
    second, _ = pki.ensure_server_cert(tmp_path)
    assert (second, pki.fingerprint(second.read_bytes())) == (first, fp)


def test_server_cert_near_its_end_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_path, _ = pki.ensure_server_cert(tmp_path)
    old = pki.fingerprint(cert_path.read_bytes())
    monkeypatch.setattr(pki, "RENEW_BEFORE", timedelta(days=10_000))
    pki.ensure_server_cert(tmp_path)
    assert pki.fingerprint(cert_path.read_bytes()) != old


def test_server_cert_for_other_hosts_is_reissued(tmp_path: Path) -> None:
    cert_path, _ = pki.ensure_server_cert(tmp_path)
    pki.ensure_server_cert(tmp_path, hosts=("127.0.0.1", "bank.test"))
    san = pki.load_cert(cert_path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bank.test"]


def test_server_cert_for_a_single_host_given_as_a_string(tmp_path: Path) -> None:
    cert_path, _ = pki.ensure_server_cert(tmp_path, hosts="bank.test")
    san = pki.load_cert(cert_path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bank.test"]


def test_expired_server_cert_is_a_separate_expired_pair(tmp_path: Path) -> None:
    good, _ = pki.ensure_server_cert(tmp_path)
    good_fp = pki.fingerprint(good.read_bytes())

    cert_path, key_path = pki.ensure_server_cert(tmp_path, expired=True)

    assert (cert_path.name, key_path.name) == ("server-expired.pem", "server-expired.key")
    cert = pki.load_cert(cert_path)
    cert.verify_directly_issued_by(pki.load_cert(tmp_path / "ca.pem"))
    now = datetime.now(UTC)
    assert cert.not_valid_after_utc < now
    assert now - cert.not_valid_after_utc < timedelta(days=2)
    assert pki.fingerprint(good.read_bytes()) == good_fp
    again, _ = pki.ensure_server_cert(tmp_path, expired=True)
    assert pki.fingerprint(again.read_bytes()) == pki.fingerprint(cert.public_bytes(
        serialization.Encoding.PEM))


def test_client_cert_is_issued_by_the_bank_for_client_auth(tmp_path: Path) -> None:
    state = tmp_path / "bank"
    out_cert, out_key = tmp_path / "acme" / "tls" / "client.pem", tmp_path / "acme" / "client.key"

    fp = pki.issue_client_cert(state, "ACME Trading Co.", out_cert, out_key)

    cert = pki.load_cert(out_cert)
    cert.verify_directly_issued_by(pki.load_cert(state / "ca.pem"))
    assert fp == pki.fingerprint(out_cert.read_bytes())
    assert len(fp) == 64 and fp == fp.lower()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ACME Trading Co."
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _mode(out_key) == 0o600
    assert out_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(out_key.read_bytes(), password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def test_client_cert_validity_follows_not_before_and_days(tmp_path: Path) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    pki.issue_client_cert(tmp_path, "Old Co", tmp_path / "c.pem", tmp_path / "c.key",
                          days=10, not_before=start)
    cert = pki.load_cert(tmp_path / "c.pem")
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + timedelta(days=10)


def test_foreign_client_cert_does_not_chain_to_the_bank(tmp_path: Path) -> None:
    pki.ensure_ca(tmp_path / "bank")
    cert_path, key_path = pki.issue_foreign_client_cert(tmp_path / "elsewhere")

    cert = pki.load_cert(cert_path)
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(pki.load_cert(tmp_path / "bank" / "ca.pem"))
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _mode(key_path) == 0o600


def test_server_ssl_kwargs_demand_a_client_certificate(tmp_path: Path) -> None:
    kwargs = pki.server_ssl_kwargs(tmp_path)
    assert kwargs == {
        "ssl_certfile": str(tmp_path / "server.pem"),
        "ssl_keyfile": str(tmp_path / "server.key"),
        "ssl_ca_certs": str(tmp_path / "ca.pem"),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    assert pki.server_ssl_kwargs(tmp_path, expired=True)["ssl_certfile"] == str(
        tmp_path / "server-expired.pem")


# --- real TLS -------------------------------------------------------------------------------


@contextmanager
def _tls_server(kwargs: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """A one-connection echo server whose context uvicorn itself builds from ``kwargs``."""
    context = create_ssl_context(
        certfile=kwargs["ssl_certfile"], keyfile=kwargs["ssl_keyfile"], password=None,
        ssl_version=SSL_PROTOCOL_VERSION, cert_reqs=kwargs["ssl_cert_reqs"],
        ca_certs=kwargs["ssl_ca_certs"], ciphers=None,
    )
    outcome: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    with context.wrap_socket(conn, server_side=True) as tls:
                        outcome["peer"] = tls.getpeercert()
                        tls.sendall(b"bank:" + tls.recv(1024))
            except (ssl.SSLError, OSError) as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], outcome
        finally:
            thread.join(10)


def _client_context(
    ca: Path, cert: Path | None = None, key: Path | None = None,
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = max_version
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _talk(port: int, context: ssl.SSLContext) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        # server_hostname as an IP literal makes the client match the SAN iPAddress entry.
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"hello")
            return tls.recv(1024)


def test_tls_client_with_a_bank_issued_certificate_gets_through(tmp_path: Path) -> None:
    state = tmp_path / "bank"
    pki.issue_client_cert(state, "ACME", tmp_path / "c.pem", tmp_path / "c.key")

    with _tls_server(pki.server_ssl_kwargs(state)) as (port, outcome):
        reply = _talk(port, _client_context(state / "ca.pem", tmp_path / "c.pem",
                                            tmp_path / "c.key"))

    assert reply == b"bank:hello"
    assert "error" not in outcome
    assert dict(pair[0] for pair in outcome["peer"]["subject"])["commonName"] == "ACME"


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("client", ["foreign", "none"])
def test_tls_client_without_a_bank_certificate_is_refused_in_the_handshake(
    tmp_path: Path, client: str, max_version: ssl.TLSVersion
) -> None:
    state = tmp_path / "bank"
    pki.ensure_ca(state)
    cert: Path | None = None
    key: Path | None = None
    if client == "foreign":
        cert, key = pki.issue_foreign_client_cert(tmp_path / "elsewhere")
    context = _client_context(state / "ca.pem", cert, key, max_version)

    with _tls_server(pki.server_ssl_kwargs(state)) as (port, outcome):
        # Under TLS 1.3 the client finishes its half of the handshake before the server
        # judges its certificate, so the refusal reaches the client on its first read.
        try:
            reply: bytes | None = _talk(port, context)
        except (ssl.SSLError, ConnectionError):
            reply = None

    assert reply in (None, b"")
    assert isinstance(outcome["error"], ssl.SSLError)
    assert "peer" not in outcome, "the server completed a handshake it should have refused"


def test_tls_client_refuses_the_expired_server_certificate(tmp_path: Path) -> None:
    state = tmp_path / "bank"
    pki.issue_client_cert(state, "ACME", tmp_path / "c.pem", tmp_path / "c.key")
    context = _client_context(state / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key")

    with _tls_server(pki.server_ssl_kwargs(state, expired=True)) as (port, _outcome):
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            _talk(port, context)

    assert "expired" in refused.value.verify_message
