"""The master secret: the one secret every other key is derived from.

It comes from ``YINQI_MASTER_SECRET`` or a file only its owner can read
(``$YINQI_HOME/secrets/master.key``, mode 0600); never from the database or the repository,
so a stolen database file holds nothing that decrypts it.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from config import Settings
from yinqi.errors import KeyStoreError

MIN_ENV_SECRET_LENGTH = 32


def load_master_secret(settings: Settings) -> bytes:
    if settings.master_secret is not None:
        value = settings.master_secret.get_secret_value()
        if len(value) < MIN_ENV_SECRET_LENGTH:
            raise KeyStoreError(
                f"YINQI_MASTER_SECRET is {len(value)} characters; it needs at least "
                f"{MIN_ENV_SECRET_LENGTH} random characters"
            )
        return value.encode()
    path = settings.master_secret_file
    if not path.exists():
        raise KeyStoreError(
            f"no master secret: set YINQI_MASTER_SECRET or run `yinqi init` to create {path}"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyStoreError(
            f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}`"
        )
    try:
        secret = base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        raise KeyStoreError(f"{path} is not a base64 master secret") from None
    if len(secret) < 32:
        raise KeyStoreError(f"{path} holds {len(secret)} bytes; a master secret needs 32")
    return secret


def ensure_master_secret(settings: Settings) -> bool:
    """Create the master secret file if no secret is configured; True if one was created."""
    if settings.master_secret is not None or settings.master_secret_file.exists():
        return False
    path: Path = settings.master_secret_file
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return True


def derive_key(master: bytes, purpose: str, length: int = 32) -> bytes:
    """A separate key per purpose, so one leaked derived key exposes nothing else."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"yinqi/v1", info=purpose.encode()
    ).derive(master)
