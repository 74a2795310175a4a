"""Building and signing each batch once, keeping the bytes that every (re)send will send."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from connectors.archive import Archive
from connectors.base import DebtorAccount, OutgoingBatch
from connectors.errors import BankError
from yinqi.alerts import Severity
from yinqi.bootstrap import App
from yinqi.errors import ConfigError, InvalidValue, SecurityError
from yinqi.payments import BatchState, Category
from yinqi.payments import Payment as DomainPayment
from yinqi.money import Money
from yinqi.pipeline.alerting import alert_once, bank_trouble
from yinqi.pipeline.banks import BankPool
from yinqi.pipeline.outcomes import next_poll_delay
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
    #: Batches claimed (signed or not): a loop goes on while this is not zero.
    batches: int = 0
    #: One line per batch that was not signed, naming the batch or the bank and why.
    errors: list[str] = field(default_factory=list)
    #: Batches that wait for a fix outside this run (a bank's certificate or entry, our
    #: signing key): BUILT with ``last_error``, tried again by the next run or sweep.
    blocked: list[int] = field(default_factory=list)
    #: Batches whose file cannot be built: INVALID, until a person dissolves them.
    set_aside: list[int] = field(default_factory=list)

    def merge(self, other: SigningResult) -> None:
        self.signed += other.signed
        self.payments += other.payments
        self.batches += other.batches
        self.errors += other.errors
        self.blocked += other.blocked
        self.set_aside += other.set_aside


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
                 lease: timedelta = DEFAULT_LEASE,
                 rng: random.Random | None = None) -> SigningResult:
    """Claim built batches, build and sign each, archive the bytes durably, then record them.

    Killed before the record commits, the batch is still BUILT: it is signed again (nothing
    has been sent), and the orphan file stays in the archive as evidence of the attempt.

    A batch whose file cannot be built is set aside (INVALID) with the reason; a batch whose
    bank (or our signing key) cannot sign now stays BUILT with the reason and is not due
    again for a while. Either way the other batches go on.
    """
    rng = rng or random.Random()
    result = SigningResult()
    ids = claim_batches(app.sessions, worker, states=[BatchState.BUILT], limit=limit,
                        lease=lease, due_only=True)
    try:
        for batch_id in ids:
            with app.sessions() as s:
                batch = s.get(Batch, batch_id)
                assert batch is not None
                s.expunge(batch)
            if batch.state != BatchState.BUILT.value or batch.claimed_by != worker:
                continue
            result.batches += 1
            try:
                body = banks.for_signing(batch.bank).prepare(outgoing(app, batch))
            except InvalidValue as exc:
                if _set_aside(app, batch, worker, str(exc)):
                    result.set_aside.append(batch_id)
                    result.errors.append(f"batch {batch.msg_id} set aside: {exc}")
                continue
            except (BankError, ConfigError, SecurityError) as exc:
                # The bank's entry or certificate, or our signing key: every batch of that
                # bank (or every batch) meets it, and a person has to fix it.
                _not_now(app, batch_id, worker, str(exc), rng)
                bank_trouble(app, batch.bank, exc)
                result.blocked.append(batch_id)
                result.errors.append(str(exc))
                continue
            path, digest = archive_of(app, batch.bank).keep(
                "order", batch.msg_id, body, suffix=_suffix(batch.dialect), durable=True)
            with app.sessions.begin() as s:
                done = s.execute(
                    update(Batch).where(Batch.id == batch_id, Batch.claimed_by == worker,
                                        Batch.state == BatchState.BUILT.value)
                    .values(state=BatchState.SIGNED.value, file_path=relative_to_home(app, path),
                            file_sha256=digest, signed_at=utcnow(), last_error=None,
                            poll_count=0, next_poll_at=None)
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


def _not_now(app: App, batch_id: int, worker: str, error: str, rng: random.Random) -> None:
    """Leave the batch BUILT with why, and not due again for a while: a loop over the stage
    moves on to the next batches instead of claiming this one again."""
    with app.sessions.begin() as s:
        count = s.execute(select(Batch.poll_count).where(Batch.id == batch_id)).scalar_one()
        s.execute(update(Batch).where(Batch.id == batch_id, Batch.claimed_by == worker)
                  .values(last_error=error[:2000], poll_count=count + 1,
                          next_poll_at=utcnow() + next_poll_delay(count + 1, rng))
                  .execution_options(synchronize_session=False))


def _set_aside(app: App, batch: Batch, worker: str, reason: str) -> bool:
    """INVALID with the reason, audited and alerted once; False if another worker took the
    batch meanwhile. Building it again would fail again: the values that fail are in its
    payments, which are taken back out with `yinqi batches dissolve`."""
    with app.sessions.begin() as s:
        moved = s.execute(
            update(Batch).where(Batch.id == batch.id, Batch.claimed_by == worker,
                                Batch.state == BatchState.BUILT.value)
            .values(state=BatchState.INVALID.value, last_error=reason[:2000])
            .execution_options(synchronize_session=False)).rowcount
        if not moved:
            return False
        app.audit.append(s, actor=worker, action="batch.set_aside", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "bank": batch.bank,
                                  "payments": batch.payment_count, "reason": reason[:500]})
    alert_once(app, kind="batch.invalid_file", severity=Severity.CRITICAL,
               subject=f"batch {batch.msg_id}",
               message=f"its payment file cannot be built, nothing was signed or sent: "
                       f"{reason}",
               details={"batch_id": batch.id, "bank": batch.bank,
                        "payments": batch.payment_count})
    return True


def _suffix(dialect: str) -> str:
    return ".xml" if dialect == "iso20022" else ".json"
