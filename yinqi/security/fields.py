"""Authenticated encryption of single fields, with a key ID in every value for rotation."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from yinqi.errors import SecurityError
from yinqi.security.master import derive_key

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


_DET_SEPARATOR = "~"


class FieldCrypto:
    """The database's field keys, all derived from the master secret.

    Account numbers and payee names are encrypted *deterministically* (AES-256-SIV): the same
    value under the same key gives the same ciphertext, so the database can still compare,
    group and enforce uniqueness on them (``WHERE creditor_account = :x`` binds the encrypted
    ``:x``). It reveals which rows share a value, never the value. Larger structured data
    (voucher rows) is encrypted with a fresh nonce each time (AES-256-GCM).

    ``current`` is the key ID new values are written under; values written under an older ID
    still open (rotation re-encrypts them, see ``yinqi.store.field_keys``).
    """

    def __init__(self, master: bytes | Callable[[], bytes], current: int = 1) -> None:
        if current < 1:
            raise SecurityError(f"field key ID {current} must be 1 or more")
        # A callable defers loading the master secret to the first encrypted column touched:
        # `yinqi doctor` on a home without a secret yet still opens the database.
        self._master_source, self.current = master, current
        self._siv: dict[int, AESSIV] = {}

    @property
    def master(self) -> bytes:
        source = self._master_source
        if callable(source):
            source = self._master_source = source()
        return source

    def _det(self, key_id: int) -> AESSIV:
        siv = self._siv.get(key_id)
        if siv is None:
            siv = self._siv[key_id] = AESSIV(derive_key(self.master, f"fields/det/{key_id}", 64))
        return siv

    def cipher(self) -> FieldCipher:
        keys = {k: derive_key(self.master, f"fields/{k}") for k in range(1, self.current + 1)}
        return FieldCipher(keys, self.current)

    def seal(self, value: str, domain: str, *, key_id: int | None = None) -> str:
        kid = self.current if key_id is None else key_id
        sealed = self._det(kid).encrypt(value.encode(), [domain.encode()])
        return f"{kid}{_DET_SEPARATOR}{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, value: str, domain: str) -> str:
        kid_text, sep, body = value.partition(_DET_SEPARATOR)
        if not sep or not kid_text.isdigit():
            raise SecurityError(f"{domain}: the stored value is not encrypted; run `yinqi init` "
                                "to migrate the database")
        try:
            return self._det(int(kid_text)).decrypt(
                base64.urlsafe_b64decode(body), [domain.encode()]).decode()
        except (InvalidTag, ValueError):
            raise SecurityError(f"{domain}: encrypted value was altered or the master secret "
                                "is not the one it was written with") from None

    def key_id_of(self, value: str) -> int | None:
        kid_text, sep, _ = value.partition(_DET_SEPARATOR)
        return int(kid_text) if sep and kid_text.isdigit() else None

    def seal_bytes(self, data: bytes, context: str) -> bytes:
        return self._gcm_cipher().encrypt(data, context)

    def open_bytes(self, blob: bytes, context: str) -> bytes:
        return self._gcm_cipher().decrypt(blob, context)

    def _gcm_cipher(self) -> FieldCipher:
        cached = self.__dict__.get("_cipher")
        if cached is None:
            cached = self.__dict__["_cipher"] = self.cipher()
        return cached
