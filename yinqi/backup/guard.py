"""After a restore nothing is sent until a person has checked the bank.

A restored database is as of its backup. Payments approved, batched, signed or sent after the
backup was taken may already be at the bank while the restored database shows them APPROVED,
BATCHED, SIGNED, SUBMITTING or UNKNOWN, or not at all. Batching gives every new bank message
a new message ID, so an approved payment batched again would reach the bank as a new message
and be paid twice. A restore of an installation therefore freezes every company account (the
risk freeze, rule ``backup_restore``): batching leaves approved payments alone, unsent batches
are neither signed nor sent, and a send already under way is refused at the send itself.
Batches the bank may already have (SUBMITTING, UNKNOWN) are still asked about with their own
message ID, which is how such a batch is always resolved before any resend.

An administrator who has checked each account's transactions since the backup releases the
accounts (``yinqi backup release``, :func:`yinqi.store.risk_decisions.release_restore`); two
people may also lift one account's freeze with ``yinqi risk unfreeze``. Until then
``yinqi doctor`` fails. The restore drill's scratch database is thrown away and never frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from yinqi.alerts import Severity
from yinqi.security.masking import mask_account
from yinqi.states import PaymentState
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, AuditEventRow, BankAccount, Freeze, Payment
from yinqi.store.risk import RESTORE_RULE

S = PaymentState

#: States in which a payment of the restored database may be behind the bank's record.
BEHIND_THE_BANK = (S.APPROVED.value, S.BATCHED.value, S.SIGNED.value, S.SUBMITTING.value,
                   S.UNKNOWN.value)
RELEASE = "yinqi backup release --all --as ADMIN --code CODE --reason ..."


@dataclass(frozen=True)
class FrozenAccount:
    freeze_id: int
    account_id: int
    #: ``<bank>:****1234``, as ``yinqi transactions --account`` takes it.
    account: str


@dataclass(frozen=True)
class SendingFrozen:
    """What a restore froze, and what the operator does about it."""

    backup: str
    taken_at: datetime
    accounts: list[FrozenAccount]
    #: Payments per state the restored database shows before the bank's last word.
    payments: dict[str, int] = field(default_factory=dict)

    @property
    def since(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} UTC"

    @property
    def message(self) -> str:
        return (f"sending is frozen: {len(self.accounts)} company account(s) frozen because "
                f"payments made after backup {self.backup} was taken ({self.since}) may "
                "already be at the bank")

    @property
    def next_steps(self) -> str:
        return (f"check each account's transactions since {self.taken_at:%Y-%m-%d} (yinqi "
                f"transactions --account ACCOUNT --from {self.taken_at:%Y-%m-%d} --to TODAY; "
                "yinqi statements fetch, yinqi reconcile run); stop every payment already paid "
                "(yinqi risk freeze payment ID, then yinqi risk reject ID); then release: "
                f"{RELEASE} (or one account: yinqi backup release ACCOUNT_ID ...)")

    def as_json(self) -> dict[str, Any]:
        return {"backup": self.backup, "taken_at": self.taken_at.isoformat(),
                "accounts": [asdict(a) for a in self.accounts], "payments": self.payments,
                "message": self.message, "next_steps": self.next_steps, "release": RELEASE}


def reason(backup: str, taken_at: datetime, account: str, account_id: int) -> str:
    """The freeze's reason, which `yinqi risk freezes` and every refusal show."""
    day = f"{taken_at:%Y-%m-%d}"
    return (f"restored from backup {backup} taken {taken_at:%Y-%m-%d %H:%M} UTC: payments made "
            f"after it may already be at the bank; check this account's transactions since "
            f"then (yinqi transactions --account {account} --from {day} --to TODAY), stop what "
            f"was already paid (yinqi risk freeze payment ID, yinqi risk reject ID), then run "
            f"`yinqi backup release {account_id} --as ADMIN --code CODE --reason ...`")


def freeze_sending(session: Session, audit: AuditLog, *, backup: str, taken_at: datetime,
                   actor: str, now: datetime) -> SendingFrozen:
    """Freeze every company account that is not closed, in the caller's transaction.

    An account a rule had already frozen gets a freeze of its own on top: lifting the rule's
    freeze then leaves it frozen until the restore's is released too."""
    taken_at = taken_at.astimezone(UTC)
    accounts = list(session.execute(select(BankAccount).where(
        BankAccount.status.in_(("active", "frozen"))).order_by(BankAccount.id)).scalars())
    labels = {a.id: f"{a.bank}:{mask_account(a.number)}" for a in accounts}
    freezes = [Freeze(subject_type="account", subject_id=a.id, rule=RESTORE_RULE,
                      reason=reason(backup, taken_at, labels[a.id], a.id), frozen_by=actor,
                      status="active", created_at=now) for a in accounts]
    session.add_all(freezes)
    session.flush()
    ids = [a.id for a in accounts]
    if ids:
        session.execute(update(BankAccount).where(BankAccount.id.in_(ids),
                                                  BankAccount.status == "active")
                        .values(status="frozen").execution_options(synchronize_session=False))
    payments = {state: int(n) for state, n in session.execute(
        select(Payment.state, func.count()).where(Payment.state.in_(BEHIND_THE_BANK))
        .group_by(Payment.state).order_by(Payment.state))}
    frozen = SendingFrozen(backup, taken_at,
                           [FrozenAccount(f.id, f.subject_id, labels[f.subject_id])
                            for f in freezes], payments)
    if freezes:
        audit.append(session, actor=actor, action="risk.frozen", subject_type="account",
                     subject_ids=ids, details={"rule": RESTORE_RULE,
                                               "freeze_ids": [f.id for f in freezes],
                                               "backup": backup}, at=now)
    audit.append(session, actor=actor, action="backup.restored", subject_type="backup",
                 subject_ids=[backup],
                 details={"backup": backup, "taken_at": taken_at.isoformat(),
                          "freeze_ids": [f.id for f in freezes],
                          "accounts": [a.account for a in frozen.accounts],
                          "payments_behind_the_bank": payments}, at=now)
    session.add(Alert(kind="backup.sending_frozen", severity=Severity.CRITICAL.value,
                      subject=f"restore of backup {backup}", message=frozen.message[:2000],
                      details={"backup": backup, "freeze_ids": [f.id for f in freezes]},
                      created_at=now))
    return frozen


@dataclass(frozen=True)
class StillFrozen:
    """Accounts a restore froze that nobody has released yet (for ``yinqi doctor``)."""

    accounts: list[FrozenAccount]
    backup: str | None
    taken_at: str | None


def still_frozen(session: Session) -> StillFrozen:
    rows = session.execute(
        select(Freeze.id, BankAccount.id, BankAccount.bank, BankAccount.number)
        .join(BankAccount, BankAccount.id == Freeze.subject_id)
        .where(Freeze.rule == RESTORE_RULE, Freeze.subject_type == "account",
               Freeze.status == "active").order_by(Freeze.id)).all()
    accounts = [FrozenAccount(fid, aid, f"{bank}:{mask_account(number)}")
                for fid, aid, bank, number in rows]
    if not accounts:
        return StillFrozen([], None, None)
    restored = session.execute(select(AuditEventRow.details).where(
        AuditEventRow.action == "backup.restored").order_by(AuditEventRow.seq.desc())
        .limit(1)).scalar_one_or_none() or {}
    return StillFrozen(accounts, restored.get("backup"), restored.get("taken_at"))


__all__ = ["BEHIND_THE_BANK", "RELEASE", "FrozenAccount", "SendingFrozen", "StillFrozen",
           "freeze_sending", "reason", "still_frozen"]
