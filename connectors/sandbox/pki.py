"""The sandbox bank's certificate authority, kept as files in a folder the bank owns.

The bank signs its own TLS server certificate and the channel certificates it hands to
companies; the TLS front end then accepts only clients whose certificate chains to this CA.
Nothing here touches Yinqi's own key store: the sandbox is a different bank.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from yinqi.errors import ConfigError

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=397)
# A server certificate this close to its end is replaced rather than served, so a long test
# run or a sandbox left running overnight never trips over its own expiry.
RENEW_BEFORE = timedelta(days=1)
# Backdating absorbs clock skew between the bank and the company's machine.
BACKDATE = timedelta(minutes=5)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
EXPIRED_SERVER_CERT = "server-expired.pem"
EXPIRED_SERVER_KEY = "server-expired.key"
_LOCK = ".pki.lock"


@dataclass(frozen=True, slots=True)
class CaFiles:
    cert: Path
    key: Path


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def ensure_ca(state_dir: Path, bank_name: str = "Yinqi Sandbox Bank") -> CaFiles:
    """The bank's CA, created on the first call and reused afterwards."""
    state_dir = Path(state_dir)
    files = CaFiles(cert=state_dir / CA_CERT, key=state_dir / CA_KEY)
    with _locked(state_dir):
        if files.cert.exists() and files.key.exists():
            return files
        if files.cert.exists() or files.key.exists():
            # Making a new CA here would silently orphan every certificate already issued.
            present = files.cert if files.cert.exists() else files.key
            raise ConfigError(
                f"bank CA in {state_dir} is half there ({present.name} without its partner); "
                f"restore the missing file, or delete {present} to start a new CA "
                "and reissue every client certificate"
            )
        key, cert = _new_ca(bank_name)
        _write_private_key(files.key, key)
        _write_cert(files.cert, cert)
    return files


def ensure_server_cert(
    state_dir: Path,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    *,
    expired: bool = False,
) -> tuple[Path, Path]:
    """(cert, key) of the bank's TLS server certificate for ``hosts``.

    ``expired=True`` gives a separate pair whose validity ended yesterday, for the
    "expired server certificate" fault; the good pair is left untouched.
    """
    if isinstance(hosts, str):
        # A lone string would otherwise be taken apart into one host per character.
        hosts = (hosts,)
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    state_dir = Path(state_dir)
    ca = ensure_ca(state_dir)
    cert_path = state_dir / (EXPIRED_SERVER_CERT if expired else SERVER_CERT)
    key_path = state_dir / (EXPIRED_SERVER_KEY if expired else SERVER_KEY)
    with _locked(state_dir):
        ca_key, ca_cert = _load_ca(ca)
        now = datetime.now(UTC)
        if _reusable(cert_path, key_path, ca_cert, hosts, now, expired=expired):
            return cert_path, key_path
        if expired:
            not_before, not_after = now - timedelta(days=31), now - timedelta(days=1)
        else:
            not_before, not_after = now - BACKDATE, now + SERVER_VALIDITY
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            ca_key, ca_cert, key.public_key(),
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]),
            not_before=not_before, not_after=not_after,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=x509.SubjectAlternativeName([_general_name(host) for host in hosts]),
        )
        _write_private_key(key_path, key)
        _write_cert(cert_path, cert)
    return cert_path, key_path


def issue_client_cert(
    state_dir: Path,
    common_name: str,
    out_cert: Path,
    out_key: Path,
    *,
    days: int = 365,
    not_before: datetime | None = None,
) -> str:
    """Issue a company's channel certificate; returns its SHA-256 fingerprint.

    The key is RSA-2048 because the direct-connect dialect signs request bodies with RSA
    PKCS#1 v1.5 at most banks, and companies tend to reuse the channel key for that.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _client_cert(Path(state_dir), common_name, key.public_key(), days, not_before)
    _write_private_key(Path(out_key), key)
    _write_cert(Path(out_cert), cert)
    return fingerprint(cert.public_bytes(serialization.Encoding.PEM))


def certify_csr(
    state_dir: Path,
    csr_pem: bytes,
    out_cert: Path,
    *,
    days: int = 365,
    not_before: datetime | None = None,
) -> str:
    """Issue a channel certificate for a company's own key, from its CSR; the fingerprint.

    How banks do it: the company keeps its private key and sends only the CSR, whose
    signature proves it holds the key. The common name comes from the CSR.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ConfigError("the certificate request is not a PEM CSR") from None
    if not csr.is_signature_valid:
        raise ConfigError("the certificate request's signature does not verify: it was not "
                          "made with the key it names")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError("the certificate request names no common name (CN)")
    cert = _client_cert(Path(state_dir), str(names[0].value), csr.public_key(),  # type: ignore[arg-type]
                        days, not_before)
    _write_cert(Path(out_cert), cert)
    return fingerprint(cert.public_bytes(serialization.Encoding.PEM))


def _client_cert(state_dir: Path, common_name: str, public_key: CertificatePublicKeyTypes,
                 days: int, not_before: datetime | None) -> x509.Certificate:
    ca = ensure_ca(state_dir)
    with _locked(state_dir):
        ca_key, ca_cert = _load_ca(ca)
    start = not_before or datetime.now(UTC) - BACKDATE
    return _issue(
        ca_key, ca_cert, public_key,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        not_before=start, not_after=start + timedelta(days=days),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )


def issue_foreign_client_cert(out_dir: Path) -> tuple[Path, Path]:
    """(cert, key) of a client certificate from a throwaway CA the bank has never seen."""
    ca_key, ca_cert = _new_ca("Somebody Else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = _issue(
        ca_key, ca_cert, key.public_key(),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Client")]),
        not_before=now - BACKDATE, not_after=now + timedelta(days=30),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    cert_path, key_path = Path(out_dir) / "foreign-client.pem", Path(out_dir) / "foreign-client.key"
    _write_private_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def server_ssl_kwargs(state_dir: Path, *, expired: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that demand a client certificate."""
    ca = ensure_ca(Path(state_dir))
    cert, key = ensure_server_cert(state_dir, expired=expired)
    return {
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_ca_certs": str(ca.cert),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    # Several server workers may start at once; without the lock two of them could each write
    # a key and end up pairing one's key with the other's certificate.
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    with open(state_dir / _LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _new_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
    ])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    public_key: CertificatePublicKeyTypes,
    *,
    subject: x509.Name,
    not_before: datetime,
    not_after: datetime,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True,
            # Client keys also sign payment messages, which is a commitment, not just a login.
            content_commitment=usage == ExtendedKeyUsageOID.CLIENT_AUTH,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    # TLS clients match an IP literal only against iPAddress entries, never against a DNSName.
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load_ca(ca: CaFiles) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
    key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    return key, load_cert(ca.cert)  # type: ignore[return-value]


def _reusable(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    now: datetime,
    *,
    expired: bool,
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = load_cert(cert_path)
    try:
        # A certificate from an earlier CA (state folder partly reset) would fail every handshake.
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if set(san) != {_general_name(host) for host in hosts}:
        return False
    if expired:
        return cert.not_valid_after_utc < now
    return cert.not_valid_after_utc - now > RENEW_BEFORE


def _write_private_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    _write_atomic(path, key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file 0600 from the start, so a key is never readable by others,
    # and the rename means a reader sees the old file or the new one, never half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
