"""Backups as an installation runs them: into the configured target, audited, pruned by the
retention rules, and proven by restore drills.

The CLI and the flows both call these; each takes the process's :class:`~yinqi.bootstrap.App`.
What a backup, a pruning or a drill did is an audit event in the live database; a failed drill,
a broken chain or a stale newest backup is also an alert.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from yinqi.backup import retention
from yinqi.backup.chain import Entry, catalog, latest, resolve
from yinqi.backup.create import FIRST_BACKUP, BackupKind, BackupResult, create_backup
from yinqi.backup.errors import BackupError
from yinqi.backup.restore import RestoreReport, restore_backup
from yinqi.backup.target import BackupTarget
from yinqi.backup.targets import open_target
from yinqi.backup.verify import Verified, verify_backup

if TYPE_CHECKING:
    from yinqi.bootstrap import App

#: A newest backup older than this makes the drill warn: the nightly backup is not running.
STALE_AFTER = timedelta(hours=36)


def backup_target(app: App) -> BackupTarget:
    spec = app.config.backup.target
    if "://" not in spec and "::" not in spec and not Path(spec).expanduser().is_absolute():
        return open_target(app.settings.home / spec)
    return open_target(spec)


def _audit(app: App, actor: str, action: str, details: dict[str, Any], now: datetime) -> None:
    with app.sessions.begin() as session:
        app.audit.append(session, actor=actor, action=action, subject_type="backup",
                         details=details, at=now)


def _alert(app: App, kind: str, severity: str, subject: str, message: str,
           details: dict[str, Any], now: datetime, *, once: bool = False) -> None:
    """``once``: not again while an alert of this kind and subject is unacknowledged (what
    retention finds wrong is found again every night)."""
    from yinqi.store.alerts import raise_once
    from yinqi.store.models import Alert

    with app.sessions.begin() as session:
        if once:
            alert = raise_once(session, kind=kind, severity=severity, subject=subject,
                               message=message, details=details, created_at=now)
            if alert is None:
                return
        else:
            alert = Alert(kind=kind, severity=severity, subject=subject, message=message,
                          details=details, created_at=now)
            session.add(alert)
        session.flush()
        app.audit.append(session, actor="system", action="alert.raised", subject_type="alert",
                         subject_ids=[alert.id], details={"kind": kind, "severity": severity},
                         at=now)


# --- create and prune ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pruned:
    kept: list[str]
    deleted: list[str]
    reasons: dict[str, str]
    broken: dict[str, str]
    unreadable: list[str]
    #: What backups killed half way left behind, removed once a day old.
    abandoned: list[str] = field(default_factory=list)


#: An unfinished backup this old is no longer being written: its writer died.
ABANDONED_AFTER = timedelta(days=1)
_STAMP = re.compile(r"(\d{8}T\d{6})Z")


def _abandoned(target: BackupTarget, now: datetime) -> list[str]:
    out = []
    for name in target.unfinished():
        found = _STAMP.search(name)
        if found is None:
            continue  # not a folder Yinqi names: not Yinqi's to delete
        started = datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        if now - started > ABANDONED_AFTER:
            out.append(name)
    return out


def take_backup(app: App, kind: BackupKind, *, actor: str, now: datetime | None = None,
                prune: bool = True) -> tuple[BackupResult, Pruned | None]:
    """One backup into the configured target, then the retention rules applied."""
    now = now or datetime.now(UTC)
    target = backup_target(app)
    result = create_backup(app.engine, target, app.master_secret, kind=kind,
                           home=app.settings.home, config_dir=app.settings.config_dir,
                           now=now)
    details = {"backup": result.name, "kind": result.kind, "previous": result.previous,
               "parts": result.parts, "stored_bytes": result.stored_bytes,
               "rows_written": sum(result.written.values()),
               "files_written": result.files_written, "target": target.location}
    if result.full_because:
        details["full_because"] = result.full_because
    _audit(app, actor, "backup.created", details, now)
    if result.full_because and result.full_because != FIRST_BACKUP:
        _alert(app, "backup.chain_restarted", "warning", f"backup {result.name}",
               f"an incremental backup was due but a full one was taken: "
               f"{result.full_because}", {"backup": result.name}, now)
    return result, (prune_backups(app, actor=actor, now=now) if prune else None)


def prune_backups(app: App, *, actor: str, now: datetime | None = None,
                  dry_run: bool = False) -> Pruned:
    """Delete what the retention rules do not keep (newest first, so a chain is never left
    without its ancestors) and what killed backups left behind. Backups that cannot be
    restored (a broken chain, a manifest that does not authenticate) are never deleted here:
    they are alerted, for a person to look at."""
    now = now or datetime.now(UTC)
    target = backup_target(app)
    entries = catalog(target, app.master_secret)
    readable = [e for e in entries if e.problem is None and e.created_at is not None]
    unreadable = [e.name for e in entries if e.problem is not None]
    abandoned = _abandoned(target, now)
    config = app.config.backup
    plan = retention.plan_retention(
        [retention.Entry(e.name, e.kind, e.created_at, e.previous)  # type: ignore[arg-type]
         for e in readable],
        keep_daily=config.keep_daily, keep_weekly=config.keep_weekly, tz=config.timezone)
    pruned = Pruned(plan.keep, plan.delete, plan.reasons, dict(plan.broken_reasons),
                    unreadable, abandoned)
    if dry_run:
        return pruned
    for name in [*plan.delete, *abandoned]:
        target.delete(name)
    if plan.delete or abandoned:
        _audit(app, actor, "backup.pruned",
               {"deleted": plan.delete, "kept": len(plan.keep), "abandoned": abandoned,
                "keep_daily": config.keep_daily, "keep_weekly": config.keep_weekly}, now)
    for name, why in plan.broken_reasons.items():
        _alert(app, "backup.broken_chain", "warning", f"backup {name}",
               f"backup {name} cannot be restored: {why}", {"backup": name}, now, once=True)
    for name in unreadable:
        _alert(app, "backup.unreadable", "critical", f"backup {name}",
               f"the manifest of backup {name} does not authenticate: damaged, or made with "
               "another master secret", {"backup": name}, now, once=True)
    return pruned


def list_backups(app: App) -> list[Entry]:
    return catalog(backup_target(app), app.master_secret)


def verify(app: App, name: str | None) -> Verified:
    target = backup_target(app)
    return verify_backup(resolve(target, name, app.master_secret), app.master_secret)


def restore(app: App, name: str | None, database_url: str, home: Path,
            config_dir: Path | None = None, *, actor: str) -> RestoreReport:
    """Restore an installation to run on: sending stays frozen until a person has checked
    the bank since the backup (:mod:`yinqi.backup.guard`)."""
    target = backup_target(app)
    return restore_backup(resolve(target, name, app.master_secret), database_url,
                          app.master_secret, home, config_dir=config_dir, frozen_by=actor)


# --- the restore drill ---------------------------------------------------------------------

@dataclass(frozen=True)
class DrillReport:
    ok: bool
    backup: str | None
    chain: list[str]
    database: str
    seconds: float
    rows: int
    files: int
    audit_head: dict[str, Any]
    payment_totals: list[dict[str, Any]]
    backup_age_hours: float | None
    problems: list[str]
    warnings: list[str]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def drill(app: App, *, actor: str, now: datetime | None = None) -> DrillReport:
    """Restore the newest backup chain into a scratch database, prove it against its manifest
    and against the live audit trail, and clean up. A failure is an alert and an audit
    event, and the report says what failed; the scratch database is removed either way."""
    now = now or datetime.now(UTC)
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir=_drills_folder(app)))
    configured = app.config.backup.drill_database_url
    url = configured or f"sqlite:///{scratch / 'drill.db'}"
    started = time.monotonic()
    name: str | None = None
    report: RestoreReport | None = None
    problems: list[str] = []
    warnings: list[str] = []
    age: float | None = None
    filled = False
    try:
        target = backup_target(app)
        name = latest(target, app.master_secret)
        newest = next(e for e in catalog(target, app.master_secret) if e.name == name)
        if newest.created_at is not None:
            age = (now - newest.created_at).total_seconds() / 3600
            if now - newest.created_at > STALE_AFTER:
                warnings.append(f"the newest backup {name} is {age:.0f} hours old: is the "
                                "nightly backup running?")
        if configured:
            _usable_drill_database(app, configured)
        filled = True  # from here on, whatever is in the scratch database is the drill's
        # Not frozen_by: nothing ever sends from the scratch database, which is thrown away.
        report = restore_backup(target.open(name), url, app.master_secret, scratch / "home",
                                config_dir=scratch / "home" / "config")
        problems.extend(_in_live_trail(app, report.audit_head))
    except BackupError as exc:
        problems.append(str(exc))
    finally:
        if configured and filled:
            _empty_drill_database(configured)
        shutil.rmtree(scratch, ignore_errors=True)
    result = DrillReport(
        ok=not problems, backup=name, chain=report.chain if report else [],
        database=report.database if report else url, seconds=round(time.monotonic() -
                                                                      started, 3),
        rows=sum(report.rows.values()) if report else 0, files=report.files if report else 0,
        audit_head=report.audit_head if report else {},
        payment_totals=report.payment_totals if report else [],
        backup_age_hours=round(age, 1) if age is not None else None,
        problems=problems, warnings=warnings)
    _audit(app, actor, "backup.drill", {
        "backup": name, "ok": result.ok, "chain": result.chain, "seconds": result.seconds,
        "rows": result.rows, "problems": problems, "warnings": warnings}, now)
    if problems:
        _alert(app, "backup.drill_failed", "critical", f"restore drill of {name or 'backups'}",
               f"the restore drill failed: {problems[0]}", {"backup": name or ""}, now)
    elif warnings:
        _alert(app, "backup.stale", "warning", f"backup {name}", warnings[0],
               {"backup": name or ""}, now)
    return result


def _drills_folder(app: App) -> Path:
    folder = app.settings.home / "drills"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _in_live_trail(app: App, head: dict[str, Any]) -> list[str]:
    """The backup's audit head must be an event of the live trail, with the same hash: the
    backup is a true prefix of this installation's history, not another installation's."""
    from yinqi.store.models import AuditEventRow

    if int(head.get("seq", 0)) == 0:
        return []
    with app.sessions() as session:
        live = session.execute(select(AuditEventRow.hash).where(
            AuditEventRow.seq == int(head["seq"]))).scalar_one_or_none()
    if live != head.get("hash"):
        return [f"the backup's audit head (event #{head['seq']}) is not event #{head['seq']} "
                "of the live audit trail: the backup is not of this installation's history"]
    return []


def _usable_drill_database(app: App, url: str) -> None:
    """The drill empties its database afterwards, so it must never be given one that holds
    anything: least of all the live one."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from yinqi.store.engine import make_engine

    shown = make_url(url).render_as_string(hide_password=True)
    if make_url(url) == app.engine.url:
        raise BackupError(f"drill_database_url {shown} is the live database; give the drill a "
                          "database of its own")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f"drill database {shown} is not empty ({len(tables)} tables); the "
                          "drill only uses an empty database, and leaves it empty")


def _empty_drill_database(url: str) -> None:
    from yinqi.store.engine import make_engine
    from yinqi.store.models import Base

    engine = make_engine(url)
    try:
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
