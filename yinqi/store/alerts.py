"""Raising alerts about problems a flow meets again in every round."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yinqi.store.models import Alert


def raise_once(session: Session, *, kind: str, severity: str, subject: str, message: str,
               details: dict[str, Any], created_at: datetime | None = None) -> Alert | None:
    """A new alert, or None while one of ``kind`` about ``subject`` is unacknowledged: the
    problem is found again each round (and audited each time); the operators are told once."""
    if session.execute(select(Alert.id).where(
            Alert.kind == kind, Alert.subject == subject,
            Alert.acknowledged_at.is_(None)).limit(1)).first() is not None:
        return None
    alert = Alert(kind=kind, severity=severity, subject=subject, message=message,
                  details=details)
    if created_at is not None:
        alert.created_at = created_at
    session.add(alert)
    return alert
