"""Claiming batches so that two workers never carry the same bank message forward.

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
from yinqi.store.models import BankAccount, Batch
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
