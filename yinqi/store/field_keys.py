"""Which field key new values are written under, and rotating to a new one.

The key material is never stored: field key ``n`` is derived from the master secret. The
``keys`` table records each field key ID in use (purpose ``fields``), so every process opens
the database with the same current key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, inspect, select, text, update
from sqlalchemy.orm import Session

from yinqi.security.fields import FieldCrypto
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Base, Key
from yinqi.store.types import SealedJSON, SealedText

FIELD_KEY_PREFIX = "fields-"
FILE_KEY_PREFIX = "files-"
_CHUNK = 2000


def current_field_key(engine: Engine) -> int:
    """The newest field key ID recorded in the database (1 for a new database)."""
    return _current(engine, "fields", FIELD_KEY_PREFIX)


def current_file_key(engine: Engine) -> int:
    """The key ID new archive files and receipts are sealed under (1 for a new database)."""
    return _current(engine, "files", FILE_KEY_PREFIX)


def _current(engine: Engine, purpose: str, prefix: str) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("keys"):
            return 1
        rows = conn.execute(text("SELECT key_id FROM keys WHERE purpose = :p "
                                 "AND retired_at IS NULL"), {"p": purpose}).scalars().all()
    ids = [int(k.removeprefix(prefix)) for k in rows
           if k.startswith(prefix) and k.removeprefix(prefix).isdigit()]
    return max(ids, default=1)


def rotate_file_key(session: Session, audit: AuditLog, current: int, *,
                    actor: str) -> tuple[int, int]:
    """New files are sealed under the next file key; files already kept stay as they are
    (every file names its key, and every key is derived from the master secret)."""
    new, now = current + 1, datetime.now(UTC)
    session.execute(update(Key).where(Key.purpose == "files", Key.retired_at.is_(None))
                    .values(retired_at=now))
    session.add(Key(key_id=f"{FILE_KEY_PREFIX}{new}", purpose="files", algorithm="AES-256-GCM",
                    fingerprint="", certificate_pem="", path="", not_before=now,
                    not_after=datetime(9999, 12, 31, tzinfo=UTC)))
    audit.append(session, actor=actor, action="key.rotated", subject_type="key",
                 subject_ids=[f"{FILE_KEY_PREFIX}{new}"],
                 details={"purpose": "files", "old": f"{FILE_KEY_PREFIX}{current}",
                          "new": f"{FILE_KEY_PREFIX}{new}"})
    return current, new


def sealed_columns() -> Iterator[tuple[Any, Any]]:
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (SealedText, SealedJSON)):
                yield table, column


def rotate_field_key(session: Session, crypto: FieldCrypto, audit: AuditLog, *,
                     actor: str) -> tuple[int, int, int]:
    """Re-encrypt every encrypted column under a new field key, in this one transaction.

    Returns (old key ID, new key ID, values re-encrypted). Stop workers first: a process
    still writing under the old key would write values that no longer compare equal.
    """
    old = crypto.current
    new = old + 1
    now = datetime.now(UTC)
    reader = FieldCrypto(crypto.master, old)
    writer = FieldCrypto(crypto.master, new)
    count = 0
    for table, column in sealed_columns():
        pk = table.c.id
        last = 0
        while True:
            rows = session.execute(
                select(pk, text(f"{table.name}.{column.name}"))
                .select_from(table).where(pk > last).order_by(pk).limit(_CHUNK)
            ).all()
            if not rows:
                break
            last = rows[-1][0]
            for row_id, raw in rows:
                if raw is None:
                    continue
                if isinstance(column.type, SealedText):
                    value: Any = writer.seal(reader.open(raw, column.type.domain),
                                             column.type.domain)
                else:
                    ctx = column.type.context
                    value = writer.seal_bytes(reader.open_bytes(bytes(raw), ctx), ctx)
                session.execute(text(f"UPDATE {table.name} SET {column.name} = :v WHERE id = :id"),
                                {"v": value, "id": row_id})
                count += 1
    session.execute(update(Key).where(Key.purpose == "fields", Key.retired_at.is_(None))
                    .values(retired_at=now))
    session.add(Key(key_id=f"{FIELD_KEY_PREFIX}{new}", purpose="fields", algorithm="AES-256-SIV",
                    fingerprint="", certificate_pem="", path="", not_before=now,
                    not_after=datetime(9999, 12, 31, tzinfo=UTC)))
    audit.append(session, actor=actor, action="key.rotated", subject_type="key",
                 subject_ids=[f"{FIELD_KEY_PREFIX}{new}"],
                 details={"purpose": "fields", "old": f"{FIELD_KEY_PREFIX}{old}",
                          "new": f"{FIELD_KEY_PREFIX}{new}", "values": count})
    crypto.current = new
    crypto.__dict__.pop("_cipher", None)
    return old, new, count
