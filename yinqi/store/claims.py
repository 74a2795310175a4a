"""Claiming work so that two workers never carry the same bank message forward, nor ask the
bank for the same receipt.

PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows nobody else is claiming at this
instant, and the lease recorded in the same transaction keeps them ours afterwards.
SQLite: the engine begins every transaction with ``BEGIN IMMEDIATE``, so claims are already
serialised by the database's single write lock (FOR UPDATE is not SQL there).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from yinqi.payments import CLAIMABLE_BATCH_STATES, BatchState
from yinqi.store.models import BankAccount, Batch, Payment, Receipt
from yinqi.store.types import utcnow

DEFAULT_LEASE = timedelta(minutes=10)
#: Batch states in which nothing has left for the bank yet: a freeze stops their claim.
UNSENT = (BatchState.BUILT.value, BatchState.SIGNED.value)


def claim_batches(
    sessions: sessionmaker[Session],
    worker: str,
    *,
    states: Iterable[BatchState] = CLAIMABLE_BATCH_STATES,
    limit: int = 10,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
    due_only: bool = False,
) -> list[int]:
    """Claim up to ``limit`` batches in ``states`` whose lease is free or expired.

    ``due_only``: only batches whose next status query is due (``next_poll_at`` passed).

    Commits before returning: the claim must be visible to every other worker at once.
    """
    now = now or utcnow()
    wanted = [BatchState(s).value for s in states]
    with sessions.begin() as session:
        ids = list(
            session.execute(
                select(Batch.id)
                .where(Batch.state.in_(wanted))
                .where(or_(Batch.lease_until.is_(None), Batch.lease_until < now))
                .where(or_(Batch.next_poll_at.is_(None), Batch.next_poll_at <= now)
                       if due_only else true())
                .where(_not_frozen())
                .order_by(Batch.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if ids:
            session.execute(
                update(Batch)
                .where(Batch.id.in_(ids))
                .values(claimed_by=worker, claimed_at=now, lease_until=now + lease)
                .execution_options(synchronize_session=False)
            )
    return ids


def _not_frozen():  # type: ignore[no-untyped-def]
    """A frozen batch, or one from a frozen account, is never claimed to be signed or sent.
    Batches the bank may already have (SUBMITTING, UNKNOWN, ACCEPTED ...) are still claimed:
    asking the bank about them stays allowed, and a resend is refused at the send itself."""
    frozen_accounts = select(BankAccount.id).where(BankAccount.status == "frozen")
    return or_(Batch.state.not_in(UNSENT),
               and_(Batch.frozen.is_(False), Batch.debtor_account_id.not_in(frozen_accounts)))


def release_batches(session: Session, worker: str, ids: Iterable[int]) -> int:
    """Give up our lease on batches (only ours: a stolen, expired lease is not released)."""
    result = session.execute(
        update(Batch)
        .where(Batch.id.in_(list(ids)), Batch.claimed_by == worker)
        .values(lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def claim_receipts(
    sessions: sessionmaker[Session],
    worker: str,
    *,
    bank: str,
    states: Iterable[str],
    after: int = 0,
    limit: int = 250,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> list[tuple[int, str]]:
    """Claim up to ``limit`` payments of ``bank`` in ``states``, with ids above ``after``, that
    have no receipt yet and whose receipt lease is free or expired: (payment id, end-to-end
    ID) in id order. The lease is written on the payment row the claim locks, so a claimer
    that finds the row changed re-reads the lease (PostgreSQL re-checks a locked row's
    newest version). Commits before returning, like :func:`claim_batches`."""
    now = now or utcnow()
    with sessions.begin() as session:
        rows = [(pid, e2e) for pid, e2e in session.execute(
            select(Payment.id, Payment.end_to_end_id)
            .join(Batch, Batch.id == Payment.batch_id)
            .where(Batch.bank == bank, Payment.state.in_(list(states)), Payment.id > after)
            .where(or_(Payment.receipt_lease_until.is_(None), Payment.receipt_lease_until < now))
            .where(~select(Receipt.id).where(Receipt.payment_id == Payment.id).exists())
            .order_by(Payment.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Payment))]
        if rows:
            session.execute(
                update(Payment)
                .where(Payment.id.in_([pid for pid, _ in rows]))
                # A claim is not a change of the payment: updated_at stays when it entered its
                # state.
                .values(receipt_claimed_by=worker, receipt_lease_until=now + lease,
                        updated_at=Payment.updated_at)
                .execution_options(synchronize_session=False))
    return rows


def release_receipts(session: Session, worker: str, ids: Iterable[int]) -> int:
    """Give up our receipt leases (only ours: a lease another collector took over after ours
    expired stays theirs)."""
    result = session.execute(
        update(Payment)
        .where(Payment.id.in_(list(ids)), Payment.receipt_claimed_by == worker)
        .values(receipt_lease_until=None, updated_at=Payment.updated_at)
        .execution_options(synchronize_session=False))
    return result.rowcount or 0
