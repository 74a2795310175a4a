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
_CHUNK = 2000


def current_field_key(engine: Engine) -> int:
    """The newest field key ID recorded in the database (1 for a new database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("keys"):
            return 1
        rows = conn.execute(text("SELECT key_id FROM keys WHERE purpose = 'fields' "
                                 "AND retired_at IS NULL")).scalars().all()
    ids = [int(k.removeprefix(FIELD_KEY_PREFIX)) for k in rows
           if k.startswith(FIELD_KEY_PREFIX) and k.removeprefix(FIELD_KEY_PREFIX).isdigit()]
    return max(ids, default=1)


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
    reader = FieldCrypto(crypto._master, old)  # noqa: SLF001 - same secret, the old key
    writer = FieldCrypto(crypto._master, new)  # noqa: SLF001
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
