"""One reconciliation run: load what is unmatched, match it (vectorised), record the result.

Rerunning a day is safe: matched lines and reconciled payments are not loaded again, and an
item that already waits in the exceptions queue is not queued twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import insert, select

from yinqi.alerts import Severity
from yinqi.bootstrap import App
from yinqi.reconciliation import MatchStatus
from yinqi.states import PaymentState
from yinqi.store.models import Alert, Payment, ReconException, ReconMatch, ReconMatchItem
from yinqi.store.reconcile import TO_MATCH, load_lines, load_payments
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

S = PaymentState
ACTOR = "yinqi.reconcile"
CHUNK = 5000


@dataclass
class ReconSummary:
    first: date
    last: date
    payments: int = 0
    lines: int = 0
    matches: dict[str, int] = field(default_factory=dict)
    reconciled: int = 0
    returned: int = 0
    matched_lines: int = 0
    new_exceptions: int = 0
    unmatched_payments: int = 0
    unmatched_lines: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def match_rate(self) -> float:
        return self.matched_lines / self.lines if self.lines else 1.0

    def as_json(self) -> dict[str, Any]:
        return {"first": self.first.isoformat(), "last": self.last.isoformat(),
                "payments": self.payments, "lines": self.lines, "matches": self.matches,
                "matched_lines": self.matched_lines, "reconciled": self.reconciled,
                "returned": self.returned, "unmatched_payments": self.unmatched_payments,
                "unmatched_lines": self.unmatched_lines, "new_exceptions": self.new_exceptions,
                "match_rate": round(self.match_rate, 6),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def reconcile(app: App, *, first: date, last: date, accounts: Sequence[str] | None = None,
              actor: str = ACTOR, now: datetime | None = None) -> ReconSummary:
    import time

    from yinqi.matching import MatchParams, match

    if first > last:
        from yinqi.errors import InvalidValue

        raise InvalidValue(f"the first day {first} is after the last day {last}")
    from yinqi.recon.accounts import resolve_accounts

    accounts = resolve_accounts(app.config, accounts)
    config = app.config.reconciliation
    params = MatchParams.from_config(config)
    summary = ReconSummary(first, last)
    started = time.perf_counter()
    with app.sessions() as s:
        open_pays = load_payments(s, accounts, first, last, config.date_window_days)
        earlier = load_payments(s, accounts, first - timedelta(days=params.return_window_days),
                                last, config.date_window_days,
                                states=(S.RECONCILED.value,))
        lines = load_lines(s, accounts, first, last)
    payments = _with_settled(open_pays, earlier)
    summary.payments, summary.lines = len(open_pays), len(lines)
    summary.seconds["load"] = time.perf_counter() - started
    started = time.perf_counter()
    result = match(payments, lines, params)
    summary.seconds["match"] = time.perf_counter() - started
    started = time.perf_counter()
    with app.sessions.begin() as s:
        _record(app, s, result, payments, lines, summary, actor=actor,
                cutoff=(now or utcnow()).date() - timedelta(days=config.exception_after_days))
    summary.seconds["record"] = time.perf_counter() - started
    return summary


def _with_settled(open_pays: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """Open payments plus those reconciled before, flagged ``settled`` (only a return may
    match them now)."""
    frames = []
    if not open_pays.empty:
        frames.append(open_pays.assign(settled=False))
    if not earlier.empty:
        frames.append(earlier.assign(settled=True))
    if not frames:
        return open_pays.assign(settled=pd.Series(dtype=bool))
    return pd.concat(frames, ignore_index=True)


def _record(app: App, s: Any, result: Any, payments: pd.DataFrame, lines: pd.DataFrame,
            summary: ReconSummary, *, actor: str, cutoff: date) -> None:
    matches, items = result.matches, result.items
    summary.matches = {k: v for k, v in result.counts().items()
                       if k not in ("unmatched_payments", "unmatched_lines", "returned_payments")}
    if len(matches):
        ids = list(s.execute(
            insert(ReconMatch).returning(ReconMatch.id, sort_by_parameter_order=True),
            [{"rule": r.rule, "score": float(r.score), "status": MatchStatus.CONFIRMED.value,
              "note": r.explanation[:4000], "created_by": actor}
             for r in matches.itertuples(index=False)]).scalars())
        db_id = dict(zip(matches["match_id"].tolist(), ids, strict=True))
        rows = [{"match_id": db_id[int(m)],
                 "payment_id": None if pd.isna(p) else int(p),
                 "statement_line_id": None if pd.isna(l_) else int(l_)}
                for m, p, l_ in items[["match_id", "payment_id", "line_id"]].itertuples(
                    index=False)]
        for i in range(0, len(rows), 20_000):
            s.execute(insert(ReconMatchItem), rows[i:i + 20_000])
    returned = {int(x) for x in result.returned_payment_ids}
    settled_before = set(payments.loc[payments["settled"], "payment_id"].astype(int)) \
        if len(payments) else set()
    matched_pays = {int(x) for x in items["payment_id"].dropna()} - settled_before
    to_reconcile = sorted(matched_pays - returned)
    state = dict(s.execute(select(Payment.id, Payment.state).where(
        Payment.id.in_(sorted(matched_pays | returned)))).all()) if (matched_pays or returned) \
        else {}
    to_reconcile = [p for p in to_reconcile if state.get(p) in TO_MATCH]
    for i in range(0, len(to_reconcile), CHUNK):
        move_payments(s, app.audit, to_reconcile[i:i + CHUNK], S.RECONCILED, actor=actor,
                      reason="matched to the bank statement")
    # A payment returned in the same run is reconciled first (its debit matched), then
    # returned; one returned after an earlier run goes straight from RECONCILED.
    back = sorted(p for p in returned if p in state)
    for i in range(0, len(back), CHUNK):
        move_payments(s, app.audit, back[i:i + CHUNK], S.RETURNED, actor=actor,
                      reason="returned by the bank (退票): matched to the return credit")
    if back:
        s.add(Alert(kind="payment.returned", severity=Severity.CRITICAL.value,
                    subject=f"{len(back)} payment(s) returned by the bank (退票)",
                    message="the statement shows the money came back; check the payee "
                            "details and correct or cancel", details={"payment_ids": back[:1000]}))
    summary.reconciled, summary.returned = len(to_reconcile), len(back)
    summary.matched_lines = int(items["line_id"].dropna().nunique()) if len(items) else 0
    summary.unmatched_lines = len(result.unmatched_lines)
    summary.unmatched_payments = len(result.unmatched_payments)
    summary.new_exceptions = _queue(s, result, cutoff)
    app.audit.append(s, actor=actor, action="reconcile.run", subject_type="reconciliation",
                     subject_ids=[], details=summary.as_json())


def _queue(s: Any, result: Any, cutoff: date) -> int:
    """Unmatched lines, and payments waiting longer than allowed, into the exceptions queue."""
    candidates = result.candidates

    def suggestions(side: str, key: str, ident: int) -> list[dict[str, Any]]:
        if candidates is None or candidates.empty:
            return []
        rows = by_side.get(side)
        if rows is None or ident not in rows.groups:
            return []
        other = "payment_id" if side == "line" else "line_id"
        return [{"id": int(r[other]), "score": round(float(r["score"]), 3), "why": r["why"]}
                for _, r in rows.get_group(ident).sort_values("rank").iterrows()]

    by_side = {side: frame.groupby("line_id" if side == "line" else "payment_id")
               for side, frame in (candidates.groupby("side") if candidates is not None and
                                   not candidates.empty else [])}
    # Queued before: still open, or written off by an operator (that decision stands; a
    # rerun must not put the item back in the queue).
    queued = ReconException.status.in_(("open", "written_off"))
    open_lines = set(s.execute(select(ReconException.statement_line_id).where(
        queued, ReconException.statement_line_id.is_not(None))).scalars())
    open_pays = set(s.execute(select(ReconException.payment_id).where(
        queued, ReconException.payment_id.is_not(None))).scalars())
    rows = []
    for line in result.unmatched_lines.itertuples(index=False):
        if int(line.line_id) in open_lines:
            continue
        day = pd.Timestamp(line.booking_date).date() if not pd.isna(line.booking_date) else None
        rows.append({"statement_line_id": int(line.line_id), "account": line.account,
                     "day": day, "amount_minor": int(line.amount_minor),
                     "currency": line.currency,
                     "candidates": suggestions("line", "line_id", int(line.line_id)),
                     "status": "open"})
    unmatched = result.unmatched_payments
    if len(unmatched):
        unmatched = unmatched[~unmatched.get("settled", pd.Series(False, index=unmatched.index))
                              .fillna(False).astype(bool)]
    for pay in unmatched.itertuples(index=False):
        day = pd.Timestamp(pay.value_date).date()
        if int(pay.payment_id) in open_pays or day > cutoff:
            continue  # its line may still come: not an exception yet
        rows.append({"payment_id": int(pay.payment_id), "account": pay.account, "day": day,
                     "amount_minor": -int(pay.amount_minor), "currency": pay.currency,
                     "candidates": suggestions("payment", "payment_id", int(pay.payment_id)),
                     "status": "open"})
    for i in range(0, len(rows), 20_000):
        s.execute(insert(ReconException), rows[i:i + 20_000])
    return len(rows)
