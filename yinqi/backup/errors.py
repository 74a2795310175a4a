"""The one error a backup, a verification or a restore raises on purpose."""

from __future__ import annotations

from yinqi.errors import YinqiError


class BackupError(YinqiError):
    """A backup cannot be made, verified or restored; the message names the part and the fix."""


class NoBackup(BackupError):
    """The target holds no backup at all yet."""
