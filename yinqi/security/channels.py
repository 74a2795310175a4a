"""Our TLS client keys, one per bank channel, where ``banks.toml`` says they are.

Keys Yinqi generates are encrypted with the keystore password; a key a bank handed over in
the clear keeps working, and ``yinqi keys import-tls`` encrypts it in place. Rotating a channel
key is: a new key and a CSR (:func:`start_rotation`), the bank's certificate for it, then
:func:`install` puts both where the config points, checked to belong together.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from yinqi.errors import ConfigError, InvalidValue, KeyStoreError
from yinqi.security.keystore import (
    KeyInfo,
    create_tls_client_key,
    file_mode,
    info_from_certificate,
    is_encrypted_pem,
    key_matches,
    load_plain_or_encrypted,
    write_private_key,
    write_public_file,
)

if TYPE_CHECKING:
    from config import BankConfig
    from yinqi.bootstrap import App

TLS = "tls"


@dataclass(frozen=True, slots=True)
class ChannelKey:
    bank: str
    cert_path: Path
    key_path: Path
    key_state: str  # "encrypted", "plaintext", "missing"
    key_mode: int | None
    certificate: KeyInfo | None  # None while the bank has not issued one

    @property
    def key_id(self) -> str:
        return f"tls:{self.bank}"


def bank_config(app: App, code: str) -> BankConfig:
    try:
        return app.config.banks[code]
    except KeyError:
        known = ", ".join(sorted(app.config.banks))
        raise ConfigError(f"banks.toml: no bank {code!r} (known: {known})") from None


def paths(app: App, code: str) -> tuple[Path, Path]:
    """(client certificate, client key) of a bank channel, resolved against YINQI_HOME."""
    bank, home = bank_config(app, code), app.settings.home
    return bank.resolve_path(home, bank.client_cert), bank.resolve_path(home, bank.client_key)


def pending_key_path(key_path: Path) -> Path:
    """Where a rotation keeps the new key until the bank's certificate for it arrives."""
    return key_path.with_name(key_path.name + ".next")


def csr_path(cert_path: Path) -> Path:
    return cert_path.with_name(f"{cert_path.stem}.csr.pem")


def key_state(path: Path) -> tuple[str, int | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing", None
    return ("encrypted" if is_encrypted_pem(data) else "plaintext"), file_mode(path)


def channel_key(app: App, code: str) -> ChannelKey:
    cert_path, key_path = paths(app, code)
    state, mode = key_state(key_path)
    info = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        info = info_from_certificate(f"tls:{code}", TLS, cert_path.read_text(), key_path)
    return ChannelKey(code, cert_path, key_path, state, mode, info)


def channel_keys(app: App) -> list[ChannelKey]:
    return [channel_key(app, code) for code in sorted(app.config.banks)]


def common_name(app: App, code: str) -> str:
    return f"{app.config.company.name} ({code})"


def start_rotation(app: App, code: str) -> tuple[Path, bytes]:
    """A new encrypted channel key beside the current one, and the CSR to send the bank.

    The current key and certificate keep working until :func:`install` swaps them.
    """
    cert_path, key_path = paths(app, code)
    pending = pending_key_path(key_path)
    csr = create_tls_client_key(pending, app.master_secret, common_name(app, code))
    write_public_file(csr_path(cert_path), csr)
    return pending, csr


def install(app: App, code: str, *, cert: Path | None = None, key: Path | None = None,
            actor: str, action: str = "key.tls_imported") -> tuple[ChannelKey, list[str]]:
    """Put a channel certificate and its key where ``banks.toml`` points, the key encrypted.

    Without ``key`` the key is the pending one from a rotation (when ``cert`` is given and one
    is waiting) or the configured file itself (encrypted in place). The certificate must
    belong to the key: a mismatched pair would only fail later, at the bank's door.
    """
    cert_path, key_path = paths(app, code)
    pending = pending_key_path(key_path)
    if key is None:
        key = pending if cert is not None and pending.exists() else key_path
    source_cert = cert or cert_path
    try:
        certificate = x509.load_pem_x509_certificate(source_cert.read_bytes())
    except FileNotFoundError:
        raise InvalidValue(f"certificate {source_cert} does not exist") from None
    except ValueError:
        raise InvalidValue(f"{source_cert} is not a PEM certificate") from None
    private = load_plain_or_encrypted(key, app.master_secret)
    if not key_matches(private, certificate):
        raise KeyStoreError(f"certificate {source_cert} does not belong to key {key}: ask the "
                            "bank for the certificate issued for this key's CSR")
    before = channel_key(app, code)
    changes: list[str] = []
    if source_cert.resolve() != cert_path.resolve():
        write_public_file(cert_path, source_cert.read_bytes())
        changes.append(f"certificate {cert_path}")
    if key != key_path or before.key_state != "encrypted":
        write_private_key(key_path, private, app.master_secret, replace=True)
        changes.append(f"encrypted key {key_path}")
    elif before.key_mode is not None and before.key_mode & 0o077:
        os.chmod(key_path, 0o600)
        changes.append(f"mode 600 on {key_path}")
    if key == pending:
        pending.unlink()
        with contextlib.suppress(FileNotFoundError):
            csr_path(cert_path).unlink()
    after = channel_key(app, code)
    assert after.certificate is not None
    if changes:
        old = before.certificate.fingerprint if before.certificate else None
        with app.sessions.begin() as session:
            app.audit.append(session, actor=actor, action=action, subject_type="key",
                             subject_ids=[after.key_id],
                             details={"purpose": TLS, "bank": code,
                                      "old_fingerprint": old,
                                      "new_fingerprint": after.certificate.fingerprint,
                                      "was": before.key_state,
                                      "not_after": after.certificate.not_after.isoformat()})
    return after, changes
