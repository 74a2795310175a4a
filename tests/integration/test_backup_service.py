"""Backups as an installation runs them (yinqi.backup.service): what killed backups leave is
cleared once stale, broken and unreadable backups are alerted once and never deleted, and the
drill restores into its own database (a scratch SQLite file, or a configured PostgreSQL
database it leaves empty), refuses a database that is not empty or is the live one, and warns
when the newest backup is stale."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from conftest import MASTER_SECRET
from config import BackupConfig, load_settings
from yinqi.backup.service import drill, list_backups, prune_backups, take_backup
from yinqi.bootstrap import App
from yinqi.cli.init_cmd import run_init
from yinqi.store import make_engine
from yinqi.store.models import Alert, AuditEventRow


def _app(home: Path, **backup: object) -> App:
    settings = load_settings(home=home, master_secret=MASTER_SECRET)
    plain = App(settings)
    config = dataclasses.replace(plain.config, backup=BackupConfig(**backup))  # type: ignore[arg-type]
    plain.close()
    return App(settings, config)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    installation = _app(tmp_path / "home")
    run_init(installation)
    yield installation
    installation.close()


def _alerts(app: App, kind: str) -> list[Alert]:
    with app.sessions() as session:
        return list(session.execute(select(Alert).where(Alert.kind == kind)).scalars())


def test_what_a_killed_backup_left_is_removed_once_stale(app: App) -> None:
    now = datetime.now(UTC)
    take_backup(app, "full", actor="t", now=now)
    backups = app.settings.home / "backups"
    old = backups / f".{(now - timedelta(days=2)):%Y%m%dT%H%M%S}Z-incr.partial"
    young = backups / f".{now:%Y%m%dT%H%M%S}Z-incr-2.partial"
    foreign = backups / ".something.partial"
    for folder in (old, young, foreign):
        (folder / "db").mkdir(parents=True)
    assert [e.name for e in list_backups(app)] == [p.name for p in backups.iterdir()
                                                   if not p.name.startswith(".")]
    pruned = prune_backups(app, actor="t", now=now)
    assert pruned.abandoned == [old.name]
    assert not old.exists() and young.exists() and foreign.exists()


def test_broken_and_unreadable_backups_are_alerted_once_and_kept(app: App) -> None:
    now = datetime.now(UTC)
    full, _ = take_backup(app, "full", actor="t", now=now - timedelta(minutes=3), prune=False)
    middle, _ = take_backup(app, "incremental", actor="t", now=now - timedelta(minutes=2),
                            prune=False)
    last, _ = take_backup(app, "incremental", actor="t", now=now - timedelta(minutes=1),
                          prune=False)
    backups = app.settings.home / "backups"
    shutil.rmtree(backups / middle.name)
    (backups / full.name / "manifest.json").write_text("{}")
    for _ in range(2):
        pruned = prune_backups(app, actor="t", now=now)
        assert pruned.broken == {last.name: f"{last.name} follows {middle.name}, which is "
                                            "missing or unreadable"}
        assert pruned.unreadable == [full.name] and pruned.deleted == []
    assert (backups / last.name).exists() and (backups / full.name).exists()
    [broken] = _alerts(app, "backup.broken_chain")
    [unreadable] = _alerts(app, "backup.unreadable")
    assert last.name in broken.message and unreadable.severity == "critical"
    # The next nightly run does not build on the broken chain: it starts a new one, and says so.
    result, _ = take_backup(app, "auto", actor="t", now=now)
    assert result.kind == "full" and "is missing" in (result.full_because or "")
    assert _alerts(app, "backup.chain_restarted")


def test_the_first_backup_is_full_without_an_alert_and_an_unreadable_one_is_no_first(
        app: App) -> None:
    now = datetime.now(UTC)
    first, _ = take_backup(app, "auto", actor="t", now=now - timedelta(minutes=1), prune=False)
    assert first.kind == "full"
    assert first.full_because == "this is the first backup in this target"
    assert not _alerts(app, "backup.chain_restarted")
    # Only an unreadable backup there: not a first backup, a chain that cannot go on.
    (app.settings.home / "backups" / first.name / "manifest.json").write_text("{}")
    again, _ = take_backup(app, "auto", actor="t", now=now, prune=False)
    assert again.kind == "full"
    assert "there is no readable backup" in (again.full_because or "")
    assert _alerts(app, "backup.chain_restarted")


def test_the_drill_restores_into_scratch_sqlite_and_leaves_nothing(app: App) -> None:
    take_backup(app, "auto", actor="t")
    report = drill(app, actor="system:backup")
    assert report.ok, report.problems
    assert report.rows > 0 and report.audit_head["seq"] > 0 and report.warnings == []
    assert list((app.settings.home / "drills").iterdir()) == []
    with app.sessions() as session:
        drills = session.execute(select(func.count()).select_from(AuditEventRow).where(
            AuditEventRow.action == "backup.drill")).scalar_one()
    assert drills == 1


def test_a_stale_newest_backup_makes_the_drill_warn(app: App) -> None:
    take_backup(app, "auto", actor="t")
    report = drill(app, actor="t", now=datetime.now(UTC) + timedelta(days=3))
    assert report.ok and "hours old" in report.warnings[0]
    assert _alerts(app, "backup.stale")


def test_the_drill_needs_a_backup(app: App) -> None:
    report = drill(app, actor="t")
    assert not report.ok and "there is no backup" in report.problems[0]
    assert _alerts(app, "backup.drill_failed")[0].severity == "critical"


@pytest.mark.postgres
def test_a_configured_postgresql_drill_database_is_left_empty(tmp_path: Path,
                                                              pg_database: str) -> None:
    installation = _app(tmp_path / "home", drill_database_url=pg_database)
    run_init(installation)
    try:
        take_backup(installation, "auto", actor="t")
        report = drill(installation, actor="t")
        assert report.ok, report.problems
        assert report.database.startswith("postgresql")
        engine = make_engine(pg_database)
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
        # Something in it that is not the drill's: refused, and left alone.
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE precious (id integer)")
        refused = drill(installation, actor="t")
        assert not refused.ok and "is not empty" in refused.problems[0]
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == ["precious"]
        engine.dispose()
    finally:
        installation.close()


def test_the_live_database_is_never_a_drill_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    live = f"sqlite:///{home / 'yinqi.db'}"
    installation = _app(home, drill_database_url=live)
    run_init(installation)
    try:
        take_backup(installation, "auto", actor="t")
        report = drill(installation, actor="t")
        assert not report.ok and "is the live database" in report.problems[0]
        with installation.sessions() as session:
            assert session.execute(select(func.count()).select_from(
                AuditEventRow)).scalar_one() > 0
    finally:
        installation.close()
