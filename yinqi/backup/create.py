"""A full backup: every table in one consistent snapshot, plus the files Yinqi keeps.

The database is read in ONE transaction: on SQLite the engine begins with ``BEGIN IMMEDIATE``,
so writers wait and the reader sees one state; on PostgreSQL a ``REPEATABLE READ, READ ONLY``
transaction sees one snapshot while writers carry on. Rows are read raw (plain SQL, no model
types): encrypted columns stay ciphertext, so a backup holds nothing the database did not.

Parts are bounded (``rows_per_part`` rows, ``file_part_bytes`` bytes of files) so a table of
millions of payments never has to fit in memory at once.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, text

from yinqi.backup import facts
from yinqi.backup.codec import kind_of, row_encoder
from yinqi.backup.errors import BackupError
from yinqi.backup.manifest import FORMAT_VERSION, dump
from yinqi.backup.sealing import KEY_ID, part_key, seal_part, sha256_hex
from yinqi.backup.target import MANIFEST, BackupSink, BackupTarget, LocalTarget
from yinqi.store.models import Base

ROWS_PER_PART = 50_000
FILE_PART_BYTES = 64 * 1024 * 1024
#: Folders under the home a restore needs. ``secrets/`` (the master secret) never leaves.
HOME_AREAS = ("archive", "receipts", "keys")


@dataclass(frozen=True)
class BackupResult:
    name: str
    location: str
    parts: int
    stored_bytes: int
    rows: dict[str, int]


def table_spec(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "columns": [[c.name, kind_of(c.type)] for c in table.columns],
        "primary_key": [c.name for c in table.primary_key.columns],
    }


def create_full_backup(
    engine: Engine,
    target: BackupTarget | Path,
    master: bytes,
    *,
    home: Path,
    config_dir: Path | None = None,
    now: datetime | None = None,
    rows_per_part: int = ROWS_PER_PART,
    file_part_bytes: int = FILE_PART_BYTES,
) -> BackupResult:
    """Write ``<target>/<UTC timestamp>-full/``: sealed parts and an authenticated manifest."""
    if isinstance(target, Path | str):
        target = LocalTarget(Path(target))
    created = (now or datetime.now(UTC)).astimezone(UTC)
    name = f"{created.strftime('%Y%m%dT%H%M%S')}Z-full"
    existing = set(target.names())
    suffix = 2
    while name in existing:
        name = f"{created.strftime('%Y%m%dT%H%M%S')}Z-full-{suffix}"
        suffix += 1
    sink = target.create(name)
    try:
        result = _write(engine, sink, master, name=name, created=created, home=home,
                        config_dir=config_dir, rows_per_part=rows_per_part,
                        file_part_bytes=file_part_bytes)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return result


class _Parts:
    """Seals, writes and records each part."""

    def __init__(self, sink: BackupSink, master: bytes, backup_id: str) -> None:
        self.sink, self.backup_id = sink, backup_id
        self.key = part_key(master, KEY_ID)
        self.records: list[dict[str, Any]] = []

    def add(self, part: str, data: bytes, **meta: Any) -> str:
        blob = seal_part(data, self.key, backup=self.backup_id, part=part)
        self.sink.write(part, blob)
        self.records.append({"name": part, "size": len(blob), "sha256": sha256_hex(blob),
                             **meta})
        return part


def _write(engine: Engine, sink: BackupSink, master: bytes, *, name: str, created: datetime,
           home: Path, config_dir: Path | None, rows_per_part: int,
           file_part_bytes: int) -> BackupResult:
    backup_id = f"{name}/{uuid.uuid4().hex}"
    parts = _Parts(sink, master, backup_id)
    tables: list[dict[str, Any]] = []
    with read_snapshot(engine) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is None:
            raise BackupError("the database has no Yinqi schema (never migrated): nothing to "
                              "back up; run `yinqi init` first")
        for table in Base.metadata.sorted_tables:
            tables.append(_dump_table(conn, table, parts, rows_per_part))
        totals = facts.payment_totals(conn)
        head = facts.audit_head(conn)
        backend = conn.dialect.name
    # Files are read after the snapshot: files are only ever added, never rewritten, so every
    # file the snapshot refers to is already on disk (a newer one is harmless).
    areas = [(area, home / area) for area in HOME_AREAS]
    if config_dir is not None:
        areas.append(("config", config_dir))
    files = [_pack_area(area, folder, parts, file_part_bytes) for area, folder in areas]
    body: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "name": backup_id,
        "kind": "full",
        "created_at": created.isoformat(timespec="microseconds"),
        "backend": backend,
        "schema_revision": revision,
        "key_id": KEY_ID,
        "compression": "zlib",
        "cipher": "AES-256-GCM",
        "tables": tables,
        "files": files,
        "parts": parts.records,
        "payment_totals": totals,
        "audit_head": head,
    }
    sink.write(MANIFEST, dump(body, master))
    return BackupResult(name=name, location=sink.location,
                        parts=len(parts.records),
                        stored_bytes=sum(p["size"] for p in parts.records),
                        rows={t["name"]: t["rows"] for t in tables})


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read transaction that sees one consistent database state."""
    conn = engine.connect()
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
        tx = conn.begin()  # SQLite: the engine's "begin" hook issues BEGIN IMMEDIATE
        try:
            yield conn
        finally:
            tx.rollback()  # read only: nothing to commit
    finally:
        conn.close()


def _dump_table(conn: Connection, table: Table, parts: _Parts, rows_per_part: int
                ) -> dict[str, Any]:
    spec = table_spec(table)
    columns = [(c, k) for c, k in spec["columns"]]
    encode = row_encoder(table.name, columns, conn.dialect.name)
    q = facts.quote
    select = (f"SELECT {', '.join(q(conn, c) for c, _ in columns)} FROM {q(conn, table.name)}"
              f" ORDER BY {', '.join(q(conn, c) for c in spec['primary_key'])}")
    result = conn.execution_options(stream_results=True, yield_per=rows_per_part).execute(
        text(select))
    names, rows = [], 0
    for chunk in result.partitions(rows_per_part):
        lines = [json.dumps(encode(r), ensure_ascii=False, separators=(",", ":"))
                 for r in chunk]
        part = f"db/{table.name}/{len(names) + 1:05d}.jsonl"
        names.append(parts.add(part, ("\n".join(lines) + "\n").encode(), table=table.name,
                               rows=len(lines)))
        rows += len(lines)
    spec["rows"], spec["parts"] = rows, names
    return spec


def _area_files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        # Only regular files: a link could point anywhere, and is not Yinqi's data.
        if path.is_file() and not path.is_symlink():
            yield path


def _pack_area(area: str, folder: Path, parts: _Parts, limit: int) -> dict[str, Any]:
    """The folder's files, as they are on disk (receipts stay sealed), in tar parts."""
    names: list[str] = []
    count = total = 0
    buffer: io.BytesIO | None = None
    tar: tarfile.TarFile | None = None
    in_part = files_in_part = 0

    def flush() -> None:
        nonlocal buffer, tar, in_part, files_in_part
        if tar is None or buffer is None:
            return
        tar.close()
        part = f"files/{area}/{len(names) + 1:05d}.tar"
        names.append(parts.add(part, buffer.getvalue(), area=area, files=files_in_part))
        buffer, tar, in_part, files_in_part = None, None, 0, 0

    for path in _area_files(folder):
        data = path.read_bytes()
        if tar is not None and in_part + len(data) > limit:
            flush()
        if tar is None:
            buffer = io.BytesIO()
            tar = tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT)
        info = tarfile.TarInfo(path.relative_to(folder).as_posix())
        stat = path.stat()
        info.size, info.mode, info.mtime = len(data), stat.st_mode & 0o777, int(stat.st_mtime)
        tar.addfile(info, io.BytesIO(data))
        in_part += len(data)
        files_in_part += 1
        count += 1
        total += len(data)
    flush()
    return {"area": area, "files": count, "bytes": total, "parts": names}
