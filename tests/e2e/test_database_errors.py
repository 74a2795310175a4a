"""A database the command cannot use: one line naming it (never its password), never a
traceback. The SQLite lock, which only shows after a 60 s wait, is in
tests/unit/test_database_lock.py."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from cli_support import yinqi


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    base.update(YINQI_HOME=str(tmp_path / "home"), YINQI_DATABASE_URL=url, COLUMNS="200")
    return base


def _one_line(command: list[str], env: dict[str, str]) -> str:
    proc = yinqi(*command, env=env, check=1)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "s3cret" not in proc.stderr
    return lines[0]


def test_an_unreachable_postgresql_is_named_with_what_to_do(tmp_path: Path) -> None:
    # Nothing listens on port 1.
    env = _env(tmp_path, "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/yinqi")
    for command in (["init"], ["doctor"], ["payments", "list"]):
        assert _one_line(command, env) == (
            "yinqi: error: cannot connect to database "
            "postgresql+psycopg://postgres:***@127.0.0.1:1/yinqi: connection refused; "
            "start PostgreSQL or check YINQI_DATABASE_URL"), command


def test_a_missing_postgresql_database_is_named(tmp_path: Path, pg_admin_dsn: str) -> None:
    # The server answers, the database is not there: the server's reason, not a guess.
    name = f"yinqi_missing_{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path, f"postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/{name}")
    line = _one_line(["init"], env)
    assert line.startswith(f"yinqi: error: cannot connect to database "
                           f"postgresql+psycopg://postgres:***@127.0.0.1:5432/{name}: "), line
    assert f'database "{name}" does not exist' in line, line


def test_a_sqlite_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = _env(tmp_path, f"sqlite:///{blocker}/yinqi.db")
    line = _one_line(["init"], env)
    assert line.startswith(f"yinqi: error: cannot create the folder of database "
                           f"sqlite:///{blocker}/yinqi.db: "), line
