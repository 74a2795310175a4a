"""Moving payments between states in bulk: checked, versioned and audited in one transaction.

A chunk of payments moves with one UPDATE that names the states it may move from, so a
concurrent worker that moved any of them first makes the whole chunk fail instead of
silently overwriting it; the audit event that names them all commits with the change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yinqi.errors import ConcurrencyConflict, IllegalTransition
from yinqi.states import PaymentState, check_transition
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Payment
from yinqi.store.types import utcnow


def move_payments(
    session: Session,
    audit: AuditLog,
    payment_ids: Sequence[int],
    target: PaymentState,
    *,
    actor: str,
    reason: str | None = None,
) -> int:
    """Move every payment in ``payment_ids`` to ``target`` or none of them; returns the count."""
    ids = sorted(set(payment_ids))
    if not ids:
        return 0
    current = dict(session.execute(
        select(Payment.id, Payment.state).where(Payment.id.in_(ids))
    ).all())
    missing = [i for i in ids if i not in current]
    if missing:
        raise IllegalTransition(f"payments not found: {', '.join(map(str, missing[:10]))}")
    for pid, state in current.items():
        check_transition(state, target, subject=f"payment {pid}")
    sources = Counter(current.values())
    result = session.execute(
        update(Payment)
        .where(Payment.id.in_(ids), Payment.state.in_(list(sources)))
        .where(*[_unchanged(current)])
        .values(state=target.value, state_reason=reason, version=Payment.version + 1,
                updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(ids):
        raise ConcurrencyConflict(
            f"{len(ids) - (result.rowcount or 0)} of {len(ids)} payments changed state while "
            f"being moved to {target}; nothing was moved, reload and retry"
        )
    audit.append(session, actor=actor, action="payment.state", subject_type="payment",
                 subject_ids=ids,
                 details={"to": target.value, "from": dict(sorted(sources.items())),
                          "reason": reason})
    return len(ids)


def _unchanged(current: dict[int, str]):  # type: ignore[no-untyped-def]
    """Each row still in the state we read: one OR-group per source state keeps SQL small."""
    from sqlalchemy import and_, or_

    by_state: dict[str, list[int]] = {}
    for pid, state in current.items():
        by_state.setdefault(state, []).append(pid)
    return or_(*[and_(Payment.state == state, Payment.id.in_(pids))
                 for state, pids in by_state.items()])
