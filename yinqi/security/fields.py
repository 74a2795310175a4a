"""Authenticated encryption of single fields (AES-256-GCM) with a key ID for rotation."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from yinqi.errors import SecurityError

_VERSION = b"\x01"


class FieldCipher:
    """Encrypts with the newest key; decrypts with whichever key ID the ciphertext names."""

    def __init__(self, keys: dict[int, bytes], current: int) -> None:
        if current not in keys:
            raise SecurityError(f"field key {current} is not among the loaded keys")
        self._keys, self._current = keys, current

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        header = _VERSION + self._current.to_bytes(2, "big")
        sealed = AESGCM(self._keys[self._current]).encrypt(nonce, plaintext, header + context.encode())
        return header + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> bytes:
        if len(blob) < 3 + 12 + 16 or blob[:1] != _VERSION:
            raise SecurityError(f"{context}: not a Yinqi ciphertext")
        header, key_id = blob[:3], int.from_bytes(blob[1:3], "big")
        key = self._keys.get(key_id)
        if key is None:
            raise SecurityError(f"{context}: encrypted under unknown field key {key_id}")
        try:
            return AESGCM(key).decrypt(blob[3:15], blob[15:], header + context.encode())
        except InvalidTag:
            raise SecurityError(f"{context}: ciphertext was altered or the key is wrong") from None
