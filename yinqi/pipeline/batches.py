"""Approved payments into bank messages (batches), checked against their approvals first.

Batching is the last moment before a payment is built into a signed order, so it re-checks
what the approval gate decided from the approval rows themselves: a payment that reached
APPROVED by any other way (a hand edit of the database) is held and alerted, never batched.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, true, tuple_, update
from sqlalchemy.orm import Session

from yinqi.alerts import Severity
from yinqi.approval import Case, Given, Refusal, levels_for
from yinqi.batching import Batchable, plan_batches
from yinqi.bootstrap import App
from yinqi.identifiers import mask
from yinqi.money import Money
from yinqi.payments import BatchState, approval_digest
from yinqi.states import PaymentState
from yinqi.store.approvals import DIGESTED
from yinqi.store.models import Alert, BankAccount, Batch, Payment
from yinqi.store.models import Approval as ApprovalRow
from yinqi.store.risk import audit_refused, frozen_accounts
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

ACTOR = "yinqi.pipeline"


@dataclass
class BatchingResult:
    batch_ids: list[int] = field(default_factory=list)
    batched: int = 0
    held: dict[int, str] = field(default_factory=dict)
    #: Approved payments left unbatched because their account is frozen (they go on, as
    #: approved, once two people lift the freeze).
    frozen: dict[int, str] = field(default_factory=dict)


def new_msg_id(today: date) -> str:
    """A bank message ID: unique, at most 35 characters, letters and digits only."""
    return f"YQB{today:%Y%m%d}{secrets.token_hex(8).upper()}"


#: Approved payments batched per transaction. Each chunk commits its batches at once, so a run
#: that starts meanwhile finds them to sign and send, and a run batching at the same moment
#: takes the next chunk instead of finding every approved payment locked.
CHUNK = 2000
#: The order in which payments are batched: by batch key, then by id (which keeps batching
#: deterministic, see :func:`yinqi.batching.plan_batches`).
BATCH_ORDER = (Payment.debtor_account_id, Payment.currency, Payment.urgent,
               Payment.requested_date, Payment.id)


def form_batches(app: App, *, now: datetime | None = None, actor: str = ACTOR,
                 chunk: int = CHUNK) -> BatchingResult:
    """Group every approved, unbatched payment into batches, ``chunk`` payments per transaction.

    Each chunk locks its payments (``FOR UPDATE SKIP LOCKED``; on SQLite the write lock of
    ``BEGIN IMMEDIATE``), so two runs batching at once take different payments and a payment
    is in one batch at most. Payments come in the order of their batch key (account,
    currency, urgency, requested date), so a chunk's end cuts at most one batch short."""
    now = now or utcnow()
    result = BatchingResult()
    after: tuple[Any, ...] | None = None
    while True:
        with app.sessions.begin() as session:
            rows = session.execute(
                select(Payment.id, Payment.end_to_end_id, Payment.amount_minor, Payment.currency,
                       Payment.category, Payment.maker, Payment.approval_round,
                       Payment.approved_digest, Payment.urgent, Payment.requested_date,
                       BankAccount.bank, BankAccount.number,
                       BankAccount.currency.label("account_currency"),
                       BankAccount.status.label("account_status"), Payment.debtor_account_id)
                .join(BankAccount, BankAccount.id == Payment.debtor_account_id)
                .where(Payment.state == PaymentState.APPROVED.value, Payment.batch_id.is_(None))
                # Past the previous chunk: what it left APPROVED (a frozen account) and what
                # another run holds stay where they are, for the next run.
                .where(tuple_(*BATCH_ORDER) > after if after is not None else true())
                .order_by(*BATCH_ORDER)
                .limit(chunk)
                .with_for_update(skip_locked=True, of=Payment)
            ).all()
            if not rows:
                return result
            _form(app, session, rows, now, actor, result)
        last = rows[-1]
        after = (last.debtor_account_id, last.currency, last.urgent, last.requested_date,
                 last.id)


def _form(app: App, session: Session, rows: list[Any], now: datetime, actor: str,
          result: BatchingResult) -> None:
    """One chunk's checks and batches, in the chunk's transaction."""
    held = _approval_problems(app, session, rows)
    frozen = refuse_frozen_accounts(app, session, [r for r in rows if r.id not in held], actor,
                                    now)
    result.frozen.update(frozen)
    for r in rows:
        if r.id in held or r.id in frozen:
            continue
        if r.account_status != "active":
            held[r.id] = f"debtor account {mask(r.number)} is {r.account_status}"
        elif r.currency != r.account_currency:
            held[r.id] = (f"payment in {r.currency} from {r.account_currency} account "
                          f"{mask(r.number)}")
    if held:
        _hold(app, session, held, actor)
        result.held.update(held)
    limits = {code: bank.batch_size_limit for code, bank in app.config.banks.items()}
    todays = {code: now.astimezone(ZoneInfo(str(bank.timezone))).date()
              for code, bank in app.config.banks.items()}
    good = [r for r in rows if r.id not in held and r.id not in frozen]
    by_id = {r.id: r for r in good}
    plans = plan_batches(
        (Batchable(r.id, r.bank, r.number, r.currency, bool(r.urgent),
                   max(r.requested_date, todays.get(r.bank, now.date())))
         for r in good), limits)
    for plan in plans:
        key = plan.key
        account_id = by_id[plan.payment_ids[0]].debtor_account_id
        dialect = app.config.banks[key.bank].dialect
        batch = Batch(msg_id=new_msg_id(todays.get(key.bank, now.date())), bank=key.bank,
                      dialect=str(dialect), debtor_account_id=account_id,
                      currency=key.currency, urgent=key.urgent,
                      execution_date=key.execution_date, state=BatchState.BUILT.value,
                      payment_count=len(plan.payment_ids),
                      total_minor=sum(by_id[i].amount_minor for i in plan.payment_ids))
        session.add(batch)
        session.flush()
        move_payments(session, app.audit, plan.payment_ids, PaymentState.BATCHED,
                      actor=actor, reason=f"batch {batch.msg_id}")
        session.execute(update(Payment).where(Payment.id.in_(plan.payment_ids))
                        .values(batch_id=batch.id)
                        .execution_options(synchronize_session=False))
        app.audit.append(session, actor=actor, action="batch.built", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "bank": key.bank,
                                  "payments": len(plan.payment_ids),
                                  "total": str(Money.from_minor(batch.total_minor,
                                                                key.currency).amount),
                                  "currency": key.currency,
                                  "execution_date": key.execution_date.isoformat()})
        result.batch_ids.append(batch.id)
        result.batched += len(plan.payment_ids)


def _approval_problems(app: App, session: Session, rows: list) -> dict[int, str]:  # type: ignore[type-arg]
    """Payments whose approval rows do not prove the policy, or whose approved content changed."""
    ids = [r.id for r in rows]
    given: dict[tuple[int, int], list[Given]] = defaultdict(list)
    digests: dict[int, str] = {}
    for chunk in _chunks(ids):
        for pid, round_, level, role, approver in session.execute(
            select(ApprovalRow.payment_id, ApprovalRow.approval_round, ApprovalRow.level,
                   ApprovalRow.role, ApprovalRow.approver)
            .where(ApprovalRow.payment_id.in_(chunk), ApprovalRow.decision == "approved")
        ):
            given[(pid, round_)].append(Given(level, role, approver))
        for row in session.execute(select(*DIGESTED).where(Payment.id.in_(chunk))):
            digests[row[0]] = approval_digest(*row[1:])
    policy = app.config.approval_policy
    problems: dict[int, str] = {}
    for r in rows:
        mine = given[(r.id, r.approval_round)]
        case = Case(r.end_to_end_id, Money.from_minor(r.amount_minor, r.currency), r.category,
                    r.maker, PaymentState.APPROVED.value, tuple(mine))
        levels = levels_for(policy, case)
        if isinstance(levels, Refusal):
            problems[r.id] = f"approval cannot be proven: {levels.message}"
            continue
        filled = {g.level: g for g in mine}
        approvers = [g.approver for g in mine]
        missing = [n for n in range(1, len(levels) + 1)
                   if n not in filled or filled[n].role != levels[n - 1]]
        if missing:
            problems[r.id] = (f"APPROVED without approval of level(s) "
                              f"{', '.join(map(str, missing))} ({len(mine)} of {len(levels)} "
                              "recorded): held, check the audit log for a direct database edit")
        elif len(set(approvers)) != len(approvers) or (
                policy.maker_checker and r.maker in approvers):
            problems[r.id] = "approvals break maker-checker or four-eyes: held"
        elif r.approved_digest != digests.get(r.id):
            problems[r.id] = "amount or payee changed after approval: held for a fresh approval"
    return problems


def refuse_frozen_accounts(app: App, session: Session, rows: list[Any], actor: str,
                           now: datetime) -> dict[int, str]:
    """Payments whose debtor account is frozen are never batched: one ``risk.refused`` event
    per account names them and the freeze. They stay APPROVED for when the freeze is lifted."""
    waiting: dict[int, str] = {}
    by_account: dict[int, list[int]] = defaultdict(list)
    numbers: dict[int, str] = {}
    for r in rows:
        if r.account_status == "frozen":
            by_account[r.debtor_account_id].append(r.id)
            numbers[r.debtor_account_id] = r.number
    if not by_account:
        return waiting
    freezes = frozen_accounts(session)
    for account_id, pids in sorted(by_account.items()):
        freeze_id = freezes.get(account_id)
        why = (f"debtor account {mask(numbers[account_id])} is frozen"
               + (f" (freeze #{freeze_id})" if freeze_id is not None else "")
               + ": not batched until two people lift the freeze")
        waiting.update(dict.fromkeys(pids, why))
        audit_refused(session, app.audit, actor=actor, doing="batching", subject_type="payment",
                      subject_ids=pids, reason=why, account_id=account_id, freeze_id=freeze_id,
                      now=now)
    return waiting


def _hold(app: App, session: Session, held: dict[int, str], actor: str) -> None:
    by_reason: dict[str, list[int]] = defaultdict(list)
    for pid, reason in held.items():
        by_reason[reason].append(pid)
    for reason, pids in by_reason.items():
        move_payments(session, app.audit, pids, PaymentState.HELD, actor=actor, reason=reason)
        session.add(Alert(kind="payment.held", severity=Severity.CRITICAL.value,
                          subject=f"{len(pids)} payment(s) held before batching",
                          message=reason, details={"payment_ids": pids[:1000]}))


def _chunks(ids: list[int], size: int = 5000):  # type: ignore[no-untyped-def]
    for i in range(0, len(ids), size):
        yield ids[i:i + size]
