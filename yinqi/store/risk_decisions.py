"""People's risk decisions: release or reject a held payment, freeze by hand, lift a freeze.

Every decision needs the person's one-time code, checked by the approval gate's own check
(verify, replay guard, lockout: :mod:`yinqi.store.approvals`), and a role:

- release / reject a hold: treasurer, finance manager or CFO, never the payment's maker;
- freeze / unfreeze: treasurer or admin. Lifting a freeze takes two different people: the
  first asks (with a reason), a second confirms. The same person twice is refused.
- releasing the freezes a restore put on the company accounts (:mod:`yinqi.backup.guard`): one
  admin, after checking the bank (:func:`release_restore`).

Like the approval gate, refusals are *returned* and audited (``risk.refused``) in the caller's
transaction, so a wrong code's count and the refusal's event commit with everything else.
A released hold goes back into approval (PENDING_APPROVAL), never straight to APPROVED; if the
payment had approvals in its current round, a new round starts and it is approved afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from yinqi.approval import Reason, check_user
from yinqi.approvals import Role, User
from yinqi.errors import InvalidValue
from yinqi.security.fields import FieldCipher
from yinqi.security.masking import mask_account, redact
from yinqi.states import PaymentState
from yinqi.store import auth, login_risk
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Approval, BankAccount, Batch, Freeze, Payment, RiskHit
from yinqi.store.models import User as UserRow
from yinqi.store.risk import (
    FREEZABLE_BATCHES,
    HOLDABLE,
    RESTORE_RULE,
    active_freeze,
    audit_refused,
    freeze_subject,
)
from yinqi.store.transitions import move_payments

S = PaymentState

RELEASERS = frozenset({Role.TREASURER, Role.FINANCE_MANAGER, Role.CFO})
FREEZERS = frozenset({Role.TREASURER, Role.ADMIN})
#: Who lets the accounts send again after a restore: the administrators, who restore.
RESTORE_RELEASERS = frozenset({Role.ADMIN})
SUBJECTS = ("payment", "batch", "account")


class Why(StrEnum):
    """Why a risk decision was refused (stable codes for scripts and the audit log)."""

    ROLE_MISSING = "ROLE_MISSING"
    MAKER_CANNOT_RELEASE = "MAKER_CANNOT_RELEASE"
    NOT_HELD = "NOT_HELD"
    FROZEN = "FROZEN"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    NOT_FREEZABLE = "NOT_FREEZABLE"
    ALREADY_FROZEN = "ALREADY_FROZEN"
    ALREADY_LIFTED = "ALREADY_LIFTED"
    SAME_PERSON = "SAME_PERSON"
    NOT_RESTORE_FROZEN = "NOT_RESTORE_FROZEN"


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a decision did (``refused`` is None) or why it did nothing."""

    message: str
    refused: Refused | None = None
    payment_id: int | None = None
    state: str | None = None
    freeze_id: int | None = None
    #: unfreeze: "requested" (waits for a second person) or "lifted"; a release after a
    #: restore: "released".
    step: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message,
                "refused": None if self.refused is None else
                {"code": self.refused.code, "message": self.refused.message},
                "payment_id": self.payment_id, "state": self.state,
                "freeze_id": self.freeze_id, "step": self.step}


# --- holds ----------------------------------------------------------------------------------


def release(session: Session, audit: AuditLog, cipher: FieldCipher, *, payment: str | int,
            username: str, code: str, now: datetime, reason: str | None = None) -> Outcome:
    """Release a held payment back into approval (PENDING_APPROVAL)."""
    row = _payment(session, payment, lock=False)
    why = _clean(reason) or "released after review"
    person = _person(session, audit, cipher, username, code, now, roles=RELEASERS,
                     doing="release", subject_type="payment", subject_ids=[row.id])
    if isinstance(person, Refused):
        return Outcome(person.message, person, row.id, row.state)
    row = _payment(session, row.id)  # locked (after the person, as the approval gate does)
    refusal = _check_held(session, row, username, doing="release")
    if refusal is None:
        refusal = _blocked_by_freeze(session, row)
    if refusal is not None:
        return _refuse(session, audit, username, "release", row, refusal, now)
    hits = _open_hits(session, row.id, actions=("hold",))
    _resolve(session, hits, status="released", by=username, resolution=why, now=now)
    new_round = _back_to_approval(session, audit, [row.id], actor=username,
                                  reason=f"risk hold released by {username}: {why}")
    audit.append(session, actor=username, action="risk.released", subject_type="payment",
                 subject_ids=[row.id],
                 details={"rules": sorted({h.rule for h in hits}), "hit_ids": [h.id for h in hits],
                          "reason": why, "new_approval_round": row.id in new_round},
                 at=now)
    return Outcome(f"payment {row.id} released back into approval (PENDING_APPROVAL)"
                   + ("; its earlier approvals no longer count, it is approved afresh"
                      if row.id in new_round else ""),
                   payment_id=row.id, state=S.PENDING_APPROVAL.value)


def reject(session: Session, audit: AuditLog, cipher: FieldCipher, *, payment: str | int,
           username: str, code: str, reason: str, now: datetime) -> Outcome:
    """Reject a held (or frozen) payment: it is never paid."""
    why = _clean(reason)
    if not why:
        raise InvalidValue("a rejection needs a reason: say why the payment must not be paid")
    row = _payment(session, payment, lock=False)
    person = _person(session, audit, cipher, username, code, now, roles=RELEASERS,
                     doing="reject", subject_type="payment", subject_ids=[row.id])
    if isinstance(person, Refused):
        return Outcome(person.message, person, row.id, row.state)
    row = _payment(session, row.id)
    refusal = _check_held(session, row, username, doing="reject")
    if refusal is not None:
        return _refuse(session, audit, username, "reject", row, refusal, now)
    hits = _open_hits(session, row.id, actions=("hold", "freeze"))
    _resolve(session, hits, status="rejected", by=username, resolution=why, now=now)
    move_payments(session, audit, [row.id], S.REJECTED, actor=username,
                  reason=f"rejected after a risk hold by {username}: {why}")
    audit.append(session, actor=username, action="risk.rejected", subject_type="payment",
                 subject_ids=[row.id],
                 details={"rules": sorted({h.rule for h in hits}), "hit_ids": [h.id for h in hits],
                          "reason": why}, at=now)
    return Outcome(f"payment {row.id} rejected: it will not be paid", payment_id=row.id,
                   state=S.REJECTED.value)


def _check_held(session: Session, row: Payment, username: str, *, doing: str) -> Refused | None:
    if row.state != S.HELD.value:
        return Refused(Why.NOT_HELD, f"payment {row.id} is {row.state}, not HELD: nothing to "
                                     f"{doing}")
    if row.maker == username:
        return Refused(Why.MAKER_CANNOT_RELEASE,
                       f"{username} entered payment {row.id} and cannot {doing} its hold; "
                       "another person must")
    return None


def _blocked_by_freeze(session: Session, row: Payment) -> Refused | None:
    freeze = active_freeze(session, "payment", row.id)
    if freeze is not None:
        return Refused(Why.FROZEN,
                       f"payment {row.id} is frozen (freeze #{freeze.id}, rule {freeze.rule}); "
                       f"a release cannot lift a freeze: two people must "
                       f"(yinqi risk unfreeze {freeze.id})")
    account = session.get_one(BankAccount, row.debtor_account_id)
    if account.status == "frozen":
        freeze = active_freeze(session, "account", account.id)
        named = f" (freeze #{freeze.id}, rule {freeze.rule})" if freeze else ""
        return Refused(Why.ACCOUNT_FROZEN,
                       f"payment {row.id} is paid from account {mask_account(account.number)}, "
                       f"which is frozen{named}; lift that freeze first")
    return None


# --- freezes --------------------------------------------------------------------------------


def freeze(session: Session, audit: AuditLog, cipher: FieldCipher, *, subject_type: str,
           subject: str | int, username: str, code: str, reason: str, now: datetime
           ) -> Outcome:
    """Freeze a payment, a batch or a company account by hand (rule "manual")."""
    why = _clean(reason)
    if not why:
        raise InvalidValue("a freeze needs a reason: say what is wrong")
    if subject_type not in SUBJECTS:
        raise InvalidValue(f"cannot freeze a {subject_type!r}: give one of {', '.join(SUBJECTS)}")
    subject_id, label, problem = _freezable(session, subject_type, subject)
    person = _person(session, audit, cipher, username, code, now, roles=FREEZERS,
                     doing="freeze", subject_type=subject_type, subject_ids=[subject_id])
    if isinstance(person, Refused):
        return Outcome(person.message, person)
    existing = active_freeze(session, subject_type, subject_id)
    if problem is None and existing is not None:
        problem = Refused(Why.ALREADY_FROZEN, f"{label} is already frozen "
                                              f"(freeze #{existing.id}, rule {existing.rule})")
    if problem is not None:
        audit_refused(session, audit, actor=username, doing="freeze", subject_type=subject_type,
                      subject_ids=[subject_id], reason=problem.message, code=problem.code,
                      now=now)
        return Outcome(problem.message, problem)
    made, _ = freeze_subject(session, subject_type, subject_id, rule="manual",
                             frozen_by=username, reason=why, now=now)
    state = None
    if subject_type == "payment":
        state = session.execute(select(Payment.state).where(Payment.id == subject_id)
                                ).scalar_one()
        if state in HOLDABLE:
            move_payments(session, audit, [subject_id], S.HELD, actor=username,
                          reason=f"risk: frozen by {username} (freeze #{made.id})")
            state = S.HELD.value
    audit.append(session, actor=username, action="risk.frozen", subject_type=subject_type,
                 subject_ids=[subject_id],
                 details={"rule": "manual", "freeze_ids": [made.id], "reason": why}, at=now)
    return Outcome(f"{label} frozen (freeze #{made.id}); two different people must lift it",
                   payment_id=subject_id if subject_type == "payment" else None, state=state,
                   freeze_id=made.id)


def unfreeze(session: Session, audit: AuditLog, cipher: FieldCipher, *, freeze_id: int,
             username: str, code: str, reason: str, now: datetime) -> Outcome:
    """Ask for a freeze to be lifted, or, as a second person, confirm and lift it."""
    why = _clean(reason)
    if not why:
        raise InvalidValue("lifting a freeze needs a reason: say why it is safe again")
    if session.get(Freeze, freeze_id) is None:
        raise InvalidValue(f"no freeze #{freeze_id} (see `yinqi risk freezes`)")
    person = _person(session, audit, cipher, username, code, now, roles=FREEZERS,
                     doing="unfreeze", subject_type="freeze", subject_ids=[freeze_id])
    if isinstance(person, Refused):
        return Outcome(person.message, person, freeze_id=freeze_id)
    # Locked, so that two people confirming at once cannot both lift (or both ask).
    row = session.execute(select(Freeze).where(Freeze.id == freeze_id).with_for_update()
                          .execution_options(populate_existing=True)).scalar_one()
    problem = None
    if row.status != "active":
        problem = Refused(Why.ALREADY_LIFTED, f"freeze #{row.id} was already lifted by "
                                              f"{row.unfreeze_requested_by} and {row.lifted_by}")
    elif row.unfreeze_requested_by == username:
        problem = Refused(Why.SAME_PERSON,
                          f"{username} asked to lift freeze #{row.id} and cannot also confirm "
                          "it: a second, different person must")
    if problem is not None:
        audit_refused(session, audit, actor=username, doing="unfreeze", subject_type="freeze",
                      subject_ids=[row.id], reason=problem.message, code=problem.code,
                      rule=row.rule, now=now,
                      subject={"type": row.subject_type, "id": row.subject_id})
        return Outcome(problem.message, problem, freeze_id=row.id)
    if row.unfreeze_requested_by is None:
        row.unfreeze_requested_by, row.unfreeze_requested_at = username, now
        row.unfreeze_reason = why
        audit.append(session, actor=username, action="risk.unfreeze_requested",
                     subject_type="freeze", subject_ids=[row.id],
                     details={"rule": row.rule, "reason": why, "frozen_by": row.frozen_by,
                              "subject": {"type": row.subject_type, "id": row.subject_id}},
                     at=now)
        return Outcome(f"lifting freeze #{row.id} requested by {username}; a second person "
                       f"must confirm: yinqi risk unfreeze {row.id} --as OTHER --code CODE "
                       "--reason ...", freeze_id=row.id, step="requested")
    row.status, row.lifted_by, row.lifted_at = "lifted", username, now
    moved = _lift(session, audit, row, actor=username, reason=why, now=now)
    audit.append(session, actor=username, action="risk.unfrozen", subject_type="freeze",
                 subject_ids=[row.id],
                 details={"rule": row.rule, "requested_by": row.unfreeze_requested_by,
                          "request_reason": row.unfreeze_reason, "confirmed_by": username,
                          "reason": why, "frozen_by": row.frozen_by,
                          "subject": {"type": row.subject_type, "id": row.subject_id},
                          "back_to_approval": moved}, at=now)
    return Outcome(f"freeze #{row.id} lifted by {row.unfreeze_requested_by} and {username}"
                   + (f"; payment(s) {', '.join(map(str, moved))} back in approval"
                      if moved else ""),
                   freeze_id=row.id, step="lifted",
                   payment_id=row.subject_id if row.subject_type == "payment" else None)


def release_restore(session: Session, audit: AuditLog, cipher: FieldCipher, *,
                    account: str | int | None, username: str, code: str, reason: str,
                    now: datetime) -> Outcome:
    """Let a company account (``account``: its number or id), or every one (None), send again
    after a restore froze it: one administrator, who has checked the bank's record since the
    backup was taken. Each freeze is lifted as a two-person unfreeze would lift it."""
    why = _clean(reason)
    if not why:
        raise InvalidValue("a release after a restore needs a reason: say what you checked "
                           "(which statements, up to when)")
    query = select(Freeze).where(Freeze.rule == RESTORE_RULE, Freeze.subject_type == "account",
                                 Freeze.status == "active").order_by(Freeze.id)
    nothing = "no company account is frozen by a restore"
    if account is not None:
        row = _account(session, account)
        query = query.where(Freeze.subject_id == row.id)
        nothing = f"account {mask_account(row.number)} ({row.bank}) is not frozen by a restore"
    ids = list(session.execute(query.with_only_columns(Freeze.id)).scalars())
    doing = "release accounts frozen by a restore"
    person = _person(session, audit, cipher, username, code, now, roles=RESTORE_RELEASERS,
                     doing=doing, subject_type="freeze", subject_ids=ids)
    if isinstance(person, Refused):
        return Outcome(person.message, person)
    # Locked, so that two releases at once cannot both lift one freeze.
    rows = list(session.execute(query.with_for_update()
                                .execution_options(populate_existing=True)).scalars())
    if not rows:
        problem = Refused(Why.NOT_RESTORE_FROZEN, nothing)
        audit_refused(session, audit, actor=username, doing=doing,
                      subject_type="freeze", subject_ids=[], reason=problem.message,
                      code=problem.code, now=now)
        return Outcome(problem.message, problem)
    moved: list[int] = []
    for row in rows:
        row.status, row.lifted_by, row.lifted_at = "lifted", username, now
        row.unfreeze_requested_by, row.unfreeze_requested_at = username, now
        row.unfreeze_reason = why
        moved += _lift(session, audit, row, actor=username, reason=why, now=now)
    left = session.execute(select(func.count()).select_from(Freeze).where(
        Freeze.rule == RESTORE_RULE, Freeze.status == "active")).scalar_one()
    audit.append(session, actor=username, action="backup.released", subject_type="freeze",
                 subject_ids=[r.id for r in rows],
                 details={"rule": RESTORE_RULE, "reason": why,
                          "accounts": [r.subject_id for r in rows], "still_frozen": left,
                          "back_to_approval": moved}, at=now)
    return Outcome(f"released {len(rows)} account(s) frozen by the restore (freeze "
                   f"{', '.join(f'#{r.id}' for r in rows)}); "
                   + (f"{left} account(s) are still frozen by it" if left else
                      "nothing is frozen by the restore any more"),
                   freeze_id=rows[0].id if len(rows) == 1 else None, step="released")


def _lift(session: Session, audit: AuditLog, row: Freeze, *, actor: str, reason: str,
          now: datetime) -> list[int]:
    """Undo what the freeze blocked; returns the payments that went back into approval.

    A subject another freeze still holds stays blocked (a restore's freeze stands on top of
    a rule's): lifting the last one undoes the block and resolves the hits."""
    session.flush()
    if active_freeze(session, row.subject_type, row.subject_id) is not None:
        return []
    if row.subject_type == "account":
        session.execute(update(BankAccount).where(BankAccount.id == row.subject_id,
                                                  BankAccount.status == "frozen")
                        .values(status="active").execution_options(synchronize_session=False))
    elif row.subject_type == "batch":
        session.execute(update(Batch).where(Batch.id == row.subject_id).values(frozen=False)
                        .execution_options(synchronize_session=False))
    hits = list(session.execute(
        select(RiskHit).where(RiskHit.subject_type == row.subject_type,
                              RiskHit.subject_id == row.subject_id, RiskHit.action == "freeze",
                              RiskHit.status == "open")).scalars())
    _resolve(session, hits, status="released", by=actor,
             resolution=f"freeze #{row.id} lifted: {reason}", now=now)
    candidates = {h.payment_id for h in hits if h.payment_id is not None}
    if row.subject_type == "payment":
        candidates.add(row.subject_id)
    free = [pid for pid in sorted(candidates) if _free_to_go(session, pid)]
    _back_to_approval(session, audit, free, actor=actor,
                      reason=f"freeze #{row.id} lifted: {reason}")
    return free


def _free_to_go(session: Session, pid: int) -> bool:
    """A HELD payment nothing else holds: no other freeze, no open hold, account not frozen."""
    p = session.get(Payment, pid)
    if p is None or p.state != S.HELD.value:
        return False
    if active_freeze(session, "payment", pid) is not None:
        return False
    if session.get_one(BankAccount, p.debtor_account_id).status != "active":
        return False
    return not _open_hits(session, pid, actions=("hold", "freeze"))


def _freezable(session: Session, subject_type: str, subject: str | int
               ) -> tuple[int, str, Refused | None]:
    """(id, label, why it cannot be frozen or None)."""
    if subject_type == "payment":
        p = _payment(session, subject, lock=False)
        label = f"payment {p.id}"
        if p.state in HOLDABLE or p.state == S.HELD.value:
            return p.id, label, None
        if p.state in (S.BATCHED.value, S.SIGNED.value) and p.batch_id is not None:
            return p.id, label, Refused(
                Why.NOT_FREEZABLE, f"payment {p.id} is {p.state} in batch {p.batch_id}: freeze "
                                   f"the batch instead (yinqi risk freeze batch {p.batch_id})")
        return p.id, label, Refused(Why.NOT_FREEZABLE,
                                    f"payment {p.id} is {p.state}: it is past the point a "
                                    "freeze can stop")
    if subject_type == "batch":
        b = _batch(session, subject)
        label = f"batch {b.id} ({b.msg_id})"
        if b.state in FREEZABLE_BATCHES:
            return b.id, label, None
        return b.id, label, Refused(Why.NOT_FREEZABLE,
                                    f"batch {b.id} is {b.state}: the bank has it, a freeze "
                                    "stops nothing any more")
    a = _account(session, subject)
    label = f"account {mask_account(a.number)} ({a.bank})"
    if a.status == "closed":
        return a.id, label, Refused(Why.NOT_FREEZABLE, f"{label} is closed")
    return a.id, label, None


# --- reading --------------------------------------------------------------------------------


def list_hits(session: Session, *, open_only: bool = False, payment_id: int | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
    query = select(RiskHit).order_by(RiskHit.id.desc()).limit(limit)
    if open_only:
        query = query.where(RiskHit.status == "open")
    if payment_id is not None:
        query = query.where(RiskHit.payment_id == payment_id)
    return [{"id": h.id, "rule": h.rule, "action": h.action, "status": h.status,
             "subject_type": h.subject_type, "subject_id": h.subject_id,
             "payment_id": h.payment_id, "message": h.message, "details": h.details,
             "created_at": h.created_at.isoformat(), "resolved_by": h.resolved_by,
             "resolved_at": h.resolved_at.isoformat() if h.resolved_at else None,
             "resolution": h.resolution}
            for h in session.execute(query).scalars()]


def list_freezes(session: Session, *, active_only: bool = False) -> list[dict[str, Any]]:
    query = select(Freeze).order_by(Freeze.id.desc())
    if active_only:
        query = query.where(Freeze.status == "active")
    rows = list(session.execute(query).scalars())
    labels = _labels(session, rows)
    return [{"id": f.id, "subject_type": f.subject_type, "subject_id": f.subject_id,
             "subject": labels.get((f.subject_type, f.subject_id), ""), "rule": f.rule,
             "reason": f.reason, "frozen_by": f.frozen_by, "status": f.status,
             "created_at": f.created_at.isoformat(),
             "unfreeze_requested_by": f.unfreeze_requested_by,
             "unfreeze_requested_at": f.unfreeze_requested_at.isoformat()
             if f.unfreeze_requested_at else None,
             "unfreeze_reason": f.unfreeze_reason, "lifted_by": f.lifted_by,
             "lifted_at": f.lifted_at.isoformat() if f.lifted_at else None}
            for f in rows]


def _labels(session: Session, rows: Sequence[Freeze]) -> dict[tuple[str, int], str]:
    ids: dict[str, list[int]] = {t: [f.subject_id for f in rows if f.subject_type == t]
                                 for t in SUBJECTS}
    out: dict[tuple[str, int], str] = {}
    if ids["payment"]:
        for pid, e2e, state in session.execute(select(Payment.id, Payment.end_to_end_id,
                                                      Payment.state)
                                               .where(Payment.id.in_(ids["payment"]))):
            out[("payment", pid)] = f"payment {pid} {e2e} ({state})"
    if ids["batch"]:
        for bid, msg_id, state in session.execute(select(Batch.id, Batch.msg_id, Batch.state)
                                                  .where(Batch.id.in_(ids["batch"]))):
            out[("batch", bid)] = f"batch {bid} {msg_id} ({state})"
    if ids["account"]:
        for aid, number, bank, status in session.execute(
                select(BankAccount.id, BankAccount.number, BankAccount.bank, BankAccount.status)
                .where(BankAccount.id.in_(ids["account"]))):
            out[("account", aid)] = f"account {mask_account(number)} at {bank} ({status})"
    return out


# --- helpers --------------------------------------------------------------------------------


def _person(session: Session, audit: AuditLog, cipher: FieldCipher, username: str, code: str,
            now: datetime, *, roles: frozenset[Role], doing: str, subject_type: str,
            subject_ids: list[int]) -> User | Refused:
    """The person, if their one-time code is right and they hold one of ``roles``; a refusal
    (audited as ``risk.refused``) otherwise."""
    row = session.execute(
        # The user row is the lock that serialises one person's attempts (as at approval).
        select(UserRow).where(UserRow.username == username).with_for_update()
        .execution_options(populate_existing=True)).scalar_one_or_none()
    refusal: Refused | None = None
    if row is None:
        refusal = Refused(Reason.UNKNOWN_USER.value, f"no user named {username!r}")
    else:
        user = auth.domain_user(session, row)
        frozen = login_risk.active_freeze(session, row.id)
        # Locked or inactive users are refused before their code is looked at (no guessing).
        locked = check_user(user, locked_until=row.locked_until, now=now)
        if frozen is not None:
            refusal = Refused("USER_FROZEN", f"{username} is frozen (freeze #{frozen.id}, "
                                             f"rule {frozen.rule})")
        elif locked is not None:
            refusal = Refused(locked.code.value, locked.message)
        else:
            # The one-time code check of the approval gate and the login: verify, one use per
            # time step, lockout after repeated failures.
            wrong = auth.check_code(session, audit, cipher, row, code, now, auth.CODE_LOCKOUT)
            if wrong is not None:
                refusal = Refused(wrong.code.value, wrong.message)
            elif not any(user.has_role(role) for role in roles):
                refusal = Refused(Why.ROLE_MISSING,
                                  f"{username} may not {doing}: that needs the role "
                                  f"{' or '.join(sorted(roles))}")
            else:
                return user
    assert refusal is not None
    audit_refused(session, audit, actor=username, doing=doing, subject_type=subject_type,
                  subject_ids=subject_ids, reason=refusal.message, code=refusal.code, now=now)
    return refusal


def _refuse(session: Session, audit: AuditLog, username: str, doing: str, row: Payment,
            refusal: Refused, now: datetime) -> Outcome:
    rules = sorted({h.rule for h in _open_hits(session, row.id, actions=("hold", "freeze"))})
    audit_refused(session, audit, actor=username, doing=doing, subject_type="payment",
                  subject_ids=[row.id], reason=refusal.message, code=refusal.code,
                  rules=rules, now=now)
    return Outcome(refusal.message, refusal, row.id, row.state)


def _open_hits(session: Session, pid: int, *, actions: Sequence[str]) -> list[RiskHit]:
    return list(session.execute(
        select(RiskHit).where(RiskHit.payment_id == pid, RiskHit.status == "open",
                              RiskHit.action.in_(list(actions))).order_by(RiskHit.id)).scalars())


def _resolve(session: Session, hits: Sequence[RiskHit], *, status: str, by: str,
             resolution: str, now: datetime) -> None:
    for hit in hits:
        hit.status, hit.resolved_by, hit.resolved_at = status, by, now
        hit.resolution = resolution[:2000]
    session.flush()


def _back_to_approval(session: Session, audit: AuditLog, pids: Sequence[int], *, actor: str,
                      reason: str) -> set[int]:
    """HELD -> PENDING_APPROVAL; a payment that already had approvals in its current round
    starts a new round (the hold asked for a fresh look). Returns those that did."""
    if not pids:
        return set()
    approved = set(session.execute(
        select(Payment.id).join(Approval, Approval.payment_id == Payment.id)
        .where(Payment.id.in_(list(pids)), Approval.approval_round == Payment.approval_round)
        .group_by(Payment.id).having(func.count() > 0)).scalars())
    if approved:
        session.execute(update(Payment).where(Payment.id.in_(sorted(approved)))
                        .values(approval_round=Payment.approval_round + 1, approved_digest=None)
                        .execution_options(synchronize_session=False))
    move_payments(session, audit, list(pids), S.PENDING_APPROVAL, actor=actor, reason=reason)
    return approved


def _payment(session: Session, ref: str | int, *, lock: bool = True) -> Payment:
    text = str(ref).strip()
    query = select(Payment).where(Payment.end_to_end_id == text)
    if text.isdigit():
        query = select(Payment).where((Payment.id == int(text)) | (Payment.end_to_end_id == text))
    if lock:
        query = query.with_for_update()
    row = session.execute(query.execution_options(populate_existing=True)).scalars().first()
    if row is None:
        raise InvalidValue(f"no payment {text!r} (give its id or its end-to-end ID)")
    return row


def _batch(session: Session, ref: str | int) -> Batch:
    text = str(ref).strip()
    query = select(Batch).where(Batch.msg_id == text)
    if text.isdigit():
        query = select(Batch).where((Batch.id == int(text)) | (Batch.msg_id == text))
    row = session.execute(query).scalars().first()
    if row is None:
        raise InvalidValue(f"no batch {text!r} (give its id or its message ID)")
    return row


def _account(session: Session, ref: str | int) -> BankAccount:
    """A company account by its number (compared encrypted, in SQL) or its id."""
    text = "".join(str(ref).split())
    row = session.execute(select(BankAccount).where(BankAccount.number == text)).scalars().first()
    if row is None and text.isdigit() and len(text) < 8:
        row = session.get(BankAccount, int(text))
    if row is None:
        raise InvalidValue(f"no company account {mask_account(text)} (give its number or its id)")
    return row


def _clean(text: str | None) -> str:
    """A reason as typed, with any account number in it masked (reasons are shown and kept)."""
    return redact(" ".join((text or "").split()))[:500]


__all__ = ["FREEZERS", "RELEASERS", "RESTORE_RELEASERS", "Outcome", "Refused", "Why", "freeze",
           "list_freezes", "list_hits", "reject", "release", "release_restore", "unfreeze"]
