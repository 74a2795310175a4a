"""Reruns of a batch: only what the bank definitively rejected goes out again.

Settled, returned and still-unknown payments are never touched. Each rejected payment is
sent again under a new end-to-end ID (the bank's idempotency key would replay its refusal);
if its amount or payee changed since it was approved, it goes back through approval first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update

from yinqi.bootstrap import App
from yinqi.errors import InvalidValue
from yinqi.payments import approval_digest
from yinqi.states import PaymentState
from yinqi.store.approvals import DIGESTED
from yinqi.store.models import Batch, Payment
from yinqi.store.risk import Stage, screen_payments
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

S = PaymentState


@dataclass
class RerunResult:
    batch_id: int
    msg_id: str
    to_send: list[int] = field(default_factory=list)
    to_reapprove: list[int] = field(default_factory=list)
    untouched: dict[str, int] = field(default_factory=dict)
    #: Corrected payments a risk rule stopped (HELD) on their way back into approval.
    held: list[int] = field(default_factory=list)


def rerun_end_to_end_id(original: str, send_round: int) -> str:
    """The end-to-end ID of a payment's ``send_round``-th message (at most 35 characters)."""
    if send_round <= 1:
        return original
    if send_round > 99:
        raise InvalidValue(f"payment {original} was sent {send_round - 1} times; no further rerun")
    return f"{original[:32]}R{send_round:02d}"


def find_batch(app: App, ref: str) -> Batch:
    """A batch by its id or its message ID."""
    with app.sessions() as s:
        query = select(Batch).where(Batch.msg_id == ref)
        if ref.isdigit():
            query = select(Batch).where((Batch.id == int(ref)) | (Batch.msg_id == ref))
        batch = s.execute(query).scalars().first()
        if batch is None:
            raise InvalidValue(f"no batch {ref!r} (give its number or its message ID)")
        s.expunge(batch)
        return batch


def rerun_batch(app: App, ref: str, *, actor: str, reason: str | None = None) -> RerunResult:
    batch = find_batch(app, ref)
    result = RerunResult(batch.id, batch.msg_id)
    with app.sessions.begin() as s:
        rows = s.execute(select(Payment.id, Payment.state, Payment.end_to_end_id,
                                Payment.send_round, Payment.approved_digest)
                         .where(Payment.batch_id == batch.id)
                         .order_by(Payment.id).with_for_update()).all()
        failed = [r for r in rows if r.state == S.FAILED.value]
        for r in rows:
            if r.state != S.FAILED.value:
                result.untouched[r.state] = result.untouched.get(r.state, 0) + 1
        if not failed:
            raise InvalidValue(
                f"batch {batch.msg_id} has no payment the bank definitively rejected; nothing "
                "to rerun (" + ", ".join(f"{n} {st}" for st, n in sorted(result.untouched.items()))
                + ")")
        ids = [r.id for r in failed]
        digests = {row[0]: approval_digest(*row[1:])
                   for row in s.execute(select(*DIGESTED).where(Payment.id.in_(ids)))}
        for r in failed:
            (result.to_send if digests[r.id] == r.approved_digest
             else result.to_reapprove).append(r.id)
        why = reason or f"rerun of batch {batch.msg_id}"
        if result.to_send:
            move_payments(s, app.audit, result.to_send, S.APPROVED, actor=actor, reason=why)
        if result.to_reapprove:
            move_payments(s, app.audit, result.to_reapprove, S.PENDING_APPROVAL, actor=actor,
                          reason=f"{why}: amount or payee changed since approval")
        table = Payment.__table__
        new_ids = {r.id: rerun_end_to_end_id(_original(r.end_to_end_id), r.send_round + 1)
                   for r in failed}
        s.execute(update(table).where(table.c.id == bindparam("pid")).values(
            end_to_end_id=bindparam("e2e"), send_round=table.c.send_round + 1, batch_id=None,
            bank_reference=None), [{"pid": pid, "e2e": e2e} for pid, e2e in new_ids.items()])
        if result.to_reapprove:
            s.execute(update(Payment).where(Payment.id.in_(result.to_reapprove))
                      .values(approval_round=Payment.approval_round + 1, approved_digest=None)
                      .execution_options(synchronize_session=False))
            # A corrected payee or amount is screened again, as if it had just been entered.
            result.held = screen_payments(s, app.config.risk_rules, app.audit,
                                          result.to_reapprove, actor=actor, now=utcnow(),
                                          stage=Stage.CORRECTED).held
        app.audit.append(s, actor=actor, action="batch.rerun", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "reason": why,
                                  "resend": result.to_send, "reapprove": result.to_reapprove,
                                  "new_end_to_end_ids": {str(r.id): new_ids[r.id]
                                                         for r in failed},
                                  "previous_end_to_end_ids": {str(r.id): r.end_to_end_id
                                                              for r in failed},
                                  "untouched": result.untouched})
    return result


def _original(e2e: str) -> str:
    """The first round's ID: reruns replace the last three characters with R<nn>."""
    return e2e[:32] if len(e2e) == 35 and e2e[32] == "R" else e2e


#: What an operator may correct on a rejected payment before its rerun.
CORRECTABLE = ("creditor_name", "creditor_account", "creditor_bank_name", "creditor_cnaps",
               "creditor_bic", "amount", "purpose")


def correct_payment(app: App, payment_id: int, changes: dict[str, str], *, actor: str) -> dict[str, tuple[str, str]]:
    """Correct a payment the bank rejected; returns {field: (before, after)} as audited.

    Values are checked like a voucher row's; the change is audited with account numbers
    masked. A changed amount or payee makes the rerun ask for approval again.
    """
    from yinqi.identifiers import mask
    from yinqi.money import Money
    from yinqi.vouchers import check_correction

    unknown = sorted(set(changes) - set(CORRECTABLE))
    if unknown:
        raise InvalidValue(f"cannot correct {', '.join(unknown)} (correctable: "
                           f"{', '.join(CORRECTABLE)})")
    with app.sessions.begin() as s:
        p = s.execute(select(Payment).where(Payment.id == payment_id).with_for_update()
                      ).scalars().first()
        if p is None:
            raise InvalidValue(f"no payment {payment_id}")
        if p.state != S.FAILED.value:
            raise InvalidValue(f"payment {payment_id} is {p.state}: only payments the bank "
                               "definitively rejected (FAILED) can be corrected")
        values = check_correction(changes, currency=p.currency)
        diff: dict[str, tuple[str, str]] = {}
        for name, value in values.items():
            column = "amount_minor" if name == "amount" else name
            before = getattr(p, column)
            if name == "amount":
                before_s = str(Money.from_minor(before, p.currency).amount)
                after_s = str(Money.from_minor(value, p.currency).amount)
            else:
                before_s, after_s = str(before or ""), str(value or "")
            if before != value:
                shown = (mask(before_s), mask(after_s)) if name == "creditor_account" \
                    else (before_s, after_s)
                diff[name] = shown
                setattr(p, column, value)
        if diff:
            # The audit trail is read by auditors, not payers: payee names as 张**, like
            # the account numbers as ****1234.
            from yinqi.security.masking import mask_name

            audited = {k: (mask_name(a), mask_name(b)) if k == "creditor_name" else (a, b)
                       for k, (a, b) in diff.items()}
            app.audit.append(s, actor=actor, action="payment.corrected", subject_type="payment",
                             subject_ids=[payment_id],
                             details={"changes": {k: {"from": a, "to": b}
                                                  for k, (a, b) in audited.items()}})
        return diff
