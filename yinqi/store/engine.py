"""Engines for the two supported databases, with the settings each one needs to be safe."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from yinqi.errors import StoreError
from yinqi.security.fields import FieldCrypto


#: How long a SQLite writer waits for another writer's lock before it gives up.
BUSY_TIMEOUT_SECONDS = 60


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def shown_url(url: str) -> str:
    """``url`` as operators may see it: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, fields: FieldCrypto | None = None, echo: bool = False) -> Engine:
    """``fields``: the keys for encrypted columns; without them, reading or writing an account
    number or a payee name fails with a clear error (tables without them still work)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, echo=echo)
    else:
        engine = create_engine(url, echo=echo, pool_pre_ping=True, future=True)
    engine.dialect.yinqi_fields = fields  # type: ignore[attr-defined]
    _name_failures(engine, url)
    return engine


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a database error came from: SQLAlchemy's exception names neither."""

    database: str
    sqlite: bool
    connecting: bool


_ORIGIN = "yinqi_origin"


def _name_failures(engine: Engine, url: str) -> None:
    database, sqlite = shown_url(url), is_sqlite(url)

    @event.listens_for(engine, "handle_error")
    def _remember(context: ExceptionContext) -> None:
        # Only a failure to connect has no connection: that tells "not reachable" apart from
        # a statement that failed on a live one.
        if context.sqlalchemy_exception is not None:
            setattr(context.sqlalchemy_exception, _ORIGIN,
                    _Origin(database, sqlite, connecting=context.connection is None))


def failure_line(exc: DBAPIError) -> str:
    """One line for an operator: which database, what went wrong, what to do. The driver's
    first line only: the rest (SQL, parameters, hints) is for a developer's traceback."""
    origin: _Origin | None = getattr(exc, _ORIGIN, None)
    name = f"database {origin.database}" if origin else "the database"
    if getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
        return (f"{name} is locked by another writer for more than {BUSY_TIMEOUT_SECONDS} s: "
                "a long import, batching, key rotation or restore holds it; run the command "
                "again when it is done (several workers at once need PostgreSQL)")
    reason = _reason(exc)
    if origin is None or not origin.connecting:
        return f"{name} failed: {reason}"
    if origin.sqlite:
        return (f"cannot open {name}: {reason}; check that its folder exists and is writable "
                "(YINQI_HOME, YINQI_DATABASE_URL)")
    return f"cannot connect to {name}: {reason}; start PostgreSQL or check YINQI_DATABASE_URL"


def _reason(exc: DBAPIError) -> str:
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    first = lines[0].strip() if lines else type(exc.orig).__name__
    # psycopg: 'connection failed: connection to server at "H", port P failed: WHY'; the
    # host and port are in the URL already.
    if first.startswith("connection failed:"):
        first = first.rsplit(" failed: ", 1)[-1]
    first = first.removeprefix("FATAL:").strip()
    # "Connection refused" reads as part of the sentence; "SSL ..." keeps its capitals.
    return first[:1].lower() + first[1:] if first[1:2].islower() else first


#: Execution option of a connection that only reads, and must see one consistent state.
READ_SNAPSHOT = "yinqi_read_snapshot"


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of database {shown_url(url)}: "
                             f"{exc.strerror} ({exc.filename}); check YINQI_HOME and "
                             "YINQI_DATABASE_URL") from exc
    engine = create_engine(url, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
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
