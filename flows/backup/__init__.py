"""Backups on a schedule: nightly incremental, weekly full, weekly restore drill."""

from flows.backup.flow import backup, restore_drill

__all__ = ["backup", "restore_drill"]
