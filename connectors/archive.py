"""Every message exchanged with a bank, kept as sent or received, encrypted at rest.

``$YINQI_HOME/archive/<bank>/<yyyy-mm-dd>/<time>-<kind>-<name>`` plus the SHA-256 of the
plaintext: the evidence a treasury needs in a dispute. Files are written once (exclusive
create) and never rewritten. Each file is sealed with AES-256-GCM (:mod:`yinqi.security.files`)
bound to its place in the archive, so a stolen copy of the folder shows no account number and
a file swapped with another does not open. :meth:`Archive.read` gives the plaintext back.

File names never carry a whole account number (a statement is named after its account): runs
that look like one keep their last four digits only.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from yinqi.security.files import FileCipher

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A whole token of 9 or more digits (CN account numbers; 8-digit runs are dates), or an
# IBAN-shaped token; IBANs are masked only when their check digits hold (see _masked).
_ACCOUNT_LIKE = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{9,34}|[A-Z]{2}[0-9]{2}[0-9A-Z]{10,30})"
                           r"(?![0-9A-Za-z])")


class Archive:
    def __init__(self, root: Path, bank: str, cipher: FileCipher) -> None:
        self.root, self.folder, self._cipher = root, root / bank, cipher

    def keep(self, kind: str, name: str, data: bytes, *, suffix: str = "",
             durable: bool = False) -> tuple[Path, str]:
        """Write ``data`` once, sealed; returns the path and the SHA-256 of ``data`` itself.
        ``durable`` syncs it to disk before returning (a signed order whose hash is about to
        be committed must survive a power cut)."""
        now = datetime.now(UTC)
        day = self.folder / now.strftime("%Y-%m-%d")
        day.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        stem = f"{now:%H%M%S%f}-{kind}-{_SAFE.sub('_', _masked(name))[:80]}"
        path = day / f"{stem}{suffix}"
        n = 1
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                break
            except FileExistsError:
                n += 1
                path = day / f"{stem}-{n}{suffix}"
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._cipher.seal(data, context_of(path)))
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        return path, digest

    def read(self, path: Path) -> bytes:
        """The plaintext of an archived file (a legacy unencrypted one as it is).

        Raises ``FileNotFoundError`` when it is gone and :class:`yinqi.errors.SecurityError`
        when it does not open (altered, moved, swapped, or sealed under another master
        secret). Compare the result with the recorded SHA-256 before trusting it."""
        return self._cipher.open(Path(path).read_bytes(), context_of(path))


def context_of(path: Path) -> str:
    """What a file is bound to: ``archive/<bank>/<day>/<name>``, the same wherever the home
    folder is restored to."""
    parts = Path(path).parts[-3:]
    return "archive/" + "/".join(parts)


def _masked(name: str) -> str:
    return _ACCOUNT_LIKE.sub(_mask_match, name)


def _mask_match(match: re.Match[str]) -> str:
    token = match.group(0)
    if not token.isdigit() and not _iban_checks(token):
        return token  # IBAN-shaped but not one (a message or end-to-end ID)
    return "xxxx" + token[-4:]


def _iban_checks(token: str) -> bool:
    moved = token[4:] + token[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
