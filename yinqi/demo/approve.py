"""The demo's approvers at work: each approves every payment waiting for them with one code."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select

from yinqi.bootstrap import App
from yinqi.states import PaymentState
from yinqi.store.approvals import approve, current_code
from yinqi.store.models import Payment

#: One person per role, in level order: approver, finance manager, CFO.
APPROVERS = ("li.approver", "chen.manager", "wang.cfo")


def approve_pending(app: App, now: datetime, *, approvers: tuple[str, ...] = APPROVERS
                    ) -> Counter[str]:
    """Every level of every pending payment the demo approvers may fill; returns what each
    approved. A payment whose policy they cannot satisfy stays pending, as it should."""
    done: Counter[str] = Counter()
    for username in approvers:
        with app.sessions.begin() as s:
            ids = list(s.execute(select(Payment.id).where(
                Payment.state == PaymentState.PENDING_APPROVAL.value)).scalars())
            if not ids:
                break
            code = current_code(s, app.field_cipher, username, now)
            outcome = approve(s, app.audit, app.field_cipher, app.config.approval_policy,
                              username=username, code=code, payment_ids=ids, now=now)
            done[username] = len(outcome.approved_levels)
    return done
