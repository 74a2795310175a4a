"""The ``yinqi`` command as an operator runs it: a real process, real files, a real database."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest
from cli_support import yinqi

import config as config_pkg

SHIPPED = Path(config_pkg.__file__).parent / "defaults"



@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    base.update(YINQI_HOME=str(tmp_path / "home"), YINQI_DATABASE_URL=db_url, COLUMNS="200")
    return base


def _edit_by_hand(db_url: str, sql: str) -> None:
    """What someone with a database client would do: no Yinqi code involved."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute(sql)


def test_init_is_safe_to_run_twice(env: dict[str, str]) -> None:
    first = yinqi("init", "--json", env=env)
    changes = json.loads(first.stdout)["changes"]
    assert any("company" in c for c in changes)
    assert any("signing key" in c for c in changes)
    assert any("master secret" in c for c in changes)
    secret = Path(env["YINQI_HOME"]) / "secrets" / "master.key"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    again = yinqi("init", env=env)
    assert "nothing to do" in again.stdout
    assert json.loads(yinqi("init", "--json", env=env).stdout)["changes"] == []
    ok = yinqi("audit", "verify", env=env)
    assert "audit chain intact" in ok.stdout


def test_a_hand_edited_audit_row_fails_verify_and_is_named(env: dict[str, str], db_url: str) -> None:
    yinqi("init", env=env)
    _edit_by_hand(db_url, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    proc = yinqi("audit", "verify", env=env, check=1)
    assert "BROKEN at event #2" in proc.stderr
    assert "edited" in proc.stderr
    as_json = json.loads(yinqi("audit", "verify", "--json", env=env, check=1).stdout)
    assert as_json["ok"] is False and as_json["first_bad_seq"] == 2


def test_a_deleted_audit_row_is_named(env: dict[str, str], db_url: str) -> None:
    yinqi("init", env=env)
    _edit_by_hand(db_url, "DELETE FROM audit_events WHERE seq = 1")
    proc = yinqi("audit", "verify", env=env, check=1)
    assert "BROKEN at event #" in proc.stderr and "missing" in proc.stderr


BAD_CONFIGS = {
    "toml syntax": ("banks.toml", 'dialect = "iso20022"', 'dialect = "iso20022'),
    "wrong type": ("banks.toml", "batch_size_limit = 5000", 'batch_size_limit = "abc"'),
    "float money": ("approval_policy.toml", 'up_to = "50000.00"', "up_to = 50000.00"),
    "unknown bank": ("accounts.toml", 'bank = "cmb-sandbox"', 'bank = "abc-bank"'),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_malformed_config_file_gives_one_line_and_exit_2(
    case: str, tmp_path: Path, env: dict[str, str]
) -> None:
    name, good, bad = BAD_CONFIGS[case]
    folder = tmp_path / "conf"
    folder.mkdir()
    text = (SHIPPED / name).read_text()
    assert good in text, "the shipped default changed; update this test's case"
    (folder / name).write_text(text.replace(good, bad, 1))
    env["YINQI_CONFIG_DIR"] = str(folder)
    for command in (["init"], ["doctor"], ["audit", "verify"]):
        proc = yinqi(*command, env=env, check=2)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert name in lines[0] and "Traceback" not in proc.stderr
        assert proc.stdout == ""


def test_a_bad_environment_variable_gives_one_line_and_exit_2(env: dict[str, str]) -> None:
    env["YINQI_LANG"] = "fr"
    proc = yinqi("init", env=env, check=2)
    assert proc.stderr.count("\n") == 1 and "YINQI_LANG" in proc.stderr


def _bank_config(folder: Path, reachable_port: int, closed_port: int) -> None:
    text = (SHIPPED / "banks.toml").read_text()
    text = text.replace("https://127.0.0.1:8443/banks/icbc",
                        f"https://127.0.0.1:{reachable_port}/banks/icbc")
    text = text.replace("https://127.0.0.1:8443/banks/cmb",
                        f"https://127.0.0.1:{closed_port}/banks/cmb")
    folder.mkdir()
    (folder / "banks.toml").write_text(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_reports_each_check_and_names_the_unreachable_bank(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        _bank_config(tmp_path / "conf", listener.getsockname()[1], _free_port())
        env["YINQI_CONFIG_DIR"] = str(tmp_path / "conf")

        before = json.loads(yinqi("doctor", "--json", env=env, check=1).stdout)
        status = {c["name"]: c for c in before["checks"]}
        assert status["migrations"]["status"] == "fail"
        assert "yinqi init" in status["migrations"]["detail"]

        yinqi("init", env=env)
        report = json.loads(yinqi("doctor", "--json", env=env, check=1).stdout)
        table = yinqi("doctor", env=env, check=1).stdout
    status = {c["name"]: c for c in report["checks"]}
    for name in ("config", "database", "migrations", "master secret", "key signing-1",
                 "audit chain", "prefect api", "bank icbc-sandbox"):
        assert status[name]["status"] == "ok", status[name]
    assert status["bank cmb-sandbox"]["status"] == "fail"
    assert "not reachable" in status["bank cmb-sandbox"]["detail"]
    assert status["bank icbc-sandbox CA"]["status"] == "warn"
    # A new installation has no backup and no drill yet: said, not failed.
    assert status["backups"]["status"] == "warn" and "yinqi backup create" in \
        status["backups"]["detail"]
    assert status["restore drill"]["status"] == "warn"
    assert report["ok"] is False
    assert "bank cmb-sandbox" in table and "1 failed" in table
