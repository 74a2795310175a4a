"""The one line an operator reads when SQLite's write lock stays taken past the busy timeout.

The timeout is 60 s, too long for a test: the engine here is Yinqi's own, with one more
connect hook that shortens the wait; the lock, the error and the line are the real ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from yinqi.store.engine import BUSY_TIMEOUT_SECONDS, failure_line, make_engine


def test_a_writer_locked_out_is_told_which_database_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "yinqi.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _impatient(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    try:
        with engine.begin() as conn:  # creates the file in WAL mode, as any command would
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        engine.dispose()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(OperationalError) as caught, engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        engine.dispose()
    assert "database is locked" in str(caught.value)
    assert failure_line(caught.value) == (
        f"database {url} is locked by another writer for more than {BUSY_TIMEOUT_SECONDS} s: "
        "a long import, batching, key rotation or restore holds it; run the command again "
        "when it is done (several workers at once need PostgreSQL)")


def test_an_error_from_an_engine_yinqi_did_not_make_still_gets_a_line(tmp_path: Path) -> None:
    # No URL to name (Prefect's own database, say): the driver's first line, nothing else.
    conn = sqlite3.connect(tmp_path / "other.db")
    try:
        conn.execute("SELECT * FROM nowhere")
    except sqlite3.OperationalError as raw:
        exc = OperationalError("SELECT * FROM nowhere", {}, raw)
    finally:
        conn.close()
    assert failure_line(exc) == "the database failed: no such table: nowhere"
