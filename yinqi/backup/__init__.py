"""Backups of a Yinqi installation: consistent, encrypted, verifiable, restorable.

This first slice makes *full* backups (every table in one snapshot, plus the archive,
receipts, key files and configuration), verifies them, and restores them into an empty
SQLite or PostgreSQL database, proving the result against the manifest.
"""

from yinqi.backup.create import BackupResult, create_full_backup
from yinqi.backup.errors import BackupError
from yinqi.backup.manifest import Manifest
from yinqi.backup.restore import RestoreReport, restore_backup
from yinqi.backup.target import BackupSink, BackupSource, BackupTarget, LocalBackup, LocalTarget
from yinqi.backup.verify import Verified, verify_backup

__all__ = [
    "BackupError",
    "BackupResult",
    "BackupSink",
    "BackupSource",
    "BackupTarget",
    "LocalBackup",
    "LocalTarget",
    "Manifest",
    "RestoreReport",
    "Verified",
    "create_full_backup",
    "restore_backup",
    "verify_backup",
]
