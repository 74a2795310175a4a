"""Collecting each settled payment's 电子回单: download, check the bank's signature, keep.

A receipt whose signature does not verify is never stored as evidence: the payment stays
SETTLED, an alert is raised, and the next round tries again. Receipts are kept in the bank's
archive, encrypted at rest (the connector's :class:`connectors.archive.Archive` seals them);
:func:`read_receipt` gives one back decrypted and checked against its recorded SHA-256.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from connectors.base import DownloadedReceipt
from connectors.errors import BadBankAnswer, BankError
from yinqi.alerts import Severity
from yinqi.bootstrap import App
from yinqi.errors import ConfigError, InvalidValue, SecurityError
from yinqi.pipeline.alerting import bank_trouble
from yinqi.pipeline.banks import BankPool
from yinqi.pipeline.signing import read_archived, relative_to_home
from yinqi.states import PaymentState
from yinqi.store.claims import DEFAULT_LEASE, claim_receipts, release_receipts
from yinqi.store.models import Alert, Batch, Payment
from yinqi.store.models import Receipt as ReceiptRow
from yinqi.store.transitions import move_payments

S = PaymentState


@dataclass
class ReceiptResult:
    collected: int = 0
    bad_signature: int = 0
    not_ready: int = 0
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


#: Booked payments whose receipt is still to be collected (reconciliation may come first).
WANT_RECEIPT = (S.SETTLED.value, S.RECONCILED.value)


@dataclass(frozen=True)
class KeptReceipt:
    """A payment's receipt as the bank sent it (the PDF bytes, decrypted and checked)."""

    payment_id: int
    file_path: str
    sha256: str
    bank_reference: str
    content: bytes


def read_receipt(app: App, payment_id: int) -> KeptReceipt:
    """The kept receipt of one payment, decrypted; :class:`SecurityError` when the file is gone,
    does not decrypt, or is not the document whose hash was recorded when it was collected."""
    with app.sessions() as s:
        row = s.execute(select(ReceiptRow).where(ReceiptRow.payment_id == payment_id)
                        ).scalar_one_or_none()
    if row is None:
        raise InvalidValue(f"payment {payment_id} has no receipt: receipts of settled payments "
                           "are collected by `yinqi payments run`")
    what = f"receipt of payment {payment_id} ({row.file_path})"
    try:
        data = read_archived(app, row.file_path)
    except FileNotFoundError:
        raise SecurityError(f"{what}: the file is missing; restore the archive from a backup "
                            "or download the receipt from the bank again") from None
    except SecurityError as exc:
        raise SecurityError(f"receipt of payment {payment_id}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise SecurityError(f"{what}: the file does not match the SHA-256 recorded when it was "
                            "collected; do not trust it, ask the bank for the receipt again")
    return KeptReceipt(payment_id, row.file_path, row.sha256, row.bank_reference, data)


def _has_receipt():  # type: ignore[no-untyped-def]
    return select(ReceiptRow.id).where(ReceiptRow.payment_id == Payment.id).exists()


def waiting_for_receipts(app: App) -> int:
    from sqlalchemy import func

    with app.sessions() as s:
        return s.execute(select(func.count()).select_from(Payment)
                         .where(Payment.state == S.SETTLED.value)).scalar_one()


def collect_receipts(app: App, banks: BankPool, *, limit: int = 2000, threads: int = 4,
                     per_request: int = 250, actor: str = "yinqi.pipeline",
                     lease: timedelta = DEFAULT_LEASE) -> ReceiptResult:
    """Download, check and keep the receipts of up to ``limit`` settled payments.

    Receipts are asked for ``per_request`` at a time (a bank with batch download answers each
    such request in one signed message; others one by one), ``threads`` requests at once;
    each answer is stored (one transaction) while the next ones are still on their way.

    A request's payments are claimed just before it starts, under a lease in ``actor``'s name
    (give each process its own): two collectors at once, two runs or a run and a status
    sweep, ask the bank for different receipts, and the lease covers one request, not the
    whole collection. Receipts that did not come (not ready, refused, a bad signature) are
    released at the end for the next round; one that did is kept once whatever happens
    (``receipts.payment_id`` is unique)."""
    result = ReceiptResult()
    waiting = _banks_waiting(app)
    after = dict.fromkeys(waiting, 0)
    budget, turn = limit, 0
    claimed: set[int] = set()
    running: set[Future[list[tuple[int, DownloadedReceipt | BankError]]]] = set()

    def fetch(code: str, rows: list[tuple[int, str]]
              ) -> list[tuple[int, DownloadedReceipt | BankError]]:
        refs = [e2e for _, e2e in rows]
        try:
            got = banks[code].receipts(refs)
        except BankError as exc:
            got = dict.fromkeys(refs, exc)
        return [(pid, got.get(e2e) or BadBankAnswer(code, f"no answer for receipt {e2e}"))
                for pid, e2e in rows]

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            while True:
                while waiting and budget > 0 and len(running) < max(1, threads):
                    code = waiting[turn % len(waiting)]
                    turn += 1
                    try:
                        banks[code]  # opened here: the threads share the connector, not open it
                    except (BankError, ConfigError) as exc:
                        # No channel to this bank: its receipts wait for the next round, the
                        # other banks' are collected.
                        result.errors.append(str(exc))
                        bank_trouble(app, code, exc)
                        waiting.remove(code)
                        continue
                    rows = claim_receipts(app.sessions, actor, bank=code, states=WANT_RECEIPT,
                                          after=after[code], limit=min(per_request, budget),
                                          lease=lease)
                    if not rows:
                        waiting.remove(code)
                        continue
                    claimed.update(pid for pid, _ in rows)
                    after[code] = rows[-1][0]
                    budget -= len(rows)
                    running.add(pool.submit(fetch, code, rows))
                if not running:
                    return result
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    claimed -= _store(app, future.result(), result, actor)
    finally:
        if claimed:
            with app.sessions.begin() as s:
                release_receipts(s, actor, claimed)


def _banks_waiting(app: App) -> list[str]:
    """Banks with booked payments still without a receipt (claimed or not)."""
    with app.sessions() as s:
        return list(s.execute(
            select(Batch.bank).join(Payment, Payment.batch_id == Batch.id)
            .where(Payment.state.in_(WANT_RECEIPT), ~_has_receipt())
            .distinct().order_by(Batch.bank)).scalars())


def _store(app: App, fetched: list[tuple[int, DownloadedReceipt | BankError]],
           result: ReceiptResult, actor: str) -> set[int]:
    """Record one answer's verified receipts (their payment ids are returned); alert on any
    whose signature fails."""
    good: dict[int, DownloadedReceipt] = {}
    bad: list[int] = []
    for pid, got in fetched:
        if isinstance(got, BankError):
            if getattr(got, "status_code", None) == 404:
                result.not_ready += 1
            else:
                result.errors.append(str(got))
        elif got.signature_valid and got.path is not None:
            good[pid] = got
        else:
            bad.append(pid)
    with app.sessions.begin() as s:
        states = dict(s.execute(
            select(Payment.id, Payment.state).where(Payment.id.in_(list(good)),
                                                    Payment.state.in_(WANT_RECEIPT))
            .where(~_has_receipt()).with_for_update()).all()) if good else {}
        still = set(states)
        # A payment reconciled before its receipt came keeps RECONCILED: the receipt is
        # evidence, not a step it has to go back for.
        settled = sorted(p for p, st in states.items() if st == S.SETTLED.value)
        stored = _relative(app, {pid: good[pid].path for pid in sorted(still)})  # type: ignore[misc]
        if still:
            s.execute(insert(ReceiptRow), [
                {"payment_id": pid, "bank_reference": good[pid].receipt.bank_reference,
                 "verification_code": good[pid].receipt.verification_code,
                 "file_path": stored[pid],
                 "sha256": good[pid].sha256, "signature_valid": True} for pid in sorted(still)])
            if settled:
                move_payments(s, app.audit, settled, S.RECEIPTED, actor=actor,
                              reason="bank receipt collected and its signature verified")
            app.audit.append(s, actor=actor, action="receipt.collected", subject_type="payment",
                             subject_ids=sorted(still),
                             details={"sha256": {str(pid): good[pid].sha256
                                                 for pid in sorted(still)}})
        if bad:
            s.add(Alert(kind="receipt.bad_signature", severity=Severity.CRITICAL.value,
                        subject=f"{len(bad)} receipt(s) failed the bank's signature check",
                        message="receipts whose signature does not verify were not stored; "
                                "ask the bank, do not trust these documents",
                        details={"payment_ids": bad[:1000]}))
    result.collected += len(still)
    result.bad_signature += len(bad)
    result.files += [stored[pid] for pid in sorted(still)][:max(0, 50 - len(result.files))]
    return still


def _relative(app: App, paths: dict[int, Path]) -> dict[int, str]:
    """``relative_to_home`` for many archive files: each folder is resolved once, not each
    file (the archive creates regular files, never links, so a file resolves to its
    resolved folder plus its name)."""
    home = app.settings.home.resolve()
    folders: dict[Path, Path] = {}
    out = {}
    for pid, path in paths.items():
        folder = folders.get(path.parent)
        if folder is None:
            folder = folders[path.parent] = path.parent.resolve()
        try:
            out[pid] = str((folder / path.name).relative_to(home))
        except ValueError:
            out[pid] = relative_to_home(app, path)
    return out
