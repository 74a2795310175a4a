"""Passwords: argon2id hashes (memory-hard), the password policy, verification and rehash.

Parameters are RFC 9106's second recommended option (argon2id, 64 MiB, 3 passes, 4 lanes,
16-byte salt, 32-byte tag): about a tenth of a second per guess on a server core, and 64 MiB
per guess on a GPU, which is what makes a stolen table of hashes expensive to attack. The
encoded hash carries its own parameters, so raising them later only needs
:func:`needs_rehash` at the next successful login.
"""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from yinqi.errors import InvalidValue

MIN_LENGTH = 12
# Hashing a megabyte-long "password" would cost real time and memory for nothing.
MAX_LENGTH = 256

_HASHER = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)

# Verified against when there is no stored hash (unknown user, no password yet), so a refusal
# takes as long whether or not the user exists.
_DUMMY = _HASHER.hash("yinqi: no password is stored for this user")


def check_policy(password: str, *, username: str | None = None) -> None:
    """Refuse a password Yinqi will not store, with one line saying why (never echoing it)."""
    if len(password) < MIN_LENGTH:
        raise InvalidValue(f"the password must be at least {MIN_LENGTH} characters "
                           f"(it has {len(password)})")
    if len(password) > MAX_LENGTH:
        raise InvalidValue(f"the password must be at most {MAX_LENGTH} characters")
    if not password.strip():
        raise InvalidValue("the password must not be only spaces")
    if username and password.strip().casefold() == username.casefold():
        raise InvalidValue("the password must not be the user name")


def hash_password(password: str) -> str:
    """An encoded argon2id hash (``$argon2id$v=19$m=...``) with a fresh random salt."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; a missing or malformed hash never matches."""
    try:
        return _HASHER.verify(stored if stored is not None else _DUMMY, password) and (
            stored is not None)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (rehash it at login)."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
