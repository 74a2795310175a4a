"""Engines for the two supported databases, with the settings each one needs to be safe."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from yinqi.security.fields import FieldCrypto


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, fields: FieldCrypto | None = None, echo: bool = False) -> Engine:
    """``fields``: the keys for encrypted columns; without them, reading or writing an account
    number or a payee name fails with a clear error (tables without them still work)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, echo=echo)
    else:
        engine = create_engine(url, echo=echo, pool_pre_ping=True, future=True)
    engine.dialect.yinqi_fields = fields  # type: ignore[attr-defined]
    return engine


#: Execution option of a connection that only reads, and must see one consistent state.
READ_SNAPSHOT = "yinqi_read_snapshot"


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Take the write lock up front: a deferred transaction that later upgrades to a write
        # can fail with "database is locked" instead of waiting, and claims must serialise.
        # A read-only snapshot (a backup) asks for a deferred one: in WAL mode it sees one
        # state of the database while writers carry on.
        if conn.get_execution_options().get(READ_SNAPSHOT):
            conn.exec_driver_sql("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
