"""Backups of a Yinqi installation: consistent, encrypted, verifiable, restorable.

A *full* backup holds every table in one snapshot, plus the archive, receipts, key files and
configuration; an *incremental* holds only the rows and files changed since the newest backup
of its chain. Any backup restores (with the chain it builds on) into an empty SQLite or
PostgreSQL database, and the result is proven against the manifest.
"""

from yinqi.backup.chain import Chain, Entry, catalog, latest, load_chain, resolve
from yinqi.backup.create import BackupKind, BackupResult, create_backup
from yinqi.backup.errors import BackupError
from yinqi.backup.manifest import Manifest
from yinqi.backup.restore import RestoreReport, restore_backup
from yinqi.backup.retention import RetentionPlan, plan_retention
from yinqi.backup.target import BackupSink, BackupSource, BackupTarget, LocalBackup, LocalTarget
from yinqi.backup.targets import open_target
from yinqi.backup.verify import Verified, verify_backup

__all__ = [
    "BackupError",
    "BackupKind",
    "BackupResult",
    "BackupSink",
    "BackupSource",
    "BackupTarget",
    "Chain",
    "Entry",
    "LocalBackup",
    "LocalTarget",
    "Manifest",
    "RestoreReport",
    "RetentionPlan",
    "Verified",
    "catalog",
    "create_backup",
    "latest",
    "load_chain",
    "open_target",
    "plan_retention",
    "resolve",
    "restore_backup",
    "verify_backup",
]
