"""The database: models, engines, migrations, claims and the audit log."""

from yinqi.store.audit_log import AuditLog
from yinqi.store.claims import claim_batches, release_batches
from yinqi.store.engine import is_sqlite, make_engine, session_factory
from yinqi.store.migrate import current_revision, ensure_current, head_revision, upgrade
from yinqi.store.models import Base

__all__ = [
    "AuditLog",
    "Base",
    "claim_batches",
    "current_revision",
    "ensure_current",
    "head_revision",
    "is_sqlite",
    "make_engine",
    "release_batches",
    "session_factory",
    "upgrade",
]
