"""Appending to and verifying the audit chain stored in the database.

An event is appended inside the caller's transaction, so a state change and its audit event
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yinqi import audit
from yinqi.store.models import AuditEventRow, AuditHead
from yinqi.store.types import utcnow

_VERIFY_CHUNK = 5000


class AuditLog:
    """The audit trail, bound to the key that seals it."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def append(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        subject_type: str,
        subject_ids: Sequence[object] = (),
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> audit.SealedEvent:
        # The head row is the chain's lock: on PostgreSQL FOR UPDATE serialises appenders;
        # on SQLite the transaction already holds the database's write lock.
        head = _locked_head(session)
        prev_seq, prev_hash = head.seq, head.hash
        event = audit.AuditEvent(
            seq=prev_seq + 1,
            occurred_at=at or utcnow(),
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_ids=audit.subject_ids(subject_ids),
            details=dict(details or {}),
        )
        sealed = audit.link(prev_hash, event, self._key)
        session.add(
            AuditEventRow(
                seq=event.seq,
                occurred_at=event.occurred_at,
                actor=event.actor,
                action=event.action,
                subject_type=event.subject_type,
                subject_ids=list(event.subject_ids),
                details=dict(event.details),
                prev_hash=sealed.prev_hash,
                hash=sealed.hash,
                mac=sealed.mac,
            )
        )
        new_head = audit.make_head(event.seq, sealed.hash, self._key)
        head.seq, head.hash, head.mac = new_head.seq, new_head.hash, new_head.mac
        session.flush()
        return sealed

    def verify(self, session: Session) -> audit.Verdict:
        head_row = session.get(AuditHead, 1)
        head = audit.Head(head_row.seq, head_row.hash, head_row.mac) if head_row else None
        return audit.verify(_stream(session), self._key, head)

    @staticmethod
    def head(session: Session) -> tuple[int, str]:
        row = session.get(AuditHead, 1)
        return (row.seq, row.hash) if row else (0, audit.GENESIS_HASH)


def _locked_head(session: Session) -> AuditHead:
    def lock() -> AuditHead | None:
        return session.execute(
            select(AuditHead).where(AuditHead.id == 1).with_for_update()
        ).scalar_one_or_none()

    head = lock()
    if head is None:
        # The very first appenders race to create the head; the loser re-reads the winner's.
        try:
            with session.begin_nested():
                session.add(AuditHead(id=1, seq=0, hash=audit.GENESIS_HASH, mac=""))
        except IntegrityError:
            pass
        head = lock()
        assert head is not None
    return head


def _stream(session: Session) -> Iterator[audit.SealedEvent]:
    """Read the chain in order, in keyset-paged chunks, so millions of events fit in memory."""
    after = 0
    while True:
        rows = session.execute(
            select(AuditEventRow)
            .where(AuditEventRow.seq > after)
            .order_by(AuditEventRow.seq)
            .limit(_VERIFY_CHUNK)
        ).scalars().all()
        if not rows:
            return
        for row in rows:
            yield audit.SealedEvent(
                audit.AuditEvent(
                    seq=row.seq,
                    occurred_at=row.occurred_at,
                    actor=row.actor,
                    action=row.action,
                    subject_type=row.subject_type,
                    subject_ids=tuple(row.subject_ids),
                    details=row.details,
                ),
                row.prev_hash,
                row.hash,
                row.mac,
            )
        after = rows[-1].seq
        session.expunge_all()
