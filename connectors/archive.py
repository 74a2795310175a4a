"""Every message exchanged with a bank, kept byte for byte as sent or received.

``$YINQI_HOME/archive/<bank>/<yyyy-mm-dd>/<time>-<kind>-<name>`` plus its SHA-256: the
evidence a treasury needs in a dispute. Files are written once (exclusive create) and never
rewritten.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Archive:
    def __init__(self, root: Path, bank: str) -> None:
        self.folder = root / bank

    def keep(self, kind: str, name: str, data: bytes, *, suffix: str = "",
             durable: bool = False) -> tuple[Path, str]:
        """Write ``data`` once; ``durable`` syncs it to disk before returning (a signed order
        whose hash is about to be committed must survive a power cut)."""
        now = datetime.now(UTC)
        day = self.folder / now.strftime("%Y-%m-%d")
        day.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        stem = f"{now:%H%M%S%f}-{kind}-{_SAFE.sub('_', name)[:80]}"
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
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        return path, digest
