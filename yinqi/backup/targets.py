"""Opening a backup target from what an operator writes: a folder or a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from yinqi.backup.errors import BackupError
from yinqi.backup.target import BackupTarget, LocalTarget


def open_target(spec: str | Path) -> BackupTarget:
    """A plain path or ``file://`` URL is a local folder (written under a hidden name and
    renamed into place when finished); any other URL (``s3://bucket/backups``,
    ``memory://...``) is an fsspec filesystem, where the manifest written last marks a
    finished backup."""
    if isinstance(spec, Path):
        return LocalTarget(spec)
    text = spec.strip()
    if not text:
        raise BackupError("the backup target is empty; give a folder or a URL such as "
                          "s3://bucket/backups")
    if "://" not in text and "::" not in text:
        return LocalTarget(Path(text).expanduser())
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise BackupError(f"backup target {text} is not a local folder URL; write "
                              "file:///absolute/path")
        return LocalTarget(Path(unquote(parts.path)))
    # Imported here: fsspec costs a quarter second, and local targets never need it.
    from yinqi.backup.fsspec_target import FsspecTarget

    return FsspecTarget(text)
