"""Checking a backup end to end without restoring it.

Every failure is one :class:`BackupError` naming the part: a missing part, a part whose size
or SHA-256 differs from the manifest, a part that does not decrypt (altered, swapped, or the
wrong master secret) and a manifest that does not authenticate.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yinqi.backup.errors import BackupError
from yinqi.backup.manifest import Manifest, load
from yinqi.backup.sealing import open_part, part_key, sha256_hex
from yinqi.backup.target import BackupSource, as_source


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    parts: int
    stored_bytes: int
    #: Per file area, the relative paths of its files (what a restore will write).
    files: dict[str, list[str]] = field(default_factory=dict)


def read_part(source: BackupSource, manifest: Manifest, record: dict[str, Any],
              master: bytes) -> bytes:
    """A part's plaintext, after checking it is the very part the manifest describes."""
    name = str(record["name"])
    if not source.exists(name):
        raise BackupError(f"backup part {name} is missing from backup {source.name}; the "
                          "backup is incomplete, restore from another one")
    blob = source.read(name)
    if len(blob) != int(record["size"]) or sha256_hex(blob) != record["sha256"]:
        raise BackupError(f"backup part {name} is damaged: its SHA-256 (or size) differs "
                          "from the manifest's; restore from another backup")
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


def verify_backup(backup: Path | str | BackupSource, master: bytes) -> Verified:
    """Authenticate the manifest, then read, check, decrypt and decompress every part."""
    source = as_source(backup)
    manifest = load(source, master)
    if manifest.kind != "full":
        raise BackupError(f"backup {source.name} is a {manifest.kind} backup; this Yinqi "
                          "verifies full backups only")
    records = {str(r["name"]): r for r in manifest.parts}
    files: dict[str, list[str]] = {}
    for table in manifest.tables:
        rows = 0
        for name in table["parts"]:
            data = read_part(source, manifest, _record(records, name), master)
            rows += data.count(b"\n")
        if rows != int(table["rows"]):
            raise BackupError(f"table {table['name']} holds {rows} rows in the backup but the "
                              f"manifest says {table['rows']}")
    for area in manifest.file_areas:
        names: list[str] = []
        for name in area["parts"]:
            data = read_part(source, manifest, _record(records, name), master)
            names.extend(m.name for m in tar_members(name, data))
        if len(names) != int(area["files"]):
            raise BackupError(f"file area {area['area']} holds {len(names)} files in the "
                              f"backup but the manifest says {area['files']}")
        files[str(area["area"])] = names
    return Verified(manifest=manifest, parts=len(records),
                    stored_bytes=sum(int(r["size"]) for r in records.values()), files=files)


def _record(records: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    try:
        return records[name]
    except KeyError:
        raise BackupError(f"the manifest names part {name} but does not describe it: the "
                          "manifest is inconsistent") from None
