"""Storing a checked voucher file: vouchers, quarantined rows and payments, in one transaction.

Idempotency rests on the database's unique constraints, not on a look before the write:
``import_files(source, sha256)`` recognises the same file bytes, ``vouchers(source,
external_ref)`` a voucher already received in another file. A concurrent import of the same
file or of overlapping vouchers makes one of the two inserts fail; that import re-reads what
the other committed and reports those rows as duplicates.

Every input row ends up exactly once as accepted, quarantined or duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.risk import RiskRules
from yinqi.errors import ConcurrencyConflict, StoreError
from yinqi.identifiers import mask
from yinqi.states import PaymentState
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import BankAccount, ImportFile, Payment, QuarantinedRow, Voucher
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow
from yinqi.store.risk import audit_refused, frozen_accounts, screen_payments
from yinqi.vouchers import IntakeResult, Quarantined, VoucherLine

# Rows per IN list and per audited state move: well under SQLite's 32,766 bound parameters,
# and one audit event never names more payments than an auditor can page through.
CHUNK = 5000
# A concurrent import can take some of our vouchers between our read and our insert; each
# retry re-reads them, and one retry per competing import is enough.
_RACE_RETRIES = 5

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    import_file_id: int
    sha256: str
    accepted: int
    quarantined: list[tuple[int, str]]
    duplicates: list[tuple[int, str]]
    payment_ids: list[int]
    # True when these exact bytes were imported before: nothing was created this time.
    already_imported: bool = False


def own_accounts(session: Session) -> dict[str, str]:
    """The company's accounts that vouchers may name as the payer: number -> currency.

    Frozen accounts are listed too, so that their vouchers pass the row checks and are then
    quarantined by :func:`import_vouchers` with the freeze named, not as strangers.
    """
    accounts = {number: currency for number, (_, currency) in _active_accounts(session).items()}
    for number, currency in session.execute(select(BankAccount.number, BankAccount.currency)
                                            .where(BankAccount.status == "frozen")):
        accounts.setdefault(number, currency)
    return accounts


def import_vouchers(
    session: Session,
    audit: AuditLog,
    *,
    source: str,
    file_name: str,
    data: bytes,
    rows_result: IntakeResult,
    imported_by: str,
    risk_rules: RiskRules | None,
    now: datetime | None = None,
) -> ImportSummary:
    """Store one checked file inside the caller's transaction; see the module docstring.

    ``risk_rules`` must be given (a caller cannot forget the screen by leaving it out;
    ``None`` is for tests of intake alone): every new payment is screened (yinqi.store.risk) on its way from
    REQUESTED to PENDING_APPROVAL: a payment a rule holds or freezes goes to HELD instead.
    Vouchers paying from a frozen account are always quarantined, naming the freeze.
    ``now`` is the moment of intake (rules such as out-of-hours judge it); default: now.
    """
    digest = hashlib.sha256(data).hexdigest()
    every_row = sorted([(line.row, line.external_ref) for line in rows_result.accepted]
                       + [(q.row, q.external_ref) for q in rows_result.quarantined])
    file_id = _claim_file(session, source, file_name, digest, imported_by)
    if file_id is None:
        first = session.execute(select(ImportFile.id).where(
            ImportFile.source == source, ImportFile.sha256 == digest)).scalar_one()
        return ImportSummary(first, digest, 0, [], every_row, [], already_imported=True)

    now = now or utcnow()
    rows_result = _refuse_frozen_payers(session, audit, rows_result, file_id, imported_by, now)
    accounts = _active_accounts(session)
    fresh, received, voucher_ids = _insert_vouchers(session, source, file_id, rows_result, now)
    quarantined = [q for q in rows_result.quarantined if q.external_ref not in received]
    duplicates = sorted([(line.row, line.external_ref) for line in rows_result.accepted
                         if line.external_ref in received]
                        + [(q.row, q.external_ref) for q in rows_result.quarantined
                           if q.external_ref in received])
    assert len(fresh) + len(quarantined) + len(duplicates) == rows_result.rows

    _insert_all(session, QuarantinedRow, [
        {"import_file_id": file_id, "row_number": q.row, "reason": q.reason,
         "payload": q.fields, "created_at": now} for q in quarantined])
    payment_ids = _insert_payments(session, file_id, fresh, voucher_ids, accounts, imported_by, now)
    session.execute(update(ImportFile).where(ImportFile.id == file_id).values(
        accepted=len(fresh), quarantined=len(quarantined), duplicates=len(duplicates)))
    audit.append(session, actor=imported_by, action="vouchers.imported",
                 subject_type="import_file", subject_ids=[file_id],
                 details={"file": file_name, "sha256": digest, "source": source,
                          "rows": rows_result.rows, "accepted": len(fresh),
                          "quarantined": len(quarantined), "duplicates": len(duplicates)})
    for chunk in _chunks(payment_ids, CHUNK):
        stopped: set[int] = set()
        if risk_rules is not None:
            stopped = set(screen_payments(session, risk_rules, audit, chunk, actor=imported_by,
                                          now=now).held)
        move_payments(session, audit, [pid for pid in chunk if pid not in stopped],
                      PaymentState.PENDING_APPROVAL, actor=imported_by,
                      reason=f"imported from {file_name}")
    return ImportSummary(
        import_file_id=file_id, sha256=digest, accepted=len(fresh),
        quarantined=sorted((q.row, q.reason) for q in quarantined),
        duplicates=duplicates, payment_ids=payment_ids,
    )


def _claim_file(session: Session, source: str, file_name: str, digest: str,
                imported_by: str) -> int | None:
    """Record the file; None if these bytes from this source were imported before."""
    known = select(ImportFile.id).where(ImportFile.source == source, ImportFile.sha256 == digest)
    if session.execute(known).first() is not None:
        return None
    try:
        with session.begin_nested():
            return session.execute(
                insert(ImportFile).returning(ImportFile.id),
                [{"source": source, "file_name": file_name[-500:], "sha256": digest,
                  "imported_by": imported_by, "imported_at": utcnow(),
                  "accepted": 0, "quarantined": 0, "duplicates": 0}],
            ).scalar_one()
    except IntegrityError:
        return None  # the same file, imported at this very moment by someone else


def _refuse_frozen_payers(session: Session, audit: AuditLog, rows: IntakeResult, file_id: int,
                          imported_by: str, now: datetime) -> IntakeResult:
    """Accepted rows paying from a frozen account become quarantined rows naming the freeze."""
    frozen = frozen_accounts(session)
    if not frozen:
        return rows
    numbers = {number: account_id for account_id, number in session.execute(
        select(BankAccount.id, BankAccount.number).where(BankAccount.id.in_(list(frozen))))}
    refused = [line for line in rows.accepted if str(line.debtor_account) in numbers]
    if not refused:
        return rows
    quarantined = list(rows.quarantined)
    for line in refused:
        account_id = numbers[str(line.debtor_account)]
        freeze_id = frozen[account_id]
        named = f" (freeze #{freeze_id})" if freeze_id is not None else ""
        quarantined.append(Quarantined(
            row=line.row, external_ref=line.external_ref, fields=line.fields,
            reason=(f"debtor account {mask(str(line.debtor_account))} is frozen{named}: no "
                    "payment is taken from it until two people lift the freeze")))
    audit_refused(session, audit, actor=imported_by, doing="intake", subject_type="account",
                  subject_ids=sorted({numbers[str(line.debtor_account)] for line in refused}),
                  reason="vouchers paying from a frozen account were quarantined",
                  import_file_id=file_id, rows=[line.row for line in refused],
                  freeze_ids=sorted({f for f in frozen.values() if f is not None}), now=now)
    keep = [line for line in rows.accepted if str(line.debtor_account) not in numbers]
    return IntakeResult(source=rows.source, accepted=keep,
                        quarantined=sorted(quarantined, key=lambda q: q.row))


def _active_accounts(session: Session) -> dict[str, tuple[int, str]]:
    """number -> (id, currency) of every active account; a number at two banks is refused."""
    accounts: dict[str, tuple[int, str]] = {}
    rows = session.execute(select(BankAccount.id, BankAccount.number, BankAccount.currency)
                           .where(BankAccount.status == "active")).all()
    for account_id, number, currency in rows:
        if number in accounts:
            raise StoreError(
                f"account number {mask(number)} is on two bank_accounts rows; a voucher "
                "names only the number, so it cannot say which one to pay from"
            )
        accounts[number] = (account_id, currency)
    return accounts


def _insert_vouchers(
    session: Session, source: str, file_id: int, rows: IntakeResult, now: datetime,
) -> tuple[list[VoucherLine], set[str], list[int]]:
    """Insert the vouchers not received before: (inserted lines, refs already received, ids).

    A quarantined row's voucher number counts too: a row that repeats a received voucher is
    reported as a duplicate, whatever else is wrong with it.
    """
    refs = [line.external_ref for line in rows.accepted]
    refs += [q.external_ref for q in rows.quarantined if q.external_ref]
    for _ in range(_RACE_RETRIES):
        received = _received(session, source, refs)
        fresh = [line for line in rows.accepted if line.external_ref not in received]
        try:
            with session.begin_nested():
                _insert_all(session, Voucher, [
                    {"source": source, "external_ref": line.external_ref,
                     "import_file_id": file_id, "row_number": line.row,
                     "payload": line.fields, "received_at": now} for line in fresh])
        except IntegrityError:
            continue  # another import received some of them meanwhile: read again
        ids = {ref: voucher_id for ref, voucher_id in session.execute(
            select(Voucher.external_ref, Voucher.id).where(Voucher.import_file_id == file_id))}
        return fresh, received, [ids[line.external_ref] for line in fresh]
    raise ConcurrencyConflict(
        f"other imports kept receiving the same vouchers from source {source!r}; retry"
    )


def _received(session: Session, source: str, refs: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(refs, CHUNK):
        found.update(session.execute(select(Voucher.external_ref).where(
            Voucher.source == source, Voucher.external_ref.in_(chunk))).scalars())
    return found


def _insert_payments(
    session: Session, file_id: int, lines: Sequence[VoucherLine], voucher_ids: Sequence[int],
    accounts: dict[str, tuple[int, str]], imported_by: str, now: datetime,
) -> list[int]:
    missing = {line.debtor_account for line in lines} - accounts.keys()
    if missing:
        raise StoreError(
            "vouchers were checked against accounts the database does not hold as active: "
            + ", ".join(sorted(mask(m) for m in missing))
        )
    _insert_all(session, Payment, [
        {"voucher_id": voucher_id, "end_to_end_id": line.end_to_end_id,
         "debtor_account_id": accounts[line.debtor_account][0],
         "creditor_name": line.creditor_name, "creditor_account": str(line.creditor_account),
         "creditor_bank_name": line.creditor_bank_name,
         "creditor_cnaps": str(line.creditor_cnaps) if line.creditor_cnaps else None,
         "amount_minor": line.amount.minor, "currency": line.amount.currency.code,
         "purpose": line.purpose, "category": line.category.value, "urgent": line.urgent,
         "requested_date": line.requested_date, "maker": line.maker or imported_by,
         "state": PaymentState.REQUESTED.value, "version": 1,
         "created_at": now, "updated_at": now}
        for line, voucher_id in zip(lines, voucher_ids, strict=True)])
    return list(session.execute(
        select(Payment.id).join(Voucher, Payment.voucher_id == Voucher.id)
        .where(Voucher.import_file_id == file_id).order_by(Payment.id)).scalars())


def _insert_all(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT through Core: no ORM bookkeeping per row, no RETURNING (which
    SQLAlchemy cannot batch on SQLite); callers read the new ids back with one SELECT."""
    if rows:
        session.execute(insert(model.__table__), rows)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = ["CHUNK", "ImportSummary", "import_vouchers", "own_accounts"]
