"""Full backups: a real installation backed up, its database deleted, and restored into fresh
SQLite and PostgreSQL databases (both ways round) with identical audit head and money totals;
a flipped byte, a missing part, a wrong master secret and a non-empty target each refused
with one clear error, and nothing restored."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from backup_support import assert_nothing_restored, encoded_rows
from conftest import BACKENDS, MASTER_SECRET, fresh_pg_database, module_db_url
from config import load_settings
from yinqi.backup import (
    BackupError,
    BackupResult,
    LocalTarget,
    create_backup,
    restore_backup,
    verify_backup,
)
from yinqi.backup.create import read_snapshot
from yinqi.backup.manifest import dump
from yinqi.backup.verify import read_part
from yinqi.bootstrap import App
from yinqi.cli.init_cmd import run_init
from yinqi.demo.approve import approve_pending
from yinqi.errors import YinqiError
from yinqi.store import make_engine
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.models import Payment
from yinqi.vouchers import ERP_CN, read_rows, validate_rows

GBK = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers" / "erp-payments-gbk.csv"
MASTER = MASTER_SECRET.encode()
RECEIPT_CONTEXT = "receipts/icbc/2024-05-06/R-0001.pdf"


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "backup-db")


@dataclass
class Source:
    app: App
    home: Path
    backups: Path
    result: BackupResult
    payees: list[str]
    head: tuple[int, str]
    totals: list[tuple[str, str, int, int]]
    receipt: bytes
    rows: dict[str, list[list[object]]]


def _totals(engine) -> list[tuple[str, str, int, int]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [(s, c, int(n), int(t)) for s, c, n, t in conn.execute(text(
            "SELECT state, currency, COUNT(*), SUM(amount_minor) FROM payments "
            "GROUP BY state, currency ORDER BY state, currency"))]


@pytest.fixture(scope="module")
def source(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """An initialised installation with imported, partly approved payments, an archived
    receipt, and one full backup of it."""
    root = tmp_path_factory.mktemp("backup-src")
    home = root / "home"
    app = App(load_settings(home=home, database_url=db_url, master_secret=MASTER_SECRET))
    run_init(app)
    data = GBK.read_bytes()
    with app.sessions.begin() as session:
        checked = validate_rows(read_rows(data, GBK.name), ERP_CN,
                                own_accounts=own_accounts(session), source="erp")
        import_vouchers(session, app.audit, source="erp", file_name=GBK.name, data=data,
                        rows_result=checked, imported_by="wu.maker",
                        risk_rules=app.config.risk_rules)
    approve_pending(app, datetime.now(UTC))
    receipt = app.files.seal(b"%PDF-1.7 receipt R-0001", RECEIPT_CONTEXT)
    path = home / RECEIPT_CONTEXT
    path.parent.mkdir(parents=True)
    path.write_bytes(receipt)
    with app.sessions() as session:
        payees = sorted(session.execute(select(Payment.creditor_name)).scalars())
        head = app.audit.head(session)
        assert app.audit.verify(session).ok
    assert payees and head[0] > 0
    backups = root / "backups"
    result = create_backup(app.engine, LocalTarget(backups), app.master_secret, kind="full",
                           home=home, config_dir=app.settings.config_dir)
    yield Source(app, home, backups, result, payees, head, _totals(app.engine), receipt,
                 encoded_rows(app.engine))
    app.close()


def _fresh_sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'restored' / 'yinqi.db'}"


def _assert_restored(src: Source, url: str, home: Path) -> None:
    restored = App(load_settings(home=home, database_url=url, master_secret=MASTER_SECRET))
    try:
        assert encoded_rows(restored.engine) == src.rows
        with restored.sessions() as session:
            assert restored.audit.verify(session).ok
            assert restored.audit.head(session) == src.head
            # Ciphertext came back as it was: the same master secret opens the same payees.
            assert sorted(session.execute(select(Payment.creditor_name)).scalars()) == \
                src.payees
        assert _totals(restored.engine) == src.totals
        receipt = (home / RECEIPT_CONTEXT).read_bytes()
        assert receipt == src.receipt
        assert restored.files.open(receipt, RECEIPT_CONTEXT) == b"%PDF-1.7 receipt R-0001"
    finally:
        restored.close()


# --- what a backup holds -------------------------------------------------------------------

def test_backup_is_one_folder_with_an_authenticated_manifest(source: Source) -> None:
    folder = source.backups / source.result.name
    assert source.result.name.endswith("-full") and folder.is_dir()
    assert LocalTarget(source.backups).names() == [source.result.name]
    manifest = json.loads((folder / "manifest.json").read_bytes())["body"]
    assert manifest["kind"] == "full" and manifest["backend"] in ("sqlite", "postgresql")
    assert manifest["schema_revision"] and manifest["audit_head"]["hash"] == source.head[1]
    assert [(t["state"], t["currency"], t["count"], t["amount_minor"])
            for t in manifest["payment_totals"]] == source.totals
    rows = {t["name"]: t["rows"] for t in manifest["tables"]}
    assert rows["payments"] == len(source.payees) and rows["audit_events"] == source.head[0]
    assert {a["area"]: a["files"] for a in manifest["files"]}["receipts"] == 1
    # Dependency order: a table never comes before one it refers to.
    order = [t["name"] for t in manifest["tables"]]
    assert order.index("companies") < order.index("bank_accounts") < order.index("payments")


def test_rows_are_raw_ciphertext_and_exact_integers(source: Source) -> None:
    verified = verify_backup(source.backups / source.result.name, MASTER)
    manifest = verified.manifest
    table = next(t for t in manifest.tables if t["name"] == "payments")
    columns = [c for c, _ in table["columns"]]
    record = next(r for r in manifest.parts if r["name"] == table["parts"][0])
    lines = read_part(LocalTarget(source.backups).open(source.result.name), manifest, record,
                      MASTER).decode().splitlines()
    rows = [dict(zip(columns, json.loads(line), strict=True)) for line in lines]
    assert all(type(r["amount_minor"]) is int and type(r["urgent"]) is bool for r in rows)
    assert all(r["created_at"].endswith("+00:00") for r in rows)
    names = {r["creditor_name"] for r in rows}
    assert not names & set(source.payees)            # never decrypted into the backup
    assert all(n.startswith("1~") for n in names)    # the stored ciphertext, key ID 1
    raw = b"".join(p.read_bytes() for p in (source.backups / source.result.name).rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    assert source.payees[0].encode() not in raw and b"amount_minor" not in raw


# --- restore -------------------------------------------------------------------------------

def test_restore_into_fresh_sqlite_and_postgresql(source: Source, tmp_path: Path,
                                                  pg_admin_dsn: str) -> None:
    backup = source.backups / source.result.name
    url = _fresh_sqlite(tmp_path)
    report = restore_backup(backup, url, MASTER, tmp_path / "home-sqlite")
    assert report.audit_head == {"seq": source.head[0], "hash": source.head[1]}
    assert report.audit_events_verified == source.head[0] and report.files >= 1
    _assert_restored(source, url, tmp_path / "home-sqlite")
    with fresh_pg_database(pg_admin_dsn) as pg_url:
        restore_backup(backup, pg_url, MASTER, tmp_path / "home-pg")
        _assert_restored(source, pg_url, tmp_path / "home-pg")
        # The sequences continue after the restored IDs: a new payment does not collide.
        engine = make_engine(pg_url)
        with engine.begin() as conn:
            new_id = conn.execute(text("SELECT nextval(pg_get_serial_sequence('payments', "
                                       "'id'))")).scalar_one()
            assert new_id > conn.execute(text("SELECT MAX(id) FROM payments")).scalar_one()
        engine.dispose()


def test_many_small_parts_and_the_config_folder_round_trip(source: Source,
                                                           tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "risk.toml").write_text("# 风控规则\n[rules]\n")
    result = create_backup(source.app.engine, tmp_path / "backups", MASTER, kind="full",
                           home=source.home, config_dir=config, rows_per_part=7,
                           file_part_bytes=1)
    manifest = verify_backup(tmp_path / "backups" / result.name, MASTER).manifest
    payments = next(t for t in manifest.tables if t["name"] == "payments")
    assert len(payments["parts"]) == -(-len(source.payees) // 7)
    keys = next(a for a in manifest.file_areas if a["area"] == "keys")
    assert keys["files"] > 1 and len(keys["parts"]) == keys["files"]  # one file per part
    url = _fresh_sqlite(tmp_path)
    restore_backup(tmp_path / "backups" / result.name, url, MASTER, tmp_path / "home")
    _assert_restored(source, url, tmp_path / "home")
    assert (tmp_path / "home" / "config" / "risk.toml").read_bytes() == \
        (config / "risk.toml").read_bytes()


# --- refusals ------------------------------------------------------------------------------

def _copy(source: Source, tmp_path: Path) -> Path:
    copy = tmp_path / "copy" / source.result.name
    shutil.copytree(source.backups / source.result.name, copy)
    return copy


def _refused(backup: Path, tmp_path: Path, master: bytes, *, names: str) -> BackupError:
    url = _fresh_sqlite(tmp_path)
    with pytest.raises(BackupError) as verify_error:
        verify_backup(backup, master)
    with pytest.raises(BackupError) as restore_error:
        restore_backup(backup, url, master, tmp_path / "new-home")
    assert isinstance(verify_error.value, YinqiError)
    for error in (verify_error.value, restore_error.value):
        assert names in str(error) and "\n" not in str(error)
    assert_nothing_restored(url, tmp_path / "new-home")
    return verify_error.value


def _a_table_part(backup: Path) -> Path:
    return sorted((backup / "db" / "payments").iterdir())[0]


def test_one_flipped_byte_is_named_and_nothing_is_restored(source: Source,
                                                           tmp_path: Path) -> None:
    backup = _copy(source, tmp_path)
    part = _a_table_part(backup)
    blob = bytearray(part.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    part.write_bytes(bytes(blob))
    error = _refused(backup, tmp_path, MASTER, names="db/payments/00001.jsonl")
    assert "damaged" in str(error)


def test_a_missing_part_is_named_and_nothing_is_restored(source: Source,
                                                         tmp_path: Path) -> None:
    backup = _copy(source, tmp_path)
    (backup / "files" / "receipts" / "00001.tar").unlink()
    error = _refused(backup, tmp_path, MASTER, names="files/receipts/00001.tar")
    assert "missing" in str(error)


def test_the_wrong_master_secret_is_refused(source: Source, tmp_path: Path) -> None:
    error = _refused(source.backups / source.result.name, tmp_path, b"w" * 48,
                     names="manifest.json")
    assert "master secret" in str(error)


def test_an_edited_manifest_is_refused(source: Source, tmp_path: Path) -> None:
    backup = _copy(source, tmp_path)
    document = json.loads((backup / "manifest.json").read_bytes())
    document["body"]["payment_totals"][0]["amount_minor"] += 1
    (backup / "manifest.json").write_text(json.dumps(document))
    _refused(backup, tmp_path, MASTER, names="manifest.json")


def test_a_part_swapped_between_backups_does_not_open(source: Source, tmp_path: Path) -> None:
    """Same key, valid ciphertext, but from another backup: its sha256 is patched into the
    manifest's place too, so only the associated data can catch it (and does)."""
    second = create_backup(source.app.engine, tmp_path / "other", MASTER, kind="full",
                           home=source.home)
    backup = _copy(source, tmp_path)
    other = tmp_path / "other" / second.name / "db" / "payments" / "00001.jsonl"
    shutil.copyfile(other, backup / "db" / "payments" / "00001.jsonl")
    document = json.loads((backup / "manifest.json").read_bytes())
    body = document["body"]
    for record in body["parts"]:
        if record["name"] == "db/payments/00001.jsonl":
            record["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
            record["size"] = other.stat().st_size
    (backup / "manifest.json").write_bytes(dump(body, MASTER))  # an insider holding the key
    with pytest.raises(BackupError, match="db/payments/00001.jsonl does not decrypt"):
        verify_backup(backup, MASTER)


def test_a_restore_that_does_not_prove_out_is_taken_back(source: Source,
                                                         tmp_path: Path) -> None:
    """A backup whose parts are sound but whose promised audit head is not what its rows
    give (an insider holding the key edited it): the rows go in, the proof fails, and the
    database and files are taken away again, so the same place takes a good restore next."""
    backup = _copy(source, tmp_path)
    document = json.loads((backup / "manifest.json").read_bytes())
    document["body"]["audit_head"]["hash"] = "0" * 64
    (backup / "manifest.json").write_bytes(dump(document["body"], MASTER))
    url, home = _fresh_sqlite(tmp_path), tmp_path / "home"
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    with pytest.raises(BackupError, match="removed again: audit head is"):
        restore_backup(backup, url, MASTER, home)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()
    assert [p for p in home.rglob("*") if p.is_file()] == []
    restore_backup(source.backups / source.result.name, url, MASTER, home)
    _assert_restored(source, url, home)


def test_restore_into_a_non_empty_database_is_refused(source: Source, tmp_path: Path) -> None:
    url = _fresh_sqlite(tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(BackupError, match="is not empty"):
        restore_backup(source.backups / source.result.name, url, MASTER, tmp_path / "home")
    assert not (tmp_path / "home").exists()


def test_a_file_that_differs_from_the_backup_stops_the_restore(source: Source,
                                                               tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / RECEIPT_CONTEXT).parent.mkdir(parents=True)
    (home / RECEIPT_CONTEXT).write_bytes(b"someone else's receipt")
    url = _fresh_sqlite(tmp_path)
    with pytest.raises(BackupError, match="differs from the backup's copy"):
        restore_backup(source.backups / source.result.name, url, MASTER, home)
    assert (home / RECEIPT_CONTEXT).read_bytes() == b"someone else's receipt"
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_the_snapshot_is_one_state_while_writers_carry_on(source: Source) -> None:
    """A writer commits while the snapshot is open: it is not blocked, and the snapshot does
    not see its write. (Late in the module: it changes the source after its backup.)"""
    from yinqi.backup.facts import row_count

    with read_snapshot(source.app.engine) as conn:
        if conn.dialect.name == "postgresql":
            assert conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        before = row_count(conn, "audit_events")
        with source.app.sessions.begin() as session:  # would wait for a writer's lock
            source.app.audit.append(session, actor="t", action="test.during_snapshot",
                                    subject_type="test")
        assert row_count(conn, "audit_events") == before
        with source.app.engine.connect() as other:
            assert row_count(other, "audit_events") == before + 1


# --- last: the source database is deleted ------------------------------------------------

def test_restore_after_deleting_the_database(source: Source) -> None:
    """The source database is gone (SQLite: its files; PostgreSQL: every table dropped) but
    its home is not: the backup brings the database back into the very same place, and the
    files still on disk, identical to the backup's, are left as they are."""
    url = source.app.settings.resolved_database_url
    if source.app.engine.dialect.name == "sqlite":
        source.app.close()
        db_file = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    else:
        with source.app.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        source.app.close()
    report = restore_backup(source.backups / source.result.name, url, MASTER, source.home)
    assert report.files >= 1
    _assert_restored(source, url, source.home)
