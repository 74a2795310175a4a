"""Reading one part of a backup: present, the very bytes the manifest describes, and opened."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from yinqi.backup.errors import BackupError
from yinqi.backup.manifest import Manifest
from yinqi.backup.sealing import open_part, part_key, sha256_hex
from yinqi.backup.target import BackupSource


def records_of(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return _Records({str(r["name"]): r for r in manifest.parts}, manifest.folder)


class _Records(dict[str, dict[str, Any]]):
    def __init__(self, records: dict[str, dict[str, Any]], backup: str) -> None:
        super().__init__(records)
        self.backup = backup

    def __missing__(self, name: str) -> dict[str, Any]:
        raise BackupError(f"the manifest of backup {self.backup} names part {name} but does "
                          "not describe it: the manifest is inconsistent")


def read_part(source: BackupSource, manifest: Manifest, record: dict[str, Any],
              master: bytes) -> bytes:
    """A part's plaintext, after checking it is the very part the manifest describes."""
    name = str(record["name"])
    if not source.exists(name):
        raise BackupError(f"backup part {name} is missing from backup {source.name}; the "
                          "backup is incomplete, restore from another one")
    blob = source.read(name)
    if len(blob) != int(record["size"]) or sha256_hex(blob) != record["sha256"]:
        raise BackupError(f"backup part {name} of backup {source.name} is damaged: its "
                          "SHA-256 (or size) differs from the manifest's; restore from "
                          "another backup")
    return open_part(blob, {manifest.key_id: part_key(master, manifest.key_id)},
                     backup=manifest.name, part=name)


def tar_members(name: str, data: bytes) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
    except tarfile.TarError as exc:
        raise BackupError(f"backup part {name} is not a readable file archive: {exc}") from None
    for m in members:
        path = Path(m.name)
        if not m.isfile() or path.is_absolute() or ".." in path.parts:
            raise BackupError(f"backup part {name} holds {m.name!r}, which is not a plain "
                              "relative file; refusing it")
    return members
