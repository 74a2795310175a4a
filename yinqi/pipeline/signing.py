"""Building and signing each batch once, keeping the bytes that every (re)send will send."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from connectors.archive import Archive
from connectors.base import DebtorAccount, OutgoingBatch
from yinqi.bootstrap import App
from yinqi.payments import BatchState, Category
from yinqi.payments import Payment as DomainPayment
from yinqi.money import Money
from yinqi.pipeline.banks import BankPool
from yinqi.states import PaymentState
from yinqi.store.claims import DEFAULT_LEASE, claim_batches, release_batches
from yinqi.store.models import BankAccount, Batch, Payment
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

ACTOR = "yinqi.pipeline"


@dataclass
class SigningResult:
    signed: list[int] = field(default_factory=list)
    payments: int = 0


def outgoing(app: App, batch: Batch) -> OutgoingBatch:
    """The batch as the connector builds it, from the database alone."""
    with app.sessions() as s:
        account = s.get(BankAccount, batch.debtor_account_id)
        assert account is not None
        rows = s.execute(select(Payment).where(Payment.batch_id == batch.id)
                         .order_by(Payment.id)).scalars().all()
        payments = [DomainPayment(
            end_to_end_id=p.end_to_end_id, debtor_account=account.number,
            creditor_name=p.creditor_name, creditor_account=p.creditor_account,
            amount=Money.from_minor(p.amount_minor, p.currency), purpose=p.purpose,
            category=Category(p.category), maker=p.maker, requested_date=p.requested_date,
            creditor_bank_name=p.creditor_bank_name, creditor_cnaps=p.creditor_cnaps,
            creditor_bic=p.creditor_bic, urgent=p.urgent) for p in rows]
    bank = app.config.banks[batch.bank]
    company = app.config.company
    debtor = DebtorAccount(company=company.name, account=account.number,
                           currency=account.currency, bic=bank.bic, cnaps=bank.cnaps_code,
                           credit_code=company.credit_code)
    assert batch.execution_date is not None
    return OutgoingBatch(msg_id=batch.msg_id, created_at=batch.created_at or datetime.now(UTC),
                         debtor=debtor, execution_date=batch.execution_date, payments=payments,
                         urgent=batch.urgent)


def relative_to_home(app: App, path: Path) -> str:
    """Archive paths are stored relative to the home folder, so a restored home still works."""
    try:
        return str(path.resolve().relative_to(app.settings.home.resolve()))
    except ValueError:
        return str(path)


def home_path(app: App, stored: str) -> Path:
    p = Path(stored)
    return p if p.is_absolute() else app.settings.home / p


def archive_of(app: App, bank: str) -> Archive:
    """The bank's message archive, sealing and opening with the installation's file keys."""
    return Archive(app.settings.home / "archive", bank, app.files)


def read_archived(app: App, stored: str) -> bytes:
    """The plaintext of an archived file by its stored path (relative to the home folder).

    ``FileNotFoundError`` when it is gone, ``SecurityError`` when it does not open; the caller
    compares the recorded SHA-256."""
    path = home_path(app, stored)
    return archive_of(app, path.parent.parent.name).read(path)


def sign_batches(app: App, banks: BankPool, worker: str, *, limit: int = 50,
                 lease: timedelta = DEFAULT_LEASE) -> SigningResult:
    """Claim built batches, build and sign each, archive the bytes durably, then record them.

    Killed before the record commits, the batch is still BUILT: it is signed again (nothing
    has been sent), and the orphan file stays in the archive as evidence of the attempt.
    """
    result = SigningResult()
    ids = claim_batches(app.sessions, worker, states=[BatchState.BUILT], limit=limit,
                        lease=lease)
    try:
        for batch_id in ids:
            with app.sessions() as s:
                batch = s.get(Batch, batch_id)
                assert batch is not None
                s.expunge(batch)
            if batch.state != BatchState.BUILT.value or batch.claimed_by != worker:
                continue
            body = banks[batch.bank].prepare(outgoing(app, batch))
            path, digest = archive_of(app, batch.bank).keep(
                "order", batch.msg_id, body, suffix=_suffix(batch.dialect), durable=True)
            with app.sessions.begin() as s:
                done = s.execute(
                    update(Batch).where(Batch.id == batch_id, Batch.claimed_by == worker,
                                        Batch.state == BatchState.BUILT.value)
                    .values(state=BatchState.SIGNED.value, file_path=relative_to_home(app, path),
                            file_sha256=digest, signed_at=utcnow())
                    .execution_options(synchronize_session=False)).rowcount
                if not done:
                    continue  # our lease was taken over; the other worker signs it
                pids = list(s.execute(select(Payment.id).where(Payment.batch_id == batch_id))
                            .scalars())
                move_payments(s, app.audit, pids, PaymentState.SIGNED, actor=worker,
                              reason=f"batch {batch.msg_id}")
                app.audit.append(s, actor=worker, action="batch.signed", subject_type="batch",
                                 subject_ids=[batch_id],
                                 details={"msg_id": batch.msg_id, "sha256": digest,
                                          "file": relative_to_home(app, path),
                                          "payments": len(pids)})
            result.signed.append(batch_id)
            result.payments += len(pids)
    finally:
        with app.sessions.begin() as s:
            release_batches(s, worker, ids)
    return result


def _suffix(dialect: str) -> str:
    return ".xml" if dialect == "iso20022" else ".json"
