"""Incremental backups: a full backup and two incrementals of a real installation that keeps
working in between (payments approved, new vouchers, a role withdrawn, a receipt archived, a
configuration file edited and another removed). Each incremental holds only what changed, and
every point of the chain restores, into SQLite and into PostgreSQL, to exactly the database
and files of its moment. A missing or replaced incremental, a flipped byte and a wrong master
secret each restore nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from backup_support import assert_nothing_restored, encoded_rows
from conftest import BACKENDS, MASTER_SECRET, fresh_pg_database, module_db_url
from config import load_settings
from yinqi.backup import (
    BackupError,
    BackupResult,
    LocalTarget,
    catalog,
    create_backup,
    restore_backup,
    verify_backup,
)
from yinqi.bootstrap import App
from yinqi.cli.init_cmd import run_init
from yinqi.demo.approve import approve_pending
from yinqi.demo.vouchers import generate
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.models import User
from yinqi.vouchers import ERP_CN, read_rows, validate_rows

GBK = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers" / "erp-payments-gbk.csv"
MASTER = MASTER_SECRET.encode()
RECEIPT = "receipts/icbc/2024-05-07/R-0002.pdf"


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "backup-chain-db")


@dataclass
class Moment:
    backup: BackupResult
    rows: dict[str, list[list[object]]]
    files: dict[str, bytes]


@dataclass
class World:
    app: App
    home: Path
    config: Path
    target: LocalTarget
    full: Moment
    first: Moment
    second: Moment


def _files(home: Path, config: Path) -> dict[str, bytes]:
    out = {}
    for area, folder in (("archive", home / "archive"), ("receipts", home / "receipts"),
                         ("keys", home / "keys"), ("config", config)):
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file():
                    out[f"{area}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return out


def _import(app: App, data: bytes, file_name: str) -> None:
    with app.sessions.begin() as session:
        checked = validate_rows(read_rows(data, file_name), ERP_CN,
                                own_accounts=own_accounts(session), source="erp")
        import_vouchers(session, app.audit, source="erp", file_name=file_name, data=data,
                        rows_result=checked, imported_by="wu.maker",
                        risk_rules=app.config.risk_rules)


def _backup(world_app: App, target: LocalTarget, home: Path, config: Path, kind: str,
            at: datetime) -> Moment:
    result = create_backup(world_app.engine, target, MASTER, kind=kind,  # type: ignore[arg-type]
                           home=home, config_dir=config, now=at)
    return Moment(result, encoded_rows(world_app.engine), _files(home, config))


@pytest.fixture(scope="module")
def world(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("backup-chain")
    home, config = root / "home", root / "config"
    app = App(load_settings(home=home, database_url=db_url, master_secret=MASTER_SECRET))
    run_init(app)
    config.mkdir()
    (config / "notes.toml").write_text('owner = "treasury"\n')
    (config / "retired.toml").write_text('old = true\n')
    _import(app, GBK.read_bytes(), GBK.name)
    target = LocalTarget(root / "backups")
    start = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    full = _backup(app, target, home, config, "full", start)

    # A day's work: approvals, a role withdrawn, a receipt archived, a file edited.
    approve_pending(app, datetime.now(UTC))
    with app.sessions.begin() as session:
        user = session.execute(select(User).where(User.username == "wang.cfo")).scalar_one()
        assert user.roles
        user.roles = user.roles[1:] if len(user.roles) > 1 else []
    receipt = home / RECEIPT
    receipt.parent.mkdir(parents=True, exist_ok=True)
    receipt.write_bytes(app.files.seal(b"%PDF-1.7 receipt R-0002", RECEIPT))
    notes = config / "notes.toml"
    notes.write_text('owner = "treasury"\nreviewed = true\n')
    later = notes.stat().st_mtime_ns + 1_000_000_000  # a coarse clock still sees the edit
    os.utime(notes, ns=(later, later))
    first = _backup(app, target, home, config, "incremental", start + timedelta(days=1))

    # The next day: new vouchers arrive, a retired file goes.
    _import(app, generate(12, 7, day=date(2026, 11, 25), bad_rows=0), "day2.csv")
    (config / "retired.toml").unlink()
    second = _backup(app, target, home, config, "auto", start + timedelta(days=2))
    yield World(app, home, config, target, full, first, second)
    app.close()


# --- what an incremental holds -------------------------------------------------------------

def test_the_chain_is_a_full_and_two_linked_incrementals(world: World) -> None:
    entries = catalog(world.target, MASTER)
    assert [(e.name, e.kind, e.sequence, e.previous) for e in entries] == [
        (world.full.backup.name, "full", 0, None),
        (world.first.backup.name, "incremental", 1, world.full.backup.name),
        (world.second.backup.name, "incremental", 2, world.first.backup.name),
    ]
    assert world.second.backup.full_because is None
    assert {e.base for e in entries} == {world.full.backup.name}


def test_an_incremental_holds_only_what_changed(world: World) -> None:
    full, first, second = world.full.backup, world.first.backup, world.second.backup
    # Everything in the full backup.
    assert full.written == full.rows and sum(full.deleted.values()) == 0
    # Approvals touched payments and added audit events; nothing else was rewritten.
    assert 0 < first.written["payments"] <= first.rows["payments"]
    assert first.written["audit_events"] == \
        first.rows["audit_events"] - full.rows["audit_events"]
    assert first.written["approvals"] == first.rows["approvals"] > 0
    assert first.written["companies"] == first.written["bank_accounts"] == 0
    assert first.deleted["user_roles"] == 1  # the withdrawn role (a two-column key)
    assert first.files_written == 2  # the new receipt and the edited configuration
    # The next day: only the new vouchers' rows; yesterday's payments are not written again.
    assert second.written["payments"] == second.rows["payments"] - first.rows["payments"] == 12
    assert second.written["vouchers"] == 12 and second.written["approvals"] == 0
    assert second.files_written == 0
    assert sum(second.rows.values()) > 5 * sum(second.written.values())


# --- every point restores to its moment ----------------------------------------------------

def _restore_and_compare(world: World, moment: Moment, url: str, home: Path) -> None:
    report = restore_backup(world.target.root / moment.backup.name, url, MASTER, home,
                            config_dir=home / "config")
    assert report.chain[-1] == moment.backup.name
    restored = App(load_settings(home=home, database_url=url, master_secret=MASTER_SECRET))
    try:
        assert encoded_rows(restored.engine) == moment.rows
        with restored.sessions() as session:
            assert restored.audit.verify(session).ok
    finally:
        restored.close()
    assert _files(home, home / "config") == moment.files


@pytest.mark.parametrize("into", BACKENDS)
def test_each_point_of_the_chain_restores_to_its_moment(world: World, into: str,
                                                       tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    for label, moment in (("full", world.full), ("first", world.first),
                          ("second", world.second)):
        if into == "sqlite":
            url = f"sqlite:///{tmp_path / label / 'yinqi.db'}"
            (tmp_path / label).mkdir()
            _restore_and_compare(world, moment, url, tmp_path / f"home-{label}")
        else:
            with fresh_pg_database(request.getfixturevalue("pg_admin_dsn")) as url:
                _restore_and_compare(world, moment, url, tmp_path / f"home-{label}")
    assert not (tmp_path / "home-second" / "config" / "retired.toml").exists()
    assert b"reviewed" in (tmp_path / "home-first" / "config" / "notes.toml").read_bytes()


# --- broken chains restore nothing ---------------------------------------------------------

def _copy_target(world: World, tmp_path: Path) -> Path:
    copy = tmp_path / "backups"
    shutil.copytree(world.target.root, copy)
    return copy


def _refused(backup: Path, tmp_path: Path, master: bytes, *, names: str) -> str:
    url = f"sqlite:///{tmp_path / 'restored.db'}"
    with pytest.raises(BackupError) as verify_error:
        verify_backup(backup, master)
    with pytest.raises(BackupError) as restore_error:
        restore_backup(backup, url, master, tmp_path / "new-home")
    for error in (verify_error.value, restore_error.value):
        assert names in str(error) and "\n" not in str(error)
    assert_nothing_restored(url, tmp_path / "new-home")
    return str(verify_error.value)


def test_a_deleted_incremental_breaks_the_chain_and_nothing_is_restored(
        world: World, tmp_path: Path) -> None:
    copy = _copy_target(world, tmp_path)
    shutil.rmtree(copy / world.first.backup.name)
    message = _refused(copy / world.second.backup.name, tmp_path, MASTER,
                       names=world.first.backup.name)
    assert "is missing" in message and "broken" in message
    # The full backup on its own is still whole.
    assert verify_backup(copy / world.full.backup.name, MASTER).manifest.kind == "full"
    # And the next scheduled backup does not build on the broken chain.
    with pytest.raises(BackupError, match="cannot make an incremental backup"):
        create_backup(world.app.engine, copy, MASTER, kind="incremental", home=world.home)


def test_a_replaced_incremental_is_not_taken_for_the_original(world: World,
                                                             tmp_path: Path) -> None:
    """Another backup moved into the predecessor's folder: it authenticates, but it is not
    the backup the incremental was built on."""
    copy = _copy_target(world, tmp_path)
    other = create_backup(world.app.engine, tmp_path / "other", MASTER, kind="full",
                          home=world.home)
    shutil.rmtree(copy / world.first.backup.name)
    shutil.copytree(tmp_path / "other" / other.name, copy / world.first.backup.name)
    message = _refused(copy / world.second.backup.name, tmp_path, MASTER,
                       names=world.first.backup.name)
    assert "is not the one" in message


def test_a_flipped_byte_in_an_earlier_incremental_is_named(world: World,
                                                          tmp_path: Path) -> None:
    copy = _copy_target(world, tmp_path)
    part = sorted((copy / world.first.backup.name / "db" / "payments").iterdir())[0]
    blob = bytearray(part.read_bytes())
    blob[-3] ^= 0x80
    part.write_bytes(bytes(blob))
    message = _refused(copy / world.second.backup.name, tmp_path, MASTER,
                       names="db/payments/00001.jsonl")
    assert "damaged" in message and world.first.backup.name in message


def test_the_wrong_master_secret_restores_nothing_from_a_chain(world: World,
                                                              tmp_path: Path) -> None:
    message = _refused(world.target.root / world.second.backup.name, tmp_path, b"w" * 48,
                       names="manifest.json")
    assert "master secret" in message


# --- choosing the kind ---------------------------------------------------------------------

def test_an_incremental_needs_a_chain_and_auto_falls_back_to_full(world: World,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="cannot make an incremental backup: there is no "
                                          "backup"):
        create_backup(world.app.engine, tmp_path / "empty", MASTER, kind="incremental",
                      home=world.home)
    assert not any((tmp_path / "empty").iterdir()) if (tmp_path / "empty").exists() else True
    result = create_backup(world.app.engine, tmp_path / "empty", MASTER, kind="auto",
                           home=world.home)
    assert result.kind == "full"
    assert result.full_because == "this is the first backup in this target"
    again = create_backup(world.app.engine, tmp_path / "empty", MASTER, kind="auto",
                          home=world.home)
    # Nothing changed in between: an incremental with no rows and no files.
    assert again.kind == "incremental" and again.previous == result.name
    assert sum(again.written.values()) == 0 and again.files_written == 0
