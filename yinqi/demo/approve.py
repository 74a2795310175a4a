"""The demo's people at work: approvers approve what waits for them, each with one code; the
treasurer releases the demo's deliberate risk hold."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

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
                              username=username, code=code, payment_ids=ids, now=now,
                              risk_rules=app.config.risk_rules)
            done[username] = len(outcome.approved_levels)
    return done


#: The demo's treasurer, who reviews what the risk rules held.
TREASURER = "liu.treasurer"
#: The rule the demo's deliberate hold trips (yinqi.demo.vouchers.large_payment).
DELIBERATE = "large_single_amount"


def release_deliberate_holds(app: App, now: datetime, *, treasurer: str = TREASURER
                             ) -> list[int]:
    """The treasurer releases (with their one-time code) every payment held *only* by the
    single-payment threshold: the demo's deliberate large payment. Anything else a rule held
    stays HELD for a person to look at, as it should."""
    from yinqi.store.models import RiskHit
    from yinqi.store.risk_decisions import release

    with app.sessions.begin() as s:
        held = list(s.execute(select(Payment.id).where(
            Payment.state == PaymentState.HELD.value).order_by(Payment.id)).scalars())
        rules: dict[int, set[str]] = {}
        for pid, rule in s.execute(select(RiskHit.payment_id, RiskHit.rule).where(
                RiskHit.payment_id.in_(held), RiskHit.status == "open",
                RiskHit.action.in_(("hold", "freeze")))):
            rules.setdefault(pid, set()).add(rule)
        wanted = [pid for pid in held if rules.get(pid) == {DELIBERATE}]
        released = []
        for k, pid in enumerate(wanted):
            # One code per 30-second step: each release uses the next step's code.
            at = now + k * timedelta(seconds=30)
            outcome = release(s, app.audit, app.field_cipher, payment=pid, username=treasurer,
                              code=current_code(s, app.field_cipher, treasurer, at), now=at,
                              reason="demo: the large equipment payment was checked with the "
                                     "supplier by phone")
            if outcome.ok:
                released.append(pid)
    return released
