"""Reading an installation's store from tests: its audit events, a user's one-time code."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from yinqi.bootstrap import App
from yinqi.store.auth import current_code
from yinqi.store.models import AuditEventRow


def events(app: App, action: str) -> list[AuditEventRow]:
    """Every audit event of ``action``, oldest first, detached from their session."""
    with app.sessions() as s:
        rows = list(s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                              .order_by(AuditEventRow.seq)).scalars())
        s.expunge_all()
    return rows


def code(app: App, username: str, at: datetime) -> str:
    """The one-time code ``username``'s authenticator shows at ``at``."""
    with app.sessions() as s:
        return current_code(s, app.field_cipher, username, at)
