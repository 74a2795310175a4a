"""Private keys on disk, encrypted under a password derived from the master secret.

Every private key Yinqi writes (signing keys, TLS client keys for the bank channels) is PKCS#8
encrypted with the *keystore password* (:func:`keystore_password`) and mode 0600; a copy of
the disk or the database without the master secret holds no usable key. Certificates sit
beside the keys in the clear; the database keeps only signing-key metadata (``keys`` table).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from yinqi.errors import KeyStoreError
from yinqi.security.master import derive_key

SIGNING_VALIDITY = timedelta(days=730)
RSA_BITS = 2048
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
# PKCS#8 encrypted, or the legacy OpenSSL "traditional" format with a Proc-Type header.
_ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


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


def keystore_password(master: bytes) -> bytes:
    """The password of every key file Yinqi writes (ASCII, so OpenSSL accepts it as is)."""
    return derive_key(master, "keystore/pkcs8").hex().encode()


def create_signing_key(
    keys_dir: Path, master: bytes, key_id: str, subject: str, *, now: datetime | None = None
) -> KeyInfo:
    """A new RSA signing key and its self-signed certificate; never overwrites a key file."""
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
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
    _private_dir(keys_dir)
    key_path = keys_dir / f"{key_id}.key.pem"
    cert_path = keys_dir / f"{key_id}.cert.pem"
    if cert_path.exists():
        # A certificate without its key would be registered with banks for a key nobody has.
        raise KeyStoreError(f"{cert_path} already exists: key id {key_id} was used before; "
                            "restore the keys folder or choose another id")
    write_private_key(key_path, key, master, replace=False)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    try:
        write_public_file(cert_path, cert_pem.encode(), replace=False)
    except BaseException:
        key_path.unlink()  # a key without its certificate would block the id for good
        raise
    return info_from_certificate(key_id, "signing", cert_pem, key_path)


def next_key_id(existing: Iterable[str], purpose: str = "signing") -> str:
    """``signing-1``, ``signing-2``, ...: one more than the highest id ever used."""
    pattern = re.compile(rf"{re.escape(purpose)}-(\d+)")
    numbers = [int(m.group(1)) for k in existing if (m := pattern.fullmatch(k))]
    return f"{purpose}-{max(numbers, default=0) + 1}"


def info_from_certificate(key_id: str, purpose: str, cert_pem: str, key_path: Path) -> KeyInfo:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return KeyInfo(
        key_id=key_id,
        purpose=purpose,
        algorithm=algorithm_of(cert),
        fingerprint=certificate_fingerprint(cert),
        certificate_pem=cert_pem,
        key_path=key_path,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex: what banks and ``X-Signer`` quote."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def algorithm_of(cert: x509.Certificate) -> str:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA-{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC-{public.curve.name}"
    return type(public).__name__


def load_private_key(key_path: Path, master: bytes) -> PrivateKeyTypes:
    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"key file {key_path} is missing: restore it from a backup") from None
    if not is_encrypted_pem(data):
        raise KeyStoreError(f"key file {key_path} is not encrypted: run "
                            "`yinqi keys import-tls` for a TLS client key, or restore the "
                            "encrypted file")
    try:
        return serialization.load_pem_private_key(data, password=keystore_password(master))
    except (ValueError, TypeError):
        raise KeyStoreError(
            f"key file {key_path} cannot be decrypted with this master secret"
        ) from None


def is_encrypted_pem(data: bytes) -> bool:
    return any(marker in data for marker in _ENCRYPTED_MARKERS)


def key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    return key.public_key().public_bytes(*_SPKI) == cert.public_key().public_bytes(*_SPKI)


# --- TLS client keys of the bank channels -------------------------------------------------------


def create_tls_client_key(key_path: Path, master: bytes, common_name: str) -> bytes:
    """Write a new encrypted channel key at ``key_path``; return the CSR (PEM) for the bank.

    The bank certifies the public key from the CSR; the private key never leaves this file.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    _private_dir(key_path.parent)
    write_private_key(key_path, key, master, replace=True)
    return csr.public_bytes(serialization.Encoding.PEM)


def encrypt_key_file(path: Path, master: bytes) -> bool:
    """Encrypt a plaintext private key file in place (0600); False if it already was.

    An already encrypted file must open with this master secret: a key encrypted under
    another secret would fail at the next handshake, so it is reported now.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} does not exist") from None
    if is_encrypted_pem(data):
        load_private_key(path, master)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        return False
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyStoreError(f"{path} is not a PEM private key") from None
    write_private_key(path, key, master, replace=True)
    return True


def load_plain_or_encrypted(path: Path, master: bytes) -> PrivateKeyTypes:
    """A key handed over by a bank (often in the clear) or one of ours (encrypted)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} does not exist") from None
    if is_encrypted_pem(data):
        return load_private_key(path, master)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyStoreError(f"{path} is not a PEM private key") from None


# --- files ----------------------------------------------------------------------------------


def write_private_key(path: Path, key: PrivateKeyTypes, master: bytes, *, replace: bool) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(keystore_password(master)),
    )
    _write_atomic(path, data, 0o600, replace=replace)


def write_public_file(path: Path, data: bytes, *, replace: bool = True) -> None:
    _write_atomic(path, data, 0o644, replace=replace)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def _write_atomic(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    # mkstemp creates the file 0600, so key bytes are never readable by others even for an
    # instant; the rename (or link, which refuses an existing name) means a reader sees the
    # old file or the new one, never half of one. The temporary name does not end in .pem:
    # folders of certificates are globbed for *.pem by whoever reads them.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyStoreError(f"{path} already exists; refusing to overwrite a key "
                                    "file") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def certificate_days_left(not_after: datetime, now: datetime | None = None) -> int:
    return (not_after - (now or datetime.now(UTC))).days
