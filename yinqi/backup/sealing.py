"""Sealing backup parts (AES-256-GCM) and authenticating the manifest (HMAC-SHA256).

A sealed part is::

    b"YQB1" | key ID (2 bytes, big-endian) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

under ``derive_key(master, "backup/<key ID>")``. The associated data binds the header, the
backup's name and the part's name: a part renamed, or swapped in from another backup made
with the same key, does not open.

The manifest stays readable JSON (a later ``backup list`` needs no secret) and carries an
HMAC under ``derive_key(master, "backup/<key ID>/manifest")`` over its canonical form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import zlib
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from yinqi.backup.errors import BackupError
from yinqi.security.master import derive_key

MAGIC = b"YQB1"
KEY_ID = 1
_KEY_ID_BYTES = 2
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES
_COMPRESS_LEVEL = 6


def part_key(master: bytes, key_id: int = KEY_ID) -> bytes:
    return derive_key(master, f"backup/{key_id}")


def manifest_key(master: bytes, key_id: int = KEY_ID) -> bytes:
    return derive_key(master, f"backup/{key_id}/manifest")


def _aad(header: bytes, backup: str, part: str) -> bytes:
    # Separator bytes, so (backup, part) can never be re-split into another pair.
    return header + b"\x00" + backup.encode() + b"\x00" + part.encode()


def seal_part(data: bytes, key: bytes, *, backup: str, part: str,
              key_id: int = KEY_ID) -> bytes:
    """Compress, then encrypt (ciphertext does not compress)."""
    header = MAGIC + key_id.to_bytes(_KEY_ID_BYTES, "big")
    nonce = os.urandom(_NONCE_BYTES)
    body = AESGCM(key).encrypt(nonce, zlib.compress(data, _COMPRESS_LEVEL),
                               _aad(header, backup, part))
    return header + nonce + body


def open_part(blob: bytes, keys: dict[int, bytes], *, backup: str, part: str) -> bytes:
    if len(blob) < _HEADER_BYTES + _NONCE_BYTES + _TAG_BYTES or blob[:len(MAGIC)] != MAGIC:
        raise BackupError(f"backup part {part} is not a sealed Yinqi backup part "
                          "(damaged or replaced); restore from another backup")
    header = blob[:_HEADER_BYTES]
    key_id = int.from_bytes(header[len(MAGIC):], "big")
    key = keys.get(key_id)
    if key is None:
        raise BackupError(f"backup part {part} is sealed under backup key {key_id}, which is "
                          "not the key the manifest names; the part was swapped or altered")
    nonce = blob[_HEADER_BYTES:_HEADER_BYTES + _NONCE_BYTES]
    try:
        compressed = AESGCM(key).decrypt(nonce, blob[_HEADER_BYTES + _NONCE_BYTES:],
                                         _aad(header, backup, part))
    except InvalidTag:
        raise BackupError(f"backup part {part} does not decrypt: it was altered, moved from "
                          "another backup, or the master secret is wrong") from None
    try:
        return zlib.decompress(compressed)
    except zlib.error as exc:
        raise BackupError(f"backup part {part} decrypts but does not decompress ({exc}); "
                          "the backup was written by a faulty writer") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def manifest_mac(body: dict[str, Any], master: bytes, key_id: int = KEY_ID) -> str:
    return hmac.new(manifest_key(master, key_id), canonical(body), hashlib.sha256).hexdigest()


def check_manifest_mac(body: dict[str, Any], mac: str, master: bytes, key_id: int) -> bool:
    return hmac.compare_digest(manifest_mac(body, master, key_id), mac)
