"""Recording what a bank said about a batch: payment states, reasons, references, evidence."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from connectors.base import Exchange
from yinqi.alerts import Severity
from yinqi.bankdata import StatusReport
from yinqi.bootstrap import App
from yinqi.pipeline.outcomes import batch_state_for, target_for
from yinqi.pipeline.signing import relative_to_home
from yinqi.security.masking import redact
from yinqi.states import IN_FLIGHT, PaymentState
from yinqi.store.models import Alert, Batch, Payment
from yinqi.store.models import StatusReport as StatusReportRow
from yinqi.store.risk import screen_failures
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

S = PaymentState


@dataclass
class Applied:
    moved: dict[str, int] = field(default_factory=dict)
    batch_state: str = ""


def apply_reports(session: Session, app: App, batch_id: int, reports: Sequence[StatusReport], *,
                  actor: str, exchange: Exchange | None = None, refused: bool = False,
                  refusal: str | None = None) -> Applied:
    """Move the batch's payments as the reports say, in the caller's transaction.

    ``refused``: the bank refused the whole message; every payment it did not report on
    individually failed with the group's reason.
    """
    current = {e2e: (pid, state) for pid, e2e, state in session.execute(
        select(Payment.id, Payment.end_to_end_id, Payment.state)
        .where(Payment.batch_id == batch_id))}
    group = [r for r in reports if r.end_to_end_id is None]
    targets: dict[int, tuple[PaymentState, StatusReport | None]] = {}
    for report in reports:
        if report.end_to_end_id is None or report.end_to_end_id not in current:
            continue
        pid, state = current[report.end_to_end_id]
        target = target_for(state, report.tx_status)
        if target is not None:
            targets[pid] = (target, report)
    reported = {r.end_to_end_id for r in reports if r.end_to_end_id}
    if refused or group:
        status = "RJCT" if refused else (group[0].group_status or group[0].tx_status)
        for e2e, (pid, state) in current.items():
            if e2e in reported or pid in targets:
                continue
            target = target_for(state, status)
            if target is not None:
                targets[pid] = (target, group[0] if group else None)
    by_target: dict[PaymentState, list[int]] = defaultdict(list)
    for pid, (target, _) in targets.items():
        by_target[target].append(pid)
    applied = Applied()
    for target, pids in sorted(by_target.items()):
        move_payments(session, app.audit, pids, target, actor=actor,
                      reason=_reason(targets[pids[0]][1], refusal) if len(pids) == 1 else None)
        applied.moved[target.value] = len(pids)
    _details(session, targets, refusal)
    if targets:
        session.execute(insert(StatusReportRow), [
            {"batch_id": batch_id, "payment_id": pid,
             "bank_msg_id": rep.msg_id if rep else None,
             "group_status": rep.group_status if rep else None,
             "tx_status": rep.tx_status if rep else "RJCT",
             "reason_code": (rep.reason_code if rep else None),
             "reason_text": _reason(rep, refusal),
             "archive_path": relative_to_home(app, exchange.received_path)
             if exchange and exchange.received_path else None,
             "sha256": exchange.received_sha256 if exchange else None}
            for pid, (_target, rep) in targets.items()])
    failed = by_target.get(S.FAILED, []) + by_target.get(S.RETURNED, [])
    if failed:
        # Payments to one payee the bank keeps refusing: risk rule repeated_failures.
        screen_failures(session, app.config.risk_rules, app.audit, failed, actor=actor,
                        now=utcnow())
    returned = by_target.get(S.RETURNED, [])
    if returned:
        session.add(Alert(kind="payment.returned", severity=Severity.CRITICAL.value,
                          subject=f"{len(returned)} payment(s) returned by the bank (退票)",
                          message="the bank returned settled payments; check the payee details",
                          details={"payment_ids": returned[:1000], "batch_id": batch_id}))
    states = session.execute(select(Payment.state).where(Payment.batch_id == batch_id)).scalars()
    applied.batch_state = batch_state_for(states, refused=refused).value
    session.execute(update(Batch).where(Batch.id == batch_id)
                    .values(state=applied.batch_state)
                    .execution_options(synchronize_session=False))
    return applied


def in_flight_e2e(session: Session, batch_id: int) -> list[str]:
    return list(session.execute(
        select(Payment.end_to_end_id).where(
            Payment.batch_id == batch_id,
            Payment.state.in_([s.value for s in IN_FLIGHT]))).scalars())


def _reason(report: StatusReport | None, refusal: str | None) -> str | None:
    # The bank's free text is stored, audited and shown to operators: a payee's account
    # number quoted in it ("账户6222...已销户") is masked first.
    if report is None:
        return redact(refusal) if refusal else refusal
    code, text = report.reason_code, redact(report.reason_text) if report.reason_text else None
    if code and text:
        return f"{code}: {text}"
    return code or text or (redact(refusal) if refusal else refusal)


def _details(session: Session, targets: dict[int, tuple[PaymentState, StatusReport | None]],
             refusal: str | None) -> None:
    """Per-payment reason and the bank's reference: one executemany, not one UPDATE each."""
    rows = [{"pid": pid, "reason": _reason(rep, refusal),
             "ref": rep.bank_reference if rep else None}
            for pid, (_target, rep) in targets.items()
            if rep is not None and (rep.reason_code or rep.reason_text or rep.bank_reference)
            or (rep is None and refusal)]
    if not rows:
        return
    table = Payment.__table__
    from sqlalchemy import func

    session.execute(update(table).where(table.c.id == bindparam("pid"))
                    .values(state_reason=func.coalesce(bindparam("reason"), table.c.state_reason),
                            bank_reference=func.coalesce(bindparam("ref"),
                                                         table.c.bank_reference)), rows)
