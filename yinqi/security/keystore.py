"""Signing keys on disk, encrypted under a key derived from the master secret.

Key files are PKCS#8 with a password derived from the master secret, the certificate beside
them in the clear; the database keeps only metadata (``keys`` table) for the doctor and
for rotation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from yinqi.errors import KeyStoreError
from yinqi.security.master import derive_key

SIGNING_VALIDITY = timedelta(days=730)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    purpose: str
    algorithm: str
    fingerprint: str
    certificate_pem: str
    key_path: Path
    not_before: datetime
    not_after: datetime


def _password(master: bytes) -> bytes:
    return derive_key(master, "keystore/pkcs8").hex().encode()


def create_signing_key(
    keys_dir: Path, master: bytes, key_id: str, subject: str, *, now: datetime | None = None
) -> KeyInfo:
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, subject),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, key_id),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + SIGNING_VALIDITY)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    key_path = keys_dir / f"{key_id}.key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(_password(master)),
        ))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (keys_dir / f"{key_id}.cert.pem").write_text(cert_pem)
    return info_from_certificate(key_id, "signing", cert_pem, key_path)


def info_from_certificate(key_id: str, purpose: str, cert_pem: str, key_path: Path) -> KeyInfo:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    return KeyInfo(
        key_id=key_id,
        purpose=purpose,
        algorithm=f"RSA-{cert.public_key().key_size}",  # type: ignore[union-attr]
        fingerprint=hashlib.sha256(der).hexdigest(),
        certificate_pem=cert_pem,
        key_path=key_path,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def load_private_key(key_path: Path, master: bytes) -> PrivateKeyTypes:
    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"key file {key_path} is missing: restore it or run `yinqi init`") from None
    try:
        return serialization.load_pem_private_key(data, password=_password(master))
    except (ValueError, TypeError):
        raise KeyStoreError(
            f"key file {key_path} cannot be decrypted with this master secret"
        ) from None


def certificate_days_left(not_after: datetime, now: datetime | None = None) -> int:
    return (not_after - (now or datetime.now(UTC))).days
