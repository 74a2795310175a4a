"""A backup: every table in one consistent snapshot, plus the files Yinqi keeps; whole (full)
or only what changed since the chain's last backup (incremental).

The database is read in ONE transaction that sees one state while writers carry on: on
PostgreSQL a ``REPEATABLE READ, READ ONLY`` transaction, on SQLite (always in WAL mode here) a
deferred read transaction, whose snapshot is fixed by its first read. Rows are read raw (plain SQL, no model
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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, text

from yinqi.backup import facts
from yinqi.backup.chain import Chain, ChainState, chain_state, load_chain, resolve
from yinqi.backup.codec import kind_of, row_encoder
from yinqi.backup.errors import BackupError, NoBackup
from yinqi.backup.index import DeltaBuilder, TableIndex, files_delta, key_of, row_digest
from yinqi.backup.manifest import FORMAT_VERSION, dump
from yinqi.backup.sealing import KEY_ID, part_key, seal_part, sha256_hex
from yinqi.backup.target import MANIFEST, BackupSink, BackupTarget, LocalTarget
from yinqi.store.engine import READ_SNAPSHOT
from yinqi.store.models import Base

ROWS_PER_PART = 50_000
FILE_PART_BYTES = 64 * 1024 * 1024
#: Folders under the home a restore needs. ``secrets/`` (the master secret) never leaves.
HOME_AREAS = ("archive", "receipts", "keys")
#: ``full_because`` of the first backup a target gets: no chain was broken.
FIRST_BACKUP = "this is the first backup in this target"


@dataclass(frozen=True)
class BackupResult:
    name: str
    kind: str
    location: str
    parts: int
    stored_bytes: int
    #: Rows per table in the database at the snapshot.
    rows: dict[str, int]
    #: Rows per table this backup holds (all of them for a full, the changed for an
    #: incremental), and the rows deleted since the previous backup.
    written: dict[str, int]
    deleted: dict[str, int]
    files_written: int
    previous: str | None = None
    #: Why an ``auto`` backup is full although an incremental was asked for, if it is.
    full_because: str | None = None


def table_spec(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "columns": [[c.name, kind_of(c.type)] for c in table.columns],
        "primary_key": [c.name for c in table.primary_key.columns],
    }


BackupKind = Literal["full", "incremental", "auto"]


def create_backup(
    engine: Engine,
    target: BackupTarget | Path,
    master: bytes,
    *,
    kind: BackupKind,
    home: Path,
    config_dir: Path | None = None,
    now: datetime | None = None,
    rows_per_part: int = ROWS_PER_PART,
    file_part_bytes: int = FILE_PART_BYTES,
) -> BackupResult:
    """Write a new backup folder into ``target``: sealed parts and an authenticated manifest.

    ``incremental`` holds only what changed since the newest backup in the target (and fails
    when there is no usable chain to build on); ``auto`` makes an incremental when it can and
    a full backup otherwise, saying why.
    """
    if isinstance(target, Path | str):
        target = LocalTarget(Path(target))
    created = (now or datetime.now(UTC)).astimezone(UTC)
    chain: Chain | None = None
    full_because = None
    if kind != "full":
        try:
            chain = load_chain(resolve(target, None, master), master)
            _same_schema(engine, chain)
        except BackupError as exc:
            if kind == "incremental":
                raise BackupError(f"cannot make an incremental backup: {exc}") from None
            full_because = FIRST_BACKUP if isinstance(exc, NoBackup) else str(exc)
    actual = "incremental" if chain is not None else "full"
    stamp = created.strftime("%Y%m%dT%H%M%S")
    name = f"{stamp}Z-{'incr' if chain is not None else 'full'}"
    existing = set(target.names())
    suffix = 2
    while name in existing:
        name = f"{stamp}Z-{'incr' if chain is not None else 'full'}-{suffix}"
        suffix += 1
    sink = target.create(name)
    try:
        state = chain_state(chain, master) if chain is not None else None
        result = _write(engine, sink, master, name=name, kind=actual, created=created,
                        home=home, config_dir=config_dir, rows_per_part=rows_per_part,
                        file_part_bytes=file_part_bytes, chain=chain, state=state)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return replace(result, full_because=full_because)


def _same_schema(engine: Engine, chain: Chain) -> None:
    """An incremental applies row changes to its chain's tables: same revision, same
    columns, else the chain ends here."""
    head = chain.head.manifest
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    specs = {t["name"]: (t["columns"], t["primary_key"]) for t in head.tables}
    ours = {t.name: (table_spec(t)["columns"], table_spec(t)["primary_key"])
            for t in Base.metadata.sorted_tables}
    if revision != head.schema_revision or specs != ours:
        raise BackupError(f"the database schema changed since backup {chain.head.source.name} "
                          f"(revision {head.schema_revision} -> {revision}); a new chain "
                          "starts with a full backup")


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


def _write(engine: Engine, sink: BackupSink, master: bytes, *, name: str, kind: str,
           created: datetime, home: Path, config_dir: Path | None, rows_per_part: int,
           file_part_bytes: int, chain: Chain | None, state: ChainState | None
           ) -> BackupResult:
    backup_id = f"{name}/{uuid.uuid4().hex}"
    parts = _Parts(sink, master, backup_id)
    tables: list[dict[str, Any]] = []
    with read_snapshot(engine) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is None:
            raise BackupError("the database has no Yinqi schema (never migrated): nothing to "
                              "back up; run `yinqi init` first")
        for table in Base.metadata.sorted_tables:
            previous = state.tables.get(table.name) if state is not None else None
            if state is not None and previous is None:
                raise BackupError(f"table {table.name} is not in the chain; take a full backup")
            tables.append(_dump_table(conn, table, parts, rows_per_part, previous))
        totals = facts.payment_totals(conn)
        head = facts.audit_head(conn)
        backend = conn.dialect.name
    # Files are read after the snapshot: receipts and bank files are only ever added, so every
    # file the snapshot refers to is already on disk (a newer one is harmless).
    areas = [(area, home / area) for area in HOME_AREAS]
    if config_dir is not None:
        areas.append(("config", config_dir))
    current = {area: _area_signatures(folder) for area, folder in areas}
    delta = files_delta(state.files if state is not None else None, current)
    files = [_pack_area(area, folder, sorted(delta[area]["files"]), parts, file_part_bytes)
             for area, folder in areas]
    for area in files:  # what was read (a file may have changed or gone since it was listed)
        delta[area["area"]]["files"] = area.pop("read")
    files_index = parts.add("index/files.json",
                            json.dumps(delta, ensure_ascii=False, sort_keys=True).encode())
    head_member = chain.head if chain is not None else None
    body: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "name": backup_id,
        "kind": kind,
        "chain": {
            "base": chain.members[0].source.name if chain is not None else name,
            "sequence": head_member.manifest.sequence + 1 if head_member is not None else 0,
            "previous": None if head_member is None else {
                "folder": head_member.source.name, "name": head_member.manifest.name,
                "manifest_sha256": head_member.manifest.sha256},
        },
        "created_at": created.isoformat(timespec="microseconds"),
        "backend": backend,
        "schema_revision": revision,
        "key_id": KEY_ID,
        "compression": "zlib",
        "cipher": "AES-256-GCM",
        "tables": tables,
        "files": files,
        "files_index": files_index,
        "parts": parts.records,
        "payment_totals": totals,
        "audit_head": head,
    }
    sink.write(MANIFEST, dump(body, master))
    return BackupResult(name=name, kind=kind, location=sink.location,
                        parts=len(parts.records),
                        stored_bytes=sum(p["size"] for p in parts.records),
                        rows={t["name"]: t["rows"] for t in tables},
                        written={t["name"]: t["written"] for t in tables},
                        deleted={t["name"]: t["deleted"] for t in tables},
                        files_written=sum(a["files"] for a in files),
                        previous=head_member.source.name if head_member else None)


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read transaction that sees one consistent database state,
    while writers carry on: PostgreSQL's REPEATABLE READ snapshot, SQLite's WAL snapshot
    (fixed by the transaction's first read)."""
    conn = engine.connect()
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
        else:
            conn = conn.execution_options(**{READ_SNAPSHOT: True})
        tx = conn.begin()
        try:
            conn.execute(text("SELECT COUNT(*) FROM sqlite_master" if conn.dialect.name ==
                              "sqlite" else "SELECT 1"))
            yield conn
        finally:
            tx.rollback()  # read only: nothing to commit
    finally:
        conn.close()


def _dump_table(conn: Connection, table: Table, parts: _Parts, rows_per_part: int,
                previous: TableIndex | None) -> dict[str, Any]:
    """The table's rows (all, or those not as the chain last saw them) in parts of at most
    ``rows_per_part`` lines, and its index part."""
    spec = table_spec(table)
    columns = [(c, k) for c, k in spec["columns"]]
    encode = row_encoder(table.name, columns, conn.dialect.name)
    names = [c for c, _ in columns]
    pk_positions = [names.index(c) for c in spec["primary_key"]]
    q = facts.quote
    select = (f"SELECT {', '.join(q(conn, c) for c, _ in columns)} FROM {q(conn, table.name)}"
              f" ORDER BY {', '.join(q(conn, c) for c in spec['primary_key'])}")
    result = conn.execution_options(stream_results=True, yield_per=rows_per_part).execute(
        text(select))
    builder = DeltaBuilder(previous)
    part_names: list[str] = []
    pending: list[bytes] = []

    def flush() -> None:
        part = f"db/{table.name}/{len(part_names) + 1:05d}.jsonl"
        part_names.append(parts.add(part, b"\n".join(pending) + b"\n", table=table.name,
                                    rows=len(pending)))
        pending.clear()

    for chunk in result.partitions(rows_per_part):
        values = [encode(r) for r in chunk]
        lines = [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()
                 for v in values]
        mask = builder.changed([key_of(v, pk_positions) for v in values],
                               [row_digest(line) for line in lines])
        pending.extend(line for line, keep in zip(lines, mask, strict=True) if keep)
        while len(pending) >= rows_per_part:
            rest = pending[rows_per_part:]
            del pending[rows_per_part:]
            flush()
            pending.extend(rest)
    if pending:
        flush()
    delta = builder.delta()
    spec["rows"], spec["written"], spec["deleted"] = builder.rows, len(delta.keys), \
        len(delta.deleted)
    spec["parts"] = part_names
    spec["index"] = parts.add(f"index/db/{table.name}.npz", delta.pack(), table=table.name)
    return spec


def _area_signatures(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every regular file (links are not Yinqi's data)."""
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            out[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


def _pack_area(area: str, folder: Path, paths: list[str], parts: _Parts, limit: int
               ) -> dict[str, Any]:
    """The listed files as they are on disk (receipts stay sealed), in tar parts; ``read``
    holds the signature of each file as it was read."""
    names: list[str] = []
    read: dict[str, list[int]] = {}
    total = 0
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

    for relative in paths:
        path = folder / relative
        try:
            stat = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # removed since it was listed: the next backup records the removal
        if tar is not None and in_part + len(data) > limit:
            flush()
        if tar is None:
            buffer = io.BytesIO()
            tar = tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT)
        info = tarfile.TarInfo(relative)
        info.size, info.mode, info.mtime = len(data), stat.st_mode & 0o777, int(stat.st_mtime)
        tar.addfile(info, io.BytesIO(data))
        read[relative] = [len(data), stat.st_mtime_ns]
        in_part += len(data)
        files_in_part += 1
        total += len(data)
    flush()
    return {"area": area, "files": len(read), "bytes": total, "parts": names, "read": read}
