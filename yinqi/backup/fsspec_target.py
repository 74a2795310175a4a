"""Backups on any fsspec filesystem: object stores (``s3://``, ``gs://``, ...), ``memory://``,
or a local ``file://`` folder.

Object stores cannot rename a folder atomically, so a backup is written in place under
``<root>/<name>/`` and its ``manifest.json`` is written last: the manifest's presence is what
marks a finished backup, and ``names()`` lists only folders that hold one. A crashed backup
leaves a folder without a manifest, which is never listed. Deleting removes the manifest
first, so a half-deleted backup is never listed either.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.registry import known_implementations

from yinqi.backup.errors import BackupError
from yinqi.backup.target import MANIFEST, BackupSink, BackupSource, _safe_part


def filesystem(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path for ``url``; an unknown protocol or a missing driver
    package is a BackupError that names the protocol and what to install."""
    storage = url.rsplit("::", 1)[-1]  # in a chained URL, the last is where data lives
    protocol = storage.split("://", 1)[0] if "://" in storage else "file"
    try:
        fs, root = url_to_fs(url, **storage_options)
    except ValueError as exc:
        if "protocol not known" not in str(exc).lower():
            raise BackupError(f"backup target {protocol}://...: {exc}") from None
        raise BackupError(f"backup target protocol {protocol}:// is not known; use a local "
                          "folder or a URL such as s3://bucket/backups") from None
    except ImportError as exc:
        raise BackupError(f"backup target protocol {protocol}:// needs a package that is not "
                          f"installed: {_install_hint(protocol, exc)}") from None
    if not root.strip("/"):
        raise BackupError(f"backup target {protocol}://... names no folder; give one, e.g. "
                          f"{protocol}://bucket/backups")
    return fs, root.rstrip("/")


def _install_hint(protocol: str, exc: ImportError) -> str:
    known = known_implementations.get(protocol, {})
    hint = str(known.get("err") or exc)
    package = str(known.get("class", "")).split(".", 1)[0]
    # A driver outside fsspec is its own package; fsspec's own drivers name theirs in ``err``.
    if package and package != "fsspec":
        hint += f" (pip install {package})"
    return hint


def _plain_name(name: str) -> str:
    # One folder level only: a nested name would never be listed by ``names()``.
    if len(_safe_part(name).parts) != 1 or name.startswith("."):
        raise BackupError(f"backup name {name!r} is not a plain folder name")
    return name


class FsspecBackup:
    """A backup folder on an fsspec filesystem, read."""

    def __init__(self, fs: fsspec.AbstractFileSystem, folder: str, name: str) -> None:
        self.fs, self.folder, self.name = fs, folder, name
        self.location = fs.unstrip_protocol(folder)

    def read(self, part: str) -> bytes:
        path = f"{self.folder}/{_safe_part(part)}"
        try:
            return bytes(self.fs.cat_file(path))
        except (FileNotFoundError, IsADirectoryError):
            raise BackupError(f"backup part {part} is missing from {self.location}; the "
                              "backup is incomplete, restore from another one") from None

    def exists(self, part: str) -> bool:
        return bool(self.fs.isfile(f"{self.folder}/{_safe_part(part)}"))

    def sibling(self, name: str) -> BackupSource | None:
        folder = f"{self.folder.rsplit('/', 1)[0]}/{_plain_name(name)}"
        self.fs.invalidate_cache(folder)
        return FsspecBackup(self.fs, folder, name) \
            if self.fs.isfile(f"{folder}/{MANIFEST}") else None


class _FsspecSink:
    """Writes parts in place; the manifest, written last, finishes the backup."""

    def __init__(self, fs: fsspec.AbstractFileSystem, folder: str, name: str) -> None:
        self.fs, self.folder, self.name = fs, folder, name
        self.location = fs.unstrip_protocol(folder)
        self._written: set[str] = set()

    def write(self, part: str, data: bytes) -> None:
        path = f"{self.folder}/{_safe_part(part)}"
        if MANIFEST in self._written:
            raise BackupError(f"backup {self.name} is finished (its {MANIFEST} is written); "
                              f"part {part} comes too late")
        if part in self._written:
            raise BackupError(f"backup part {part} was already written to {self.location}")
        try:
            self.fs.pipe_file(path, data)
        except FileNotFoundError:
            # Local folders need their parents; object stores have none, so ask only here.
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, data)
        self._written.add(part)

    def commit(self) -> None:
        manifest = f"{self.folder}/{MANIFEST}"
        self.fs.invalidate_cache(self.folder)
        if MANIFEST not in self._written or not self.fs.isfile(manifest):
            raise BackupError(f"backup {self.name} at {self.location} has no {MANIFEST}: it "
                              "did not finish")

    def abort(self) -> None:
        _remove(self.fs, self.folder)


def _remove(fs: fsspec.AbstractFileSystem, folder: str) -> None:
    # Best effort, like ``rmtree(ignore_errors=True)``: an error here must not hide the one
    # that made us remove the folder, and a leftover folder without a manifest is never listed.
    for path, recursive in ((f"{folder}/{MANIFEST}", False), (folder, True)):
        try:
            fs.rm(path, recursive=recursive)
        except OSError:
            pass
    fs.invalidate_cache(folder)


class FsspecTarget:
    """``<url>/<name>/`` on any fsspec filesystem: one folder per backup."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.fs, self.root = filesystem(url, **storage_options)
        self.location = self.fs.unstrip_protocol(self.root)

    def _folder(self, name: str) -> str:
        return f"{self.root}/{_plain_name(name)}"

    def create(self, name: str) -> BackupSink:
        folder = self._folder(name)
        self.fs.invalidate_cache(self.root)
        if self.fs.exists(folder):
            raise BackupError(f"a backup folder named {name} already exists in {self.location}"
                              " (if it has no manifest it is an unfinished backup: delete it)")
        return _FsspecSink(self.fs, folder, name)

    def open(self, name: str) -> BackupSource:
        folder = self._folder(name)
        self.fs.invalidate_cache(self.root)
        if not self.fs.isdir(folder):
            raise BackupError(f"no backup named {name} in {self.location}")
        return FsspecBackup(self.fs, folder, name)

    def _folders(self) -> list[tuple[str, bool]]:
        """Each plain backup folder and whether it holds a manifest (is finished)."""
        self.fs.invalidate_cache(self.root)
        try:
            listing = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        folders = [str(item["name"]).rstrip("/").rsplit("/", 1)[-1] for item in listing
                   if item.get("type") == "directory"]
        return sorted((name, self.fs.isfile(f"{self.root}/{name}/{MANIFEST}"))
                      for name in folders if not name.startswith("."))

    def names(self) -> list[str]:
        return [name for name, finished in self._folders() if finished]

    def delete(self, name: str) -> None:
        """Remove a backup: the manifest first, so a half-deleted backup is never listed."""
        _remove(self.fs, self._folder(name))

    def unfinished(self) -> list[str]:
        """Folders of backups that never got their manifest (the writer died)."""
        return [name for name, finished in self._folders() if not finished]
