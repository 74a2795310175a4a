"""Files at rest: every archived bank message and 电子回单 sealed with AES-256-GCM.

A sealed file is::

    b"YQF1" | key ID (2 bytes, big-endian) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

The key is ``derive_key(master, "files/<key ID>")``: a copy of the disk without the master
secret reveals nothing but sizes. New files are sealed under the newest key; a file names the
key it was sealed with, so after a rotation (a higher ``current``) older files still open.

The associated data is the header plus a *context*: the file's place in the archive
(``archive/<bank>/<day>/<name>``). A file renamed, moved or swapped with another does not
open under its new name, even though both are intact ciphertexts.

Legacy files: files archived before encryption at rest have no header. :meth:`FileCipher.open`
returns such a file unchanged *only* when its first four bytes are not ``YQF1`` (no archived
format starts that way: PDF, XML and JSON start with ``%PDF``, ``<`` or ``{``). A file that has
the header but does not authenticate is never given back as plaintext. A legacy file is not
authenticated by the cipher, so every reader also compares the SHA-256 recorded in the
database (always the hash of the plaintext): a plaintext file planted in place of a sealed one
fails that check.

One :class:`FileCipher` holds one ``AESGCM`` per key, derived once: receipts are sealed by the
hundred thousand, and the AESGCM object is safe to share between threads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from yinqi.errors import SecurityError
from yinqi.security.master import derive_key

MAGIC = b"YQF1"
_KEY_ID_BYTES = 2
_NONCE_BYTES = 12
_TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES
_MIN_SEALED = HEADER_BYTES + _NONCE_BYTES + _TAG_BYTES
_MAX_KEY_ID = 2 ** (8 * _KEY_ID_BYTES) - 1


def key_purpose(key_id: int) -> str:
    return f"files/{key_id}"


def is_sealed(blob: bytes) -> bool:
    """True when ``blob`` carries the file header (sealed, or damaged but meant to be)."""
    return blob[:len(MAGIC)] == MAGIC


def key_id_of(blob: bytes) -> int | None:
    """The key ID a sealed file names; None for a legacy plaintext file."""
    if not is_sealed(blob) or len(blob) < HEADER_BYTES:
        return None
    return int.from_bytes(blob[len(MAGIC):HEADER_BYTES], "big")


class FileCipher:
    """Seals with the newest key; opens with whichever key ID a file names."""

    def __init__(self, keys: Mapping[int, bytes], current: int) -> None:
        if current not in keys:
            raise SecurityError(f"file key {current} is not among the loaded file keys")
        bad = [k for k in keys if not 1 <= k <= _MAX_KEY_ID]
        if bad:
            raise SecurityError(f"file key IDs must be 1..{_MAX_KEY_ID}, not {bad[0]}")
        self._aead = {k: AESGCM(v) for k, v in keys.items()}
        self.current = current
        self._header = MAGIC + current.to_bytes(_KEY_ID_BYTES, "big")

    @classmethod
    def from_master(cls, master: bytes, current: int = 1) -> FileCipher:
        """Every file key from 1 to ``current``, derived from the master secret."""
        if current < 1:
            raise SecurityError(f"file key ID {current} must be 1 or more")
        return cls({k: derive_key(master, key_purpose(k)) for k in range(1, current + 1)},
                   current)

    def seal(self, data: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.current].encrypt(nonce, data, self._header + _aad(context))
        return self._header + nonce + sealed

    def open(self, blob: bytes, context: str) -> bytes:
        """The plaintext; a legacy file (no header) unchanged. Raises :class:`SecurityError`
        when a sealed file was altered, renamed or swapped, or its key is not loaded."""
        if not is_sealed(blob):
            return blob
        if len(blob) < _MIN_SEALED:
            raise SecurityError(f"{context}: the encrypted file is cut short ({len(blob)} "
                                "bytes); restore it from a backup")
        header = blob[:HEADER_BYTES]
        key_id = int.from_bytes(header[len(MAGIC):], "big")
        aead = self._aead.get(key_id)
        if aead is None:
            raise SecurityError(f"{context}: encrypted under file key {key_id}, which is not "
                                "loaded; is this the master secret the file was written with?")
        nonce = blob[HEADER_BYTES:HEADER_BYTES + _NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[HEADER_BYTES + _NONCE_BYTES:], header + _aad(context))
        except InvalidTag:
            raise SecurityError(f"{context}: the encrypted file was altered, moved or swapped "
                                "with another, or the master secret is not the one it was "
                                "written with") from None


def _aad(context: str) -> bytes:
    # A separator byte, so header and context can never be re-split into another pair.
    return b"\x00" + context.encode("utf-8")


@functools.lru_cache(maxsize=8)
def file_cipher(master: bytes, current: int = 1) -> FileCipher:
    """The process's file cipher for this master secret: keys are derived once, not per file."""
    return FileCipher.from_master(master, current)
