"""Where backups live: a small interface, a local directory by default.

A backup is one folder of named parts plus ``manifest.json``. Writers stage under a hidden
name and appear under their real name only once complete, so a crashed backup is never
mistaken for a whole one. An fsspec-backed target (``s3://...``) implements the same two
protocols.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Protocol

from yinqi.backup.errors import BackupError

MANIFEST = "manifest.json"


class BackupSource(Protocol):
    """One backup, read."""

    name: str
    location: str

    def read(self, part: str) -> bytes: ...
    def exists(self, part: str) -> bool: ...
    def sibling(self, name: str) -> BackupSource | None:
        """Another finished backup in the same target (an incremental's predecessor), or
        None when there is none of that name."""
        ...


class BackupSink(Protocol):
    """One backup being written; ``commit`` makes it visible, ``abort`` discards it."""

    name: str
    location: str  # where the finished backup will be, for the operator

    def write(self, part: str, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class BackupTarget(Protocol):
    """Where backups live. ``names`` lists finished backups only (those with a manifest)."""

    location: str

    def create(self, name: str) -> BackupSink: ...
    def open(self, name: str) -> BackupSource: ...
    def names(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...
    def unfinished(self) -> list[str]:
        """What backups that never finished left behind (``delete`` removes one)."""
        ...


def _safe_part(part: str) -> PurePosixPath:
    path = PurePosixPath(part)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        raise BackupError(f"backup part name {part!r} is not a plain relative path")
    return path


class LocalBackup:
    """A backup folder on a local disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.location = str(self.folder)

    def read(self, part: str) -> bytes:
        try:
            return (self.folder / _safe_part(part)).read_bytes()
        except FileNotFoundError:
            raise BackupError(f"backup part {part} is missing from {self.folder}; the backup "
                              "is incomplete, restore from another one") from None

    def exists(self, part: str) -> bool:
        return (self.folder / _safe_part(part)).is_file()

    def sibling(self, name: str) -> BackupSource | None:
        folder = self.folder.parent / _safe_part(name)
        return LocalBackup(folder) if (folder / MANIFEST).is_file() else None


class _LocalSink:
    def __init__(self, final: Path) -> None:
        self.name, self.location = final.name, str(final)
        self._final = final
        self._staging = final.with_name(f".{final.name}.partial")
        self._staging.mkdir(parents=True, mode=0o700)

    def write(self, part: str, data: bytes) -> None:
        path = self._staging / _safe_part(part)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> None:
        os.rename(self._staging, self._final)

    def abort(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)


class LocalTarget:
    """``<root>/<name>/``: one folder per backup."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def create(self, name: str) -> BackupSink:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / _safe_part(name)
        if final.exists():
            raise BackupError(f"a backup named {name} already exists in {self.root}")
        return _LocalSink(final)

    def open(self, name: str) -> BackupSource:
        folder = self.root / _safe_part(name)
        if not folder.is_dir():
            raise BackupError(f"no backup named {name} in {self.root}")
        return LocalBackup(folder)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())

    def unfinished(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name.startswith(".") and p.name.endswith(".partial"))

    def delete(self, name: str) -> None:
        """Remove a backup: the manifest first, so a half-deleted backup is never listed."""
        folder = self.root / _safe_part(name)
        (folder / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def as_source(backup: Path | str | BackupSource) -> BackupSource:
    if isinstance(backup, str | os.PathLike):
        folder = Path(backup)
        if not folder.is_dir():
            raise BackupError(f"{folder} is not a backup folder")
        return LocalBackup(folder)
    return backup
