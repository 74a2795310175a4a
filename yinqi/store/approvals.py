"""The approval gate in the database: one-time codes, approval rows, escalation, audit check.

Every decision, and every refusal, is audited in the caller's transaction. Refusals are
*returned*, never raised: the caller commits them like any other outcome, so a wrong code's
failed-attempt count, a lockout and their audit events are never rolled back away. Only a
fault (the database, a concurrent change) raises, and then nothing at all is decided.

The rules themselves live in :mod:`yinqi.approval`; the CLI and the Prefect approval form
both come through :func:`approve` and :func:`reject`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from config.policy import ApprovalPolicy
from config.risk import RiskRules
from yinqi.alerts import Severity
from yinqi.approval import (
    Case,
    Fill,
    Given,
    Reason,
    Refusal,
    check_user,
    judge,
    levels_for,
    next_level,
)
from yinqi.approvals import Decision, User
from yinqi.payments import approval_digest
from yinqi.errors import InvalidValue
from yinqi.money import Money
from yinqi.security.fields import FieldCipher
from yinqi.states import PaymentState
from yinqi.store import auth
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, AuditEventRow, Payment
from yinqi.store.models import Approval as ApprovalRow
from yinqi.store.models import User as UserRow
from yinqi.store.risk import Stage, screen_payments
from yinqi.store.transitions import move_payments

#: The payment columns :func:`approval_digest` covers, in its argument order (after the id).
DIGESTED = (Payment.id, Payment.amount_minor, Payment.currency, Payment.debtor_account_id,
            Payment.creditor_account, Payment.creditor_name, Payment.creditor_cnaps,
            Payment.creditor_bic)

# Payments are decided, inserted and moved this many at a time: keeps every IN (...) list
# far below SQLite's and PostgreSQL's bound-parameter limits, and each audit event readable.
CHUNK = 1000
_AUDIT_PAGE = 2000
ESCALATION_QUIET = timedelta(hours=24)
SYSTEM = "system:approvals"

RefusedRow = tuple[int, str, str]  # payment id, reason code, one readable line


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    approved_levels: dict[int, int]
    completed: list[int]
    refused: list[RefusedRow]
    #: Set when the person or the code was refused: then every payment is in ``refused``.
    attempt: Refusal | None = None


@dataclass(frozen=True, slots=True)
class RejectOutcome:
    rejected: list[int]
    refused: list[RefusedRow]
    attempt: Refusal | None = None


@dataclass(frozen=True, slots=True)
class PendingRow:
    payment_id: int
    end_to_end_id: str
    amount: Money
    category: str
    maker: str
    levels: tuple[str, ...]
    filled: dict[int, str]  # level -> approver
    next_role: str | None
    #: Whether the listed-for user could approve it now (None when listed for nobody).
    can_approve: bool | None
    why_not: Refusal | None
    waiting_since: datetime


@dataclass(frozen=True, slots=True)
class Mismatch:
    payment_id: int
    end_to_end_id: str
    state: str
    audited: str | None  # None: no state event names the payment at all


@dataclass(frozen=True, slots=True)
class _Admitted:
    row: UserRow
    user: User


# --- deciding -------------------------------------------------------------------------------


def approve(
    session: Session,
    audit: AuditLog,
    cipher: FieldCipher,
    policy: ApprovalPolicy,
    *,
    username: str,
    code: str,
    payment_ids: Sequence[int],
    now: datetime,
    reason: str | None = None,
    risk_rules: RiskRules | None = None,
) -> ApprovalOutcome:
    """Approve the next level of every payment ``username`` may approve, with one code.

    Payments whose last level this fills move to APPROVED (one audited move per chunk).
    With ``risk_rules``, the decisions are screened (out_of_hours: approved outside business
    hours; a rule whose action is hold or freeze moves the payment to HELD).
    """
    ids = _unique(payment_ids)
    admitted = _admit(session, audit, cipher, username=username, code=code, now=now,
                      decision=Decision.APPROVED, payment_ids=ids)
    if isinstance(admitted, Refusal):
        return ApprovalOutcome({}, [], _all_refused(ids, admitted), admitted)
    levels: dict[int, int] = {}
    completed: list[int] = []
    refused: list[RefusedRow] = []
    for chunk in _chunks(ids):
        fills, chunk_refused = _decide_chunk(session, audit, policy, admitted, chunk,
                                             Decision.APPROVED, now=now, reason=reason)
        done = [pid for pid, fill in fills.items() if fill.completes]
        if done:
            move_payments(session, audit, done, PaymentState.APPROVED, actor=username,
                          reason=reason)
            record_approved_digests(session, done)
        levels.update({pid: fill.level for pid, fill in fills.items()})
        completed += done
        refused += chunk_refused
    if risk_rules is not None and levels:
        screen_payments(session, risk_rules, audit, list(levels), actor=username, now=now,
                        stage=Stage.APPROVAL)
    return ApprovalOutcome(levels, completed, refused)


def reject(
    session: Session,
    audit: AuditLog,
    cipher: FieldCipher,
    policy: ApprovalPolicy,
    *,
    username: str,
    code: str,
    payment_ids: Sequence[int],
    reason: str,
    now: datetime,
) -> RejectOutcome:
    """Reject payments at their next level, with a reason; they move to REJECTED.

    Only someone who could approve that level may reject there, and never the maker.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidValue("a rejection needs a reason: say why the payment must not be paid")
    ids = _unique(payment_ids)
    admitted = _admit(session, audit, cipher, username=username, code=code, now=now,
                      decision=Decision.REJECTED, payment_ids=ids)
    if isinstance(admitted, Refusal):
        return RejectOutcome([], _all_refused(ids, admitted), admitted)
    rejected: list[int] = []
    refused: list[RefusedRow] = []
    for chunk in _chunks(ids):
        fills, chunk_refused = _decide_chunk(session, audit, policy, admitted, chunk,
                                             Decision.REJECTED, now=now, reason=reason)
        if fills:
            move_payments(session, audit, list(fills), PaymentState.REJECTED, actor=username,
                          reason=reason)
        rejected += list(fills)
        refused += chunk_refused
    return RejectOutcome(rejected, refused)


def _admit(
    session: Session,
    audit: AuditLog,
    cipher: FieldCipher,
    *,
    username: str,
    code: str,
    now: datetime,
    decision: Decision,
    payment_ids: list[int],
) -> _Admitted | Refusal:
    """Check the person and spend their one-time code; a refusal is audited before returning."""
    row = session.execute(
        # The user row is the lock that serialises one person's attempts (PostgreSQL), so two
        # concurrent calls cannot both slip under the failed-attempt limit.
        select(UserRow).where(UserRow.username == username).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        refusal = Refusal(Reason.UNKNOWN_USER, f"no user named {username!r}")
    else:
        user = _domain_user(session, row)
        checked = _check_person(session, audit, cipher, row, user, code, now)
        if checked is None:
            return _Admitted(row, user)
        refusal = checked
    _audit_refused(session, audit, actor=username, decision=decision, now=now,
                   refused=_all_refused(payment_ids, refusal), attempt=refusal)
    return refusal


def _check_person(
    session: Session,
    audit: AuditLog,
    cipher: FieldCipher,
    row: UserRow,
    user: User,
    code: str,
    now: datetime,
) -> Refusal | None:
    # Locked or inactive users are refused before their code is even looked at, so a lock
    # cannot be used to keep guessing.
    refusal = check_user(user, locked_until=row.locked_until, now=now)
    if refusal is not None:
        return refusal
    # The code, its replay guard and the lockout are the same as at login (yinqi.store.auth).
    return auth.check_code(session, audit, cipher, row, code, now, auth.CODE_LOCKOUT)


def _decide_chunk(
    session: Session,
    audit: AuditLog,
    policy: ApprovalPolicy,
    admitted: _Admitted,
    chunk: list[int],
    decision: Decision,
    *,
    now: datetime,
    reason: str | None,
) -> tuple[dict[int, Fill], list[RefusedRow]]:
    """Judge and record one chunk: approval rows, one event for them, one for the refusals."""
    cases = _load_cases(session, chunk, lock=True)
    user = admitted.user
    fills: dict[int, Fill] = {}
    refused: list[RefusedRow] = []
    for pid in chunk:
        case = cases.get(pid)
        verdict = (judge(policy, case, user, decision) if case is not None
                   else Refusal(Reason.PAYMENT_NOT_FOUND, f"no payment with id {pid}"))
        if isinstance(verdict, Fill):
            fills[pid] = verdict
        else:
            refused.append((pid, verdict.code.value, verdict.message))
    if fills:
        rounds = dict(session.execute(
            select(Payment.id, Payment.approval_round).where(Payment.id.in_(list(fills)))).all())
        session.execute(insert(ApprovalRow), [
            {"payment_id": pid, "approval_round": rounds[pid], "level": f.level, "role": f.role, "approver": user.username,
             "decision": decision.value, "reason": reason, "decided_at": now}
            for pid, f in fills.items()
        ])
        by_level: dict[int, list[int]] = defaultdict(list)
        for pid, f in fills.items():
            by_level[f.level].append(pid)
        audit.append(session, actor=user.username, action=f"approval.{decision.value}",
                     subject_type="payment", subject_ids=list(fills),
                     details={"levels": {str(n): pids for n, pids in sorted(by_level.items())},
                              "roles": {str(f.level): f.role for f in fills.values()},
                              "reason": reason},
                     at=now)
    if refused:
        _audit_refused(session, audit, actor=user.username, decision=decision, now=now,
                       refused=refused)
    return fills, refused


def _audit_refused(
    session: Session,
    audit: AuditLog,
    *,
    actor: str,
    decision: Decision,
    now: datetime,
    refused: list[RefusedRow],
    attempt: Refusal | None = None,
) -> None:
    by_code: dict[str, list[int]] = defaultdict(list)
    for pid, code, _ in refused:
        by_code[code].append(pid)
    details: dict[str, object] = {"decision": decision.value, "reasons": dict(by_code)}
    if attempt is not None:
        details["attempt"] = {"code": attempt.code.value, "message": attempt.message}
    audit.append(session, actor=actor, action="approval.refused", subject_type="payment",
                 subject_ids=[pid for pid, _, _ in refused], details=details, at=now)


# --- reading --------------------------------------------------------------------------------


def pending(
    session: Session,
    policy: ApprovalPolicy,
    *,
    username: str | None = None,
    now: datetime | None = None,
) -> list[PendingRow]:
    """Every payment waiting for approval, what it still needs and who could give it."""
    user_row = None
    if username is not None:
        user_row = session.execute(
            select(UserRow).where(UserRow.username == username)
        ).scalar_one_or_none()
        if user_row is None:
            raise InvalidValue(f"no user named {username!r}")
    user = _domain_user(session, user_row) if user_row is not None else None
    ids = list(session.execute(
        select(Payment.id).where(Payment.state == PaymentState.PENDING_APPROVAL.value)
        .order_by(Payment.id)
    ).scalars())
    rows: list[PendingRow] = []
    for chunk in _chunks(ids):
        cases = _load_cases(session, chunk, lock=False)
        since = _waiting_since(session, chunk)
        for pid in chunk:
            case = cases.get(pid)
            if case is None:  # moved on since the id list was read
                continue
            rows.append(_pending_row(policy, pid, case, since[pid], user, user_row, now))
    return rows


def _pending_row(
    policy: ApprovalPolicy,
    pid: int,
    case: Case,
    waiting_since: datetime,
    user: User | None,
    user_row: UserRow | None,
    now: datetime | None,
) -> PendingRow:
    levels = levels_for(policy, case)
    required = () if isinstance(levels, Refusal) else levels
    level = next_level(required, case.given)
    verdict = None
    if user is not None and user_row is not None:
        verdict = judge(policy, case, user, locked_until=user_row.locked_until, now=now)
    return PendingRow(
        payment_id=pid, end_to_end_id=case.label, amount=case.amount, category=case.category,
        maker=case.maker, levels=required,
        filled={g.level: g.approver for g in sorted(case.given, key=lambda g: g.level)},
        next_role=required[level - 1] if level is not None else None,
        can_approve=None if verdict is None else isinstance(verdict, Fill),
        why_not=verdict if isinstance(verdict, Refusal) else None,
        waiting_since=waiting_since,
    )


def escalate_overdue(
    session: Session, audit: AuditLog, policy: ApprovalPolicy, now: datetime
) -> list[int]:
    """Raise one alert naming every payment waiting past the policy's limit at its level.

    A payment already named by an overdue alert in the last 24 hours is not named again, so a
    scheduled rerun does not flood the operators.
    """
    limit = timedelta(hours=policy.escalate_after_hours)
    overdue = [row for row in pending(session, policy) if now - row.waiting_since > limit]
    recent = _recently_escalated(session, now - ESCALATION_QUIET)
    fresh = [row for row in overdue if row.payment_id not in recent]
    if not fresh:
        return []
    needs = Counter(row.next_role or "no policy" for row in fresh)
    waiting = ", ".join(f"{role} x{n}" for role, n in sorted(needs.items()))
    ids = [row.payment_id for row in fresh]
    alert = Alert(
        kind="approval.overdue", severity=Severity.WARNING.value,
        subject=f"{len(ids)} payment(s) waiting for approval",
        message=(f"{len(ids)} payment(s) have waited more than {policy.escalate_after_hours} h "
                 f"at one approval level (waiting for: {waiting})"),
        details={"payment_ids": ids, "next_roles": dict(needs),
                 "escalate_after_hours": policy.escalate_after_hours},
        created_at=now,
    )
    session.add(alert)
    session.flush()
    audit.append(session, actor=SYSTEM, action="approval.escalated", subject_type="payment",
                 subject_ids=ids, details={"alert_id": alert.id, "next_roles": dict(needs)},
                 at=now)
    return ids


def audit_state_check(session: Session) -> list[Mismatch]:
    """Payments whose state is not the one their last audited transition says.

    Every state change goes through ``move_payments``, which audits it; a state changed by
    hand in the database shows up here. A payment still in its initial state needs no event.
    """
    audited = _audited_states(session)
    mismatches: list[Mismatch] = []
    rows = session.execute(
        select(Payment.id, Payment.end_to_end_id, Payment.state).order_by(Payment.id)
        .execution_options(yield_per=_AUDIT_PAGE)
    )
    for pid, e2e, state in rows:
        expected = audited.get(str(pid))
        if expected is None and state == PaymentState.REQUESTED.value:
            continue
        if state != expected:
            mismatches.append(Mismatch(pid, e2e, state, expected))
    return mismatches


def record_mismatches(
    session: Session, audit: AuditLog, mismatches: Sequence[Mismatch], *, actor: str,
    now: datetime,
) -> None:
    """Alert on and audit what :func:`audit_state_check` found (nothing if it found nothing)."""
    if not mismatches:
        return
    ids = [m.payment_id for m in mismatches]
    alert = Alert(
        kind="audit.state_mismatch", severity=Severity.CRITICAL.value,
        subject=f"{len(ids)} payment state(s) differ from the audit trail",
        message=(f"{len(ids)} payment(s) are in a state no audited transition put them in "
                 "(edited directly in the database?)"),
        details={"payments": {str(m.payment_id): {"state": m.state, "audited": m.audited}
                              for m in mismatches}},
        created_at=now,
    )
    session.add(alert)
    session.flush()
    audit.append(session, actor=actor, action="audit.state_mismatch", subject_type="payment",
                 subject_ids=ids, details={"alert_id": alert.id}, at=now)


def current_code(session: Session, cipher: FieldCipher, username: str, at: datetime) -> str:
    """The code the user's authenticator app shows at ``at`` (for tests and the demo)."""
    return auth.current_code(session, cipher, username, at)


# --- helpers --------------------------------------------------------------------------------


def _domain_user(session: Session, row: UserRow) -> User:
    return auth.domain_user(session, row)


def _load_cases(session: Session, ids: list[int], *, lock: bool) -> dict[int, Case]:
    query = select(Payment.id, Payment.end_to_end_id, Payment.amount_minor, Payment.currency,
                   Payment.category, Payment.maker, Payment.state, Payment.approval_round
                   ).where(Payment.id.in_(ids))
    if lock:
        # Rows locked in id order: two approvers of overlapping sets cannot deadlock, and no
        # one moves a payment between our reading its state and recording the decision.
        query = query.order_by(Payment.id).with_for_update()
    payments = session.execute(query).all()
    given: dict[int, list[Given]] = defaultdict(list)
    # Only decisions of the payment's current approval round count: a corrected payment that must be
    # approved again starts with every level empty.
    for pid, level, role, approver in session.execute(
        select(ApprovalRow.payment_id, ApprovalRow.level, ApprovalRow.role, ApprovalRow.approver)
        .join(Payment, Payment.id == ApprovalRow.payment_id)
        .where(ApprovalRow.payment_id.in_(ids),
               ApprovalRow.approval_round == Payment.approval_round)
    ):
        given[pid].append(Given(level, role, approver))
    return {
        pid: Case(label=e2e, amount=Money.from_minor(minor, currency), category=category,
                  maker=maker, state=state, given=tuple(given[pid]))
        for pid, e2e, minor, currency, category, maker, state, _round in payments
    }


def _waiting_since(session: Session, ids: list[int]) -> dict[int, datetime]:
    """Since when each payment waits at its current level: its last decision, else its entry.

    ``updated_at`` of a PENDING_APPROVAL payment is when it entered approval: deciding a level
    adds an approval row but does not touch the payment.
    """
    since = dict(session.execute(
        select(Payment.id, Payment.updated_at).where(Payment.id.in_(ids))
    ).all())
    last = session.execute(
        select(ApprovalRow.payment_id, func.max(ApprovalRow.decided_at))
        .where(ApprovalRow.payment_id.in_(ids)).group_by(ApprovalRow.payment_id)
    )
    for pid, decided_at in last:
        if decided_at > since[pid]:
            since[pid] = decided_at
    return since


def _recently_escalated(session: Session, after: datetime) -> set[int]:
    named: set[int] = set()
    for details in session.execute(
        select(Alert.details).where(Alert.kind == "approval.overdue", Alert.created_at > after)
    ).scalars():
        named.update(details.get("payment_ids", ()))
    return named


def _audited_states(session: Session) -> dict[str, str]:
    """Each payment's last audited state, from the state events read once in seq order."""
    audited: dict[str, str] = {}
    after = 0
    while True:
        page = session.execute(
            select(AuditEventRow.seq, AuditEventRow.subject_ids, AuditEventRow.details)
            .where(AuditEventRow.action == "payment.state",
                   AuditEventRow.subject_type == "payment", AuditEventRow.seq > after)
            .order_by(AuditEventRow.seq).limit(_AUDIT_PAGE)
        ).all()
        if not page:
            return audited
        for _, subject_ids, details in page:
            audited.update(dict.fromkeys(subject_ids, details.get("to")))
        after = page[-1].seq


def record_approved_digests(session: Session, ids: Sequence[int]) -> None:
    """Remember what was approved, so a later change of amount or payee is noticed."""
    rows = session.execute(select(*DIGESTED).where(Payment.id.in_(list(ids)))).all()
    table = Payment.__table__
    session.execute(update(table).where(table.c.id == bindparam("pid"))
                    .values(approved_digest=bindparam("digest")),
                    [{"pid": row[0], "digest": approval_digest(*row[1:])} for row in rows])


def _all_refused(ids: list[int], refusal: Refusal) -> list[RefusedRow]:
    return [(pid, refusal.code.value, refusal.message) for pid in ids]


def _unique(ids: Sequence[int]) -> list[int]:
    return sorted(set(ids))


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]
