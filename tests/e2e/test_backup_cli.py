"""`yinqi backup ...` as an operator runs it, in real processes, on SQLite and PostgreSQL.

A full backup, work, an incremental; then the database is deleted and `yinqi backup restore`
brings it back with the same audit head hash and the same money per payment state. A flipped
byte, a deleted incremental and a wrong master secret each give one clear line, exit 1, and
restore nothing. The drill proves the newest chain and fails loudly when it is damaged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from backup_support import assert_nothing_restored
from cli_support import app_of, as_user, code_of, give_password, yinqi
from conftest import BACKENDS, MASTER_SECRET, module_db_url
from yinqi.demo.vouchers import generate
from yinqi.store import make_engine
from yinqi.store.models import Alert, AuditEventRow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers"


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "backup-cli-db")


def _facts(env: dict[str, str]) -> dict[str, Any]:
    app = app_of(env)
    try:
        with app.engine.connect() as conn:
            totals = [tuple(r) for r in conn.execute(text(
                "SELECT state, currency, COUNT(*), SUM(amount_minor) FROM payments "
                "GROUP BY state, currency ORDER BY state, currency"))]
        with app.sessions() as session:
            head = app.audit.head(session)
            assert app.audit.verify(session).ok
        return {"head": list(head), "totals": [[s, c, int(n), int(t)] for s, c, n, t in totals]}
    finally:
        app.close()


@pytest.fixture(scope="module")
def installation(db_url: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[dict[str, Any]]:
    """A full backup of a fresh installation with imported vouchers, then more vouchers and
    an incremental; the facts the restore must reproduce."""
    root = tmp_path_factory.mktemp("backup-cli")
    env = {"PATH": "/usr/bin:/bin", "YINQI_HOME": str(root / "home"),
           "YINQI_DATABASE_URL": db_url, "YINQI_MASTER_SECRET": MASTER_SECRET}
    yinqi("init", env=env)
    yinqi("vouchers", "import", str(FIXTURES / "erp-payments-gbk.csv"), "--json", env=env)
    full = json.loads(yinqi("backup", "create", "--json", env=env).stdout)
    more = root / "more.csv"
    more.write_bytes(generate(15, 3, day=date(2026, 11, 25), bad_rows=0))
    yinqi("vouchers", "import", str(more), "--json", env=env)
    incremental = json.loads(yinqi("backup", "create", "--incremental", "--json",
                                   env=env).stdout)
    yield {"env": env, "root": root, "full": full, "incremental": incremental,
           "facts": _facts(env), "backups": root / "home" / "backups"}


def _one_line_error(proc: Any, *needles: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("yinqi: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_create_makes_a_full_then_an_incremental_of_only_the_new_work(
        installation: dict[str, Any]) -> None:
    full, incremental = installation["full"], installation["incremental"]
    assert full["kind"] == "full" and full["rows_written"] == full["rows"]
    assert incremental["kind"] == "incremental" and incremental["previous"] == full["name"]
    assert 15 <= incremental["rows_written"] < incremental["rows"] / 2
    listed = json.loads(yinqi("backup", "list", "--json", env=installation["env"]).stdout)
    assert [b["name"] for b in listed["backups"]] == [full["name"], incremental["name"]]
    verified = json.loads(yinqi("backup", "verify", "--json", env=installation["env"]).stdout)
    assert verified["ok"] and verified["chain"] == [full["name"], incremental["name"]]
    # The manifest's head: the last audit event before the incremental's own record.
    assert verified["audit_head"]["seq"] < installation["facts"]["head"][0]


def test_a_flipped_byte_restores_nothing(installation: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "backups"
    shutil.copytree(installation["backups"], copy)
    part = sorted((copy / installation["incremental"]["name"] / "db" / "payments").iterdir())[0]
    blob = bytearray(part.read_bytes())
    blob[40] ^= 0x01
    part.write_bytes(bytes(blob))
    env = installation["env"]
    _one_line_error(yinqi("backup", "verify", "--target", str(copy), env=env, check=None),
                    "db/payments/00001.jsonl", "damaged")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _one_line_error(yinqi("backup", "restore", "--target", str(copy), "--database", url,
                          "--home", str(tmp_path / "h"), env=env, check=None),
                    "db/payments/00001.jsonl", "damaged")
    assert_nothing_restored(url, tmp_path / "h")


def test_a_deleted_incremental_restores_nothing(installation: dict[str, Any],
                                                tmp_path: Path) -> None:
    """Three backups; the middle one is deleted: the newest cannot be restored."""
    env = installation["env"]
    copy = tmp_path / "backups"
    shutil.copytree(installation["backups"], copy)
    app = app_of(env)
    try:
        from yinqi.backup import create_backup

        third = create_backup(app.engine, copy, app.master_secret, kind="incremental",
                              home=app.settings.home)
    finally:
        app.close()
    shutil.rmtree(copy / installation["incremental"]["name"])
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _one_line_error(yinqi("backup", "restore", third.name, "--target", str(copy), "--database",
                          url, "--home", str(tmp_path / "h"), env=env, check=None),
                    installation["incremental"]["name"], "is missing")
    assert_nothing_restored(url, tmp_path / "h")


def test_the_wrong_master_secret_restores_nothing(installation: dict[str, Any],
                                                  tmp_path: Path) -> None:
    env = {**installation["env"], "YINQI_MASTER_SECRET": "another-secret-" + "y" * 32}
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _one_line_error(yinqi("backup", "restore", installation["incremental"]["name"],
                          "--database", url, "--home", str(tmp_path / "h"), env=env,
                          check=None),
                    "manifest.json", "master secret")
    assert_nothing_restored(url, tmp_path / "h")


def test_the_drill_proves_the_newest_chain_and_fails_loudly_when_damaged(
        installation: dict[str, Any], tmp_path: Path) -> None:
    env = installation["env"]
    report = json.loads(yinqi("backup", "drill", "--json", env=env).stdout)
    assert report["ok"] and report["chain"] == [installation["full"]["name"],
                                                installation["incremental"]["name"]]
    assert report["problems"] == [] and report["rows"] > 0
    # A damaged copy as the target of an installation whose drill reads it.
    copy = tmp_path / "backups"
    shutil.copytree(installation["backups"], copy)
    (copy / installation["full"]["name"] / "index" / "files.json").unlink()
    config = tmp_path / "config"
    config.mkdir()
    (config / "backup.toml").write_text(f'target = "{copy}"\n')
    damaged = {**env, "YINQI_CONFIG_DIR": str(config)}
    proc = yinqi("backup", "drill", "--json", env=damaged, check=None)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["ok"] is False
    _one_line_error(proc, "restore drill failed", "index/files.json", "missing")
    app = app_of(env)
    try:
        with app.sessions() as session:
            kinds = set(session.execute(select(Alert.kind)).scalars())
    finally:
        app.close()
    assert "backup.drill_failed" in kinds


def test_restore_after_deleting_the_database(installation: dict[str, Any]) -> None:
    """Last: the live database is deleted; `yinqi backup restore` (newest chain, into the
    installation's own database and home) reproduces the audit head hash and the money per
    payment state, and leaves sending frozen (doctor fails) until an administrator releases
    it. Once people have passwords again, a restore needs an administrator."""
    env = installation["env"]
    # What the backup holds: everything up to the incremental (its own audit record, and the
    # drill's, came after).
    before = json.loads(yinqi("backup", "verify", installation["incremental"]["name"],
                              "--json", env=env).stdout)
    url = env["YINQI_DATABASE_URL"]
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{url.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)
    else:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    restored = json.loads(yinqi("backup", "restore", installation["incremental"]["name"],
                                "--json", env=env).stdout)
    assert restored["audit_head"] == before["audit_head"]
    assert restored["payment_totals"] == before["payment_totals"]
    frozen = restored["sending_frozen"]
    assert frozen["backup"] == installation["incremental"]["name"] and frozen["accounts"]
    after = _facts(env)
    # The backup's events as they were, then the restore's own (who restored, what it froze).
    app = app_of(env)
    try:
        with app.sessions() as session:
            restored_head = session.execute(select(AuditEventRow.hash).where(
                AuditEventRow.seq == before["audit_head"]["seq"])).scalar_one()
            since = list(session.execute(select(AuditEventRow.action).where(
                AuditEventRow.seq > before["audit_head"]["seq"])).scalars())
    finally:
        app.close()
    assert restored_head == before["audit_head"]["hash"]
    assert sorted(since) == ["backup.restored", "risk.frozen"] and after["head"][0] == \
        before["audit_head"]["seq"] + 2
    assert [[t["state"], t["currency"], t["count"], t["amount_minor"]]
            for t in before["payment_totals"]] == after["totals"]
    assert "intact" in yinqi("audit", "verify", env=env).stdout
    doctor = {c["name"]: c for c in json.loads(
        yinqi("doctor", "--json", env=env, check=None).stdout)["checks"]}
    assert doctor["sending after restore"]["status"] == "fail"
    admin = as_user(env, "admin")
    released = json.loads(yinqi("backup", "release", "--all", "--as", "admin", "--code",
                                code_of(env, "admin"), "--reason", "statements checked",
                                "--json", env=admin).stdout)
    assert released["ok"] and released["step"] == "released"
    doctor = {c["name"] for c in json.loads(
        yinqi("doctor", "--json", env=env, check=None).stdout)["checks"]}
    assert "sending after restore" not in doctor
    # The installation has people with passwords again: the service identity may back up,
    # but only an administrator may restore.
    give_password(env, "wang.cfo")
    proc = yinqi("backup", "restore", "--database", "sqlite:////nonexistent/x.db",
                 env=env, check=None)
    _one_line_error(proc, "backup restore", "needs a person")
    assert json.loads(yinqi("backup", "create", "--json", env=env).stdout)["kind"] == \
        "incremental"
