"""Restoring a backup chain into an empty database (SQLite or PostgreSQL, either way round).

The chain (the full backup and every incremental up to the one asked for) is verified
completely before anything is written: a damaged, incomplete or foreign backup, or a chain
with a backup missing, restores nothing. The full backup's rows go in first; each incremental
then deletes the rows deleted since its predecessor (children first) and writes its new and
changed rows (parents first), all in one transaction. Rows go in raw (plain SQL parameters, no model types), so
ciphertext stays the ciphertext that was backed up and is never re-encrypted. Afterwards the
restored database is checked against the manifest: row counts, money per payment state, and
the audit chain, which must verify and end at the manifest's head hash.

Restoring an installation (``frozen_by``: who restores) then freezes sending in the restored
database, because payments made after the backup may already be at the bank
(:mod:`yinqi.backup.guard`); a failure there takes the restore back like any other. The drill's
scratch restore, thrown away afterwards, leaves ``frozen_by`` unset.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url

from yinqi.backup import facts
from yinqi.backup.chain import Chain
from yinqi.backup.codec import row_decoder, value_decoder
from yinqi.backup.errors import BackupError
from yinqi.backup.guard import SendingFrozen, freeze_sending
from yinqi.backup.index import TableDelta
from yinqi.backup.manifest import Manifest
from yinqi.backup.parts import read_part, records_of, tar_members
from yinqi.backup.target import BackupSource, as_source
from yinqi.backup.verify import Verified, verify_backup
from yinqi.security.fields import FieldCrypto
from yinqi.security.master import derive_key
from yinqi.store.audit_log import AuditLog
from yinqi.store.engine import make_engine, session_factory
from yinqi.store.migrate import upgrade

_INSERT_BATCH = 5000


@dataclass(frozen=True)
class RestoreReport:
    backup: str
    database: str
    schema_revision: str | None
    chain: list[str]
    rows: dict[str, int]
    files: int
    payment_totals: list[dict[str, Any]]
    audit_head: dict[str, Any]
    audit_events_verified: int
    #: What the restore froze (None for a scratch restore, which freezes nothing).
    sending_frozen: SendingFrozen | None = None


def restore_backup(
    backup: Path | str | BackupSource,
    database_url: str,
    master: bytes,
    home: Path,
    *,
    config_dir: Path | None = None,
    frozen_by: str | None = None,
) -> RestoreReport:
    """Restore into the EMPTY database at ``database_url`` and the files into ``home``
    (configuration into ``config_dir``, by default ``home/config``); then prove it whole.

    ``frozen_by``: the actor restoring an installation to run on; every company account of
    the restored database is then frozen until a person checked the bank and released it."""
    verified = verify_backup(as_source(backup), master)
    manifest = verified.manifest
    shown = make_url(database_url).render_as_string(hide_password=True)
    destinations = {"config": config_dir or home / "config"}
    present = _files_already_present(verified, master, home, destinations)
    engine = make_engine(database_url, fields=FieldCrypto(master))
    written: list[Path] = []
    try:
        _refuse_non_empty(engine, shown)
        try:
            if manifest.schema_revision is not None:
                upgrade(engine, manifest.schema_revision)
            with engine.begin() as conn:
                _restore_rows(conn, verified.chain, master)
            files = _restore_files(verified, master, home, destinations, present, written)
            report = _check(engine, manifest, master, shown, files, verified.chain.names)
            if frozen_by is not None:
                report = replace(report, sending_frozen=_freeze_sending(
                    engine, manifest, master, frozen_by))
            return report
        except BaseException:
            # Half a restore is worse than none: the database was empty and the files new,
            # so taking them away again leaves things as they were, and a rerun can start.
            _undo(engine, written)
            raise
    finally:
        engine.dispose()


def _freeze_sending(engine: Engine, manifest: Manifest, master: bytes,
                    actor: str) -> SendingFrozen:
    # The freeze is written with this version's models: a backup of an older schema is
    # brought up to date first (what `yinqi init` would do next anyway).
    upgrade(engine)
    with session_factory(engine).begin() as session:
        return freeze_sending(session, AuditLog(derive_key(master, "audit/chain")),
                              backup=manifest.folder, taken_at=manifest.created_at,
                              actor=actor, now=datetime.now(UTC))


def _undo(engine: Engine, written: list[Path]) -> None:
    from yinqi.store.models import Base

    for path in written:
        path.unlink(missing_ok=True)
    with suppress(Exception):  # the restore's own error is the one to report
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _refuse_non_empty(engine: Engine, shown: str) -> None:
    with engine.connect() as conn:
        tables = inspect(conn).get_table_names()
    if tables:
        raise BackupError(f"database {shown} is not empty ({len(tables)} tables, e.g. "
                          f"{sorted(tables)[0]}): restore only into an empty database")


def _insert_statement(conn: Connection, table: dict[str, Any], *, upsert: bool) -> Any:
    q = facts.quote
    columns = [(str(c), str(k)) for c, k in table["columns"]]
    postgres = conn.dialect.name == "postgresql"
    values = [f"CAST(:p{i} AS JSON)" if postgres and kind == "json" else f":p{i}"
              for i, (_, kind) in enumerate(columns)]
    sql = (f"INSERT INTO {q(conn, table['name'])} "
           f"({', '.join(q(conn, c) for c, _ in columns)}) VALUES ({', '.join(values)})")
    if upsert:
        pk = [str(c) for c in table["primary_key"]]
        rest = [c for c, _ in columns if c not in pk]
        sql += f" ON CONFLICT ({', '.join(q(conn, c) for c in pk)}) DO " + (
            "UPDATE SET " + ", ".join(f"{q(conn, c)} = excluded.{q(conn, c)}" for c in rest)
            if rest else "NOTHING")
    return text(sql)


def _restore_rows(conn: Connection, chain: Chain, master: bytes) -> None:
    if conn.dialect.name == "sqlite":
        # Checked at commit instead of per row: a table that refers to itself is safe in
        # any order, and a broken reference still aborts the whole restore.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    for position, member in enumerate(chain.members):
        manifest, source = member.manifest, member.source
        records = records_of(manifest)
        if position:
            for table in reversed(manifest.tables):  # children before their parents
                if int(table["deleted"]):
                    delta = TableDelta.unpack(read_part(source, manifest,
                                                        records[table["index"]], master),
                                              table["index"])
                    _delete(conn, table, delta.deleted.tolist())
        for table in manifest.tables:  # parents before their children, as written
            parts = (read_part(source, manifest, records[name], master)
                     for name in table["parts"])
            if position == 0 and conn.dialect.name == "postgresql":
                _copy_rows(conn, table, parts)
                continue
            statement = _insert_statement(conn, table, upsert=position > 0)
            decode = row_decoder(conn.dialect.name,
                                 [(str(c), str(k)) for c, k in table["columns"]])
            for data in parts:
                batch: list[dict[str, Any]] = []
                for line in data.splitlines():
                    batch.append(decode(json.loads(line)))
                    if len(batch) >= _INSERT_BATCH:
                        conn.execute(statement, batch)
                        batch = []
                if batch:
                    conn.execute(statement, batch)
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, chain.head.manifest)


def _copy_rows(conn: Connection, table: dict[str, Any], parts: Iterator[bytes]) -> None:
    """The full backup's rows into an empty PostgreSQL table through COPY, several times
    faster than batched INSERTs; incrementals upsert, which COPY cannot."""
    q = facts.quote
    columns = [(str(c), str(k)) for c, k in table["columns"]]
    decode = value_decoder("postgresql", columns)
    sql = (f"COPY {q(conn, table['name'])} ({', '.join(q(conn, c) for c, _ in columns)}) "
           "FROM STDIN")
    cursor = conn.connection.driver_connection.cursor()
    with cursor, cursor.copy(sql) as copy:
        for data in parts:
            for line in data.splitlines():
                copy.write_row(decode(json.loads(line)))


def _delete(conn: Connection, table: dict[str, Any], keys: list[Any]) -> None:
    q = facts.quote
    pk = [str(c) for c in table["primary_key"]]
    where = " AND ".join(f"{q(conn, c)} = :k{i}" for i, c in enumerate(pk))
    statement = text(f"DELETE FROM {q(conn, table['name'])} WHERE {where}")
    params = [{"k0": k} if isinstance(k, int) else
              {f"k{i}": v for i, v in enumerate(json.loads(k))} for k in keys]
    for start in range(0, len(params), _INSERT_BATCH):
        conn.execute(statement, params[start:start + _INSERT_BATCH])


def _reset_sequences(conn: Connection, manifest: Manifest) -> None:
    """Identity columns continue after the restored IDs, not from 1 (which would collide)."""
    for table in manifest.tables:
        pk = table["primary_key"]
        kinds = dict((c, k) for c, k in table["columns"])
        if len(pk) != 1 or kinds[pk[0]] != "int":
            continue
        sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                {"t": facts.quote(conn, table["name"]), "c": pk[0]}).scalar()
        if sequence is None:
            continue
        conn.execute(text(
            f"SELECT setval(:s, COALESCE((SELECT MAX({facts.quote(conn, pk[0])}) FROM "
            f"{facts.quote(conn, table['name'])}), 0) + 1, false)"), {"s": sequence})


def _wanted_files(verified: Verified, home: Path, destinations: dict[str, Path]
                  ) -> dict[tuple[int, str], dict[str, Path]]:
    """(chain member, part) -> the files to take from it: each file's newest version."""
    wanted: dict[tuple[int, str], dict[str, Path]] = {}
    for area, paths in verified.files.items():
        root = Path(destinations.get(area, home / area))
        for path, (position, part) in paths.items():
            wanted.setdefault((position, part), {})[path] = root / path
    return wanted


def _members(verified: Verified, master: bytes, position: int, part: str
             ) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    member = verified.chain.members[position]
    data = read_part(member.source, member.manifest, records_of(member.manifest)[part], master)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for tar_member in tar_members(part, data):
            extracted = tar.extractfile(tar_member)
            assert extracted is not None  # tar_members admits regular files only
            yield tar_member, extracted.read()


def _files_already_present(verified: Verified, master: bytes, home: Path,
                           destinations: dict[str, Path]) -> set[Path]:
    """Files already on disk exactly as backed up (the database was lost, the home was not)
    are left as they are; one that differs stops the restore before anything is written."""
    present: set[Path] = set()
    for (position, part), paths in sorted(_wanted_files(verified, home, destinations).items()):
        if not any(p.exists() for p in paths.values()):
            continue
        for tar_member, data in _members(verified, master, position, part):
            path = paths.get(tar_member.name)
            if path is None or not path.exists():
                continue
            if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
                present.add(path)
                continue
            raise BackupError(f"{path} already exists and differs from the backup's copy: "
                              "restore into a new home, or move it away first (nothing was "
                              "restored)")
    return present


def _restore_files(verified: Verified, master: bytes, home: Path,
                   destinations: dict[str, Path], present: set[Path],
                   written: list[Path]) -> int:
    """Each file's newest version in the chain, read from the part that holds it."""
    count = 0
    for (position, part), paths in sorted(_wanted_files(verified, home, destinations).items()):
        for tar_member, data in _members(verified, master, position, part):
            path = paths.get(tar_member.name)
            if path is None or path in present:
                continue  # a newer backup of the chain holds a newer version, or it is here
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         (tar_member.mode & 0o777) or 0o600)
            written.append(path)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.utime(path, (tar_member.mtime, tar_member.mtime))
            count += 1
    return count + len(present)


def _check(engine: Engine, manifest: Manifest, master: bytes, shown: str,
           files: int, chain: list[str]) -> RestoreReport:
    problems: list[str] = []
    with engine.connect() as conn:
        rows = {t: facts.row_count(conn, t) for t in manifest.row_counts}
        totals = facts.payment_totals(conn)
        head = facts.audit_head(conn)
    for table, expected in manifest.row_counts.items():
        if rows[table] != expected:
            problems.append(f"{table} has {rows[table]} rows, the backup {expected}")
    if totals != manifest.payment_totals:
        problems.append("payment totals per state differ from the backup's")
    if head != manifest.audit_head:
        problems.append(f"audit head is #{head['seq']} {head['hash'][:12]}…, the backup's "
                        f"#{manifest.audit_head['seq']} {manifest.audit_head['hash'][:12]}…")
    with session_factory(engine)() as session:
        verdict = AuditLog(derive_key(master, "audit/chain")).verify(session)
    if not verdict.ok:
        problems.append(str(verdict))
    if problems:
        raise BackupError(f"the database restored into {shown} does not match backup "
                          f"{manifest.folder}, so it was removed again: {'; '.join(problems)}")
    return RestoreReport(backup=manifest.folder, chain=chain, database=shown,
                         schema_revision=manifest.schema_revision, rows=rows, files=files,
                         payment_totals=totals, audit_head=head,
                         audit_events_verified=verdict.checked)
