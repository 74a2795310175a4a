"""The exceptions queue: what matching could not explain, and what operators do about it.

Confirming a suggestion, re-matching by hand and writing off are each one audited action;
none of them changes an amount or a statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from yinqi.bootstrap import App
from yinqi.errors import InvalidValue
from yinqi.money import Money
from yinqi.reconciliation import MatchRule, MatchStatus
from yinqi.security.masking import redact
from yinqi.states import PaymentState
from yinqi.store.models import Payment, ReconException, ReconMatch, ReconMatchItem
from yinqi.store.models import StatementLine as LineRow
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow


def list_exceptions(app: App, status: str = "open", limit: int = 10_000) -> list[dict[str, Any]]:
    with app.sessions() as s:
        rows = s.execute(select(ReconException, LineRow.counterparty_name,
                                LineRow.end_to_end_id, Payment.creditor_name,
                                Payment.end_to_end_id.label("payment_e2e"))
                         .outerjoin(LineRow, LineRow.id == ReconException.statement_line_id)
                         .outerjoin(Payment, Payment.id == ReconException.payment_id)
                         .where(ReconException.status == status)
                         .order_by(ReconException.id).limit(limit)).all()
    out = []
    for e, line_name, line_e2e, payee, pay_e2e in rows:
        out.append({
            "id": e.id, "side": "line" if e.statement_line_id else "payment",
            "line_id": e.statement_line_id, "payment_id": e.payment_id, "account": e.account,
            "day": e.day, "amount": str(Money.from_minor(e.amount_minor, e.currency).amount),
            "currency": e.currency, "counterparty": line_name or payee,
            "reference": line_e2e or pay_e2e,
            "candidates": "; ".join(f"#{c['id']} ({c['score']}) {c['why']}"
                                    for c in (e.candidates or [])[:3]),
            "candidate_ids": [c["id"] for c in (e.candidates or [])],
            "status": e.status, "resolution": e.resolution})
    return out


def match_by_hand(app: App, *, payment_ids: Sequence[int], line_ids: Sequence[int], actor: str,
                  note: str) -> int:
    """Record that these lines explain these payments (confirming a suggestion or re-matching
    by hand). Both sides must be unmatched; their open exceptions close."""
    if not payment_ids or not line_ids:
        raise InvalidValue("a match needs at least one payment and one statement line")
    if not note.strip():
        raise InvalidValue("say why (--note): a hand match must explain itself")
    with app.sessions.begin() as s:
        taken = s.execute(select(ReconMatchItem.id).where(
            (ReconMatchItem.payment_id.in_(list(payment_ids)))
            | (ReconMatchItem.statement_line_id.in_(list(line_ids))))).first()
        pays = dict(s.execute(select(Payment.id, Payment.state).where(
            Payment.id.in_(list(payment_ids)))).all())
        lines = set(s.execute(select(LineRow.id).where(LineRow.id.in_(list(line_ids))))
                    .scalars())
        missing = [f"payment {p}" for p in payment_ids if p not in pays] + \
                  [f"line {x}" for x in line_ids if x not in lines]
        if missing:
            raise InvalidValue(f"not found: {', '.join(missing)}")
        already = [p for p, st in pays.items() if st == PaymentState.RECONCILED.value]
        if taken is not None or already:
            raise InvalidValue("some of these payments or lines are already matched; "
                               "nothing was changed")
        # A written-off item is explained already: matching it too would count it twice.
        written = s.execute(select(ReconException.id).where(
            ReconException.status == "written_off",
            (ReconException.payment_id.in_(list(payment_ids)))
            | (ReconException.statement_line_id.in_(list(line_ids))))).scalars().all()
        if written:
            raise InvalidValue("some of these payments or lines were written off (exception "
                               f"{', '.join(f'#{i}' for i in written)}); nothing was changed")
        match_id = s.execute(insert(ReconMatch).returning(ReconMatch.id), [{
            "rule": MatchRule.MANUAL.value, "score": 1.0,
            "status": MatchStatus.CONFIRMED.value, "note": note[:4000], "created_by": actor,
        }]).scalar_one()
        s.execute(insert(ReconMatchItem),
                  [{"match_id": match_id, "payment_id": p, "statement_line_id": None}
                   for p in payment_ids]
                  + [{"match_id": match_id, "payment_id": None, "statement_line_id": x}
                     for x in line_ids])
        movable = [p for p, st in pays.items()
                   if st in (PaymentState.SETTLED.value, PaymentState.RECEIPTED.value)]
        if movable:
            move_payments(s, app.audit, movable, PaymentState.RECONCILED, actor=actor,
                          reason=f"matched by hand: {note}")
        closed = _close(s, payment_ids, line_ids, "matched", actor, note)
        app.audit.append(s, actor=actor, action="reconcile.matched_by_hand",
                         subject_type="reconciliation", subject_ids=[match_id],
                         details={"payments": list(payment_ids), "lines": list(line_ids),
                                  "note": redact(note), "exceptions_closed": closed})
        return int(match_id)


def confirm(app: App, exception_id: int, *, candidate: int | None, actor: str, note: str) -> int:
    """Accept one of an exception's suggestions (the best when ``candidate`` is None)."""
    with app.sessions() as s:
        e = s.get(ReconException, exception_id)
        if e is None or e.status != "open":
            raise InvalidValue(f"no open exception #{exception_id}")
        ids = [c["id"] for c in (e.candidates or [])]
        if not ids:
            raise InvalidValue(f"exception #{exception_id} has no suggestion; use rematch")
        chosen = ids[0] if candidate is None else candidate
        if chosen not in ids:
            raise InvalidValue(f"#{chosen} is not one of exception #{exception_id}'s "
                               f"suggestions ({', '.join(map(str, ids))})")
        side_payment = e.payment_id
        side_line = e.statement_line_id
    if side_line is not None:
        return match_by_hand(app, payment_ids=[chosen], line_ids=[side_line], actor=actor,
                             note=note or f"confirmed suggestion for exception #{exception_id}")
    assert side_payment is not None
    return match_by_hand(app, payment_ids=[side_payment], line_ids=[chosen], actor=actor,
                         note=note or f"confirmed suggestion for exception #{exception_id}")


def write_off(app: App, exception_id: int, *, actor: str, reason: str) -> None:
    """Close an exception without a match (a bank charge booked elsewhere, a known error),
    with the reason on record."""
    if not reason.strip():
        raise InvalidValue("a write-off needs a reason (--reason)")
    with app.sessions.begin() as s:
        e = s.execute(select(ReconException).where(ReconException.id == exception_id)
                      .with_for_update()).scalars().first()
        if e is None or e.status != "open":
            raise InvalidValue(f"no open exception #{exception_id}")
        e.status, e.resolution, e.resolved_by, e.resolved_at = \
            "written_off", reason[:4000], actor, utcnow()
        app.audit.append(s, actor=actor, action="reconcile.written_off",
                         subject_type="recon_exception", subject_ids=[exception_id],
                         details={"reason": redact(reason), "amount_minor": e.amount_minor,
                                  "currency": e.currency, "payment_id": e.payment_id,
                                  "line_id": e.statement_line_id})


def _close(s: Any, payment_ids: Sequence[int], line_ids: Sequence[int], status: str,
           actor: str, note: str) -> list[int]:
    rows = s.execute(select(ReconException).where(
        ReconException.status == "open",
        (ReconException.payment_id.in_(list(payment_ids)))
        | (ReconException.statement_line_id.in_(list(line_ids))))).scalars().all()
    for e in rows:
        e.status, e.resolution, e.resolved_by, e.resolved_at = status, note, actor, utcnow()
    return [e.id for e in rows]
