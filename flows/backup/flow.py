"""Backups and restore drills, as operators schedule and watch them in the Prefect UI."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from tasks import alerts as alert_tasks
from tasks import backup as t


@flow(name="Backup", log_prints=False)
def backup(kind: Literal["auto", "full", "incremental"] = "auto") -> dict[str, Any]:
    """Back up the database, receipts, archived bank files, key files and configuration,
    encrypted; then apply the retention rules. ``auto``: an incremental when the newest
    backup's chain is usable, else a full backup (the run says why)."""
    out: dict[str, Any] = {}
    with alert_tasks.delivering(out):
        out["backup"] = t.back_up(kind)
        out["retention"] = t.apply_retention()
    return out


@flow(name="Restore drill", log_prints=False)
def restore_drill() -> dict[str, Any]:
    """Restore the newest backup chain into a scratch database and prove it: row counts,
    money per payment state, the audit chain and its head in the live trail. Fails (with a
    critical alert and an artifact saying why) when the backups would not restore."""
    out: dict[str, Any] = {}
    with alert_tasks.delivering(out):
        out["drill"] = t.restore_drill()
    return out
