"""Sending signed batches exactly once, and asking the bank until every payment is final.

The protocol (docs/payment-pipeline.md): the intent to send commits before any byte leaves;
a batch whose fate is unknown (a timeout, a crash after the intent) is only ever resolved by
a status query; a resend sends the archived bytes, so the bank's message-ID idempotency
answers it with its original result.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from connectors.errors import (
    BadBankAnswer,
    BankError,
    BankRefused,
    CertificateError,
    OutcomeUnknown,
)
from yinqi.alerts import Severity
from yinqi.bootstrap import App
from yinqi.errors import ConfigError, SecurityError
from yinqi.payments import BatchState
from yinqi.pipeline import chaos
from yinqi.pipeline.alerting import alert_once, bank_trouble
from yinqi.pipeline.banks import BankPool
from yinqi.pipeline.outcomes import next_poll_delay
from yinqi.pipeline.reports import apply_reports, in_flight_e2e
from yinqi.pipeline.signing import read_archived
from yinqi.states import PaymentState
from yinqi.store.alerts import raise_once
from yinqi.store.claims import DEFAULT_LEASE, claim_batches, release_batches
from yinqi.store.models import Alert, Batch, Payment
from yinqi.store.risk import audit_refused, frozen_unsent_batches, sendable, why_frozen
from yinqi.store.transitions import move_payments
from yinqi.store.types import utcnow

log = logging.getLogger("yinqi.pipeline")
S = PaymentState
B = BatchState

#: Batches whose message may or may not be at the bank: a status query comes first.
UNSETTLED_SENDS = (B.SUBMITTING, B.UNKNOWN)
#: Batches the bank has, with payments still waiting for its last word.
POLLED = (B.ACCEPTED, B.PARTIAL)


@dataclass
class StageResult:
    batches: int = 0
    sends: int = 0
    queries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: Batches that cannot go on until a person acts (a tampered or missing signed file, a
    #: freeze, a bank's certificate): this run stops trying, the next run or sweep tries again.
    blocked: list[int] = field(default_factory=list)

    def merge(self, other: StageResult) -> None:
        self.batches += other.batches
        self.sends += other.sends
        self.queries += other.queries
        self.outcomes.update(other.outcomes)
        self.errors += other.errors
        self.blocked += other.blocked


@dataclass(frozen=True)
class Pacing:
    """How often to ask the bank (exponential back-off with jitter from ``base`` seconds), and
    how long a worker's claim on a batch lasts before another worker may take it over."""

    base: float = 1.0
    ceiling: float = 300.0
    lease: timedelta = DEFAULT_LEASE


def send_batches(app: App, banks: BankPool, worker: str, *, limit: int = 20,
                 pacing: Pacing = Pacing(), rng: random.Random | None = None) -> StageResult:
    """Carry signed and unsettled sends forward: send, or ask the bank and resend if it has
    nothing."""
    rng = rng or random.Random()
    result = StageResult()
    with app.sessions() as s:
        # Frozen batches are never claimed to be sent: they wait for two people, not a worker.
        result.blocked += frozen_unsent_batches(s)
    ids = claim_batches(app.sessions, worker, states=[B.SIGNED, *UNSETTLED_SENDS],
                        limit=limit, due_only=True, lease=pacing.lease)
    try:
        for batch_id in ids:
            result.batches += 1
            try:
                _carry(app, banks, worker, batch_id, pacing, rng, result)
            except (BankError, ConfigError) as exc:
                # An answer to the order itself is judged in _send: a bad answer here is
                # one to the status query asked first.
                _trouble(app, batch_id, worker, exc, "status query", pacing, rng, result)
            except SecurityError as exc:
                # This batch waits for a person (the alert says why); the others go on.
                result.errors.append(str(exc))
                result.blocked.append(batch_id)
                _later(app, batch_id, worker, pacing, rng, str(exc))
    finally:
        with app.sessions.begin() as s:
            release_batches(s, worker, ids)
    return result


def _carry(app: App, banks: BankPool, worker: str, batch_id: int, pacing: Pacing,
           rng: random.Random, result: StageResult) -> None:
    batch = _load(app, batch_id)
    if batch is None or batch.claimed_by != worker:
        return
    bank = banks[batch.bank]
    if batch.state in (B.SUBMITTING.value, B.UNKNOWN.value):
        # Sent before, fate unknown (or killed right after the intent): ask first.
        with app.sessions() as s:
            wanted = in_flight_e2e(s, batch_id)
        answer = bank.status(batch.msg_id, wanted)
        result.queries += 1
        chaos.point("after-status-query")
        if answer.received and _covers(answer.reports, wanted):
            with app.sessions.begin() as s:
                applied = apply_reports(s, app, batch_id, answer.reports, actor=worker,
                                        exchange=answer.exchange)
                app.audit.append(s, actor=worker, action="batch.resolved", subject_type="batch",
                                 subject_ids=[batch_id],
                                 details={"msg_id": batch.msg_id, "by": "status query",
                                          "moved": applied.moved})
                _schedule(s, batch_id, 0, pacing, rng)
            result.outcomes.update(applied.moved)
            return
        log.info("batch %s: the bank has no record of it; resending the same signed bytes",
                 batch.msg_id)
    _send(app, bank, worker, batch, pacing, rng, result)


def _signed_file(app: App, batch: Batch) -> tuple[bytes | None, str | None]:
    """The archived signed bytes, decrypted, or None and why. A file that does not decrypt
    (altered, swapped, or sealed under another master secret) is treated as a tampered one."""
    if not batch.file_path:
        return None, "missing"
    try:
        return read_archived(app, batch.file_path), None
    except FileNotFoundError:
        return None, "missing"
    except SecurityError:
        return None, "does not decrypt"


def _covers(reports, wanted: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """The answer speaks for the whole message (a group status) or for every payment asked."""
    if any(r.end_to_end_id is None for r in reports):
        return True
    return set(wanted) <= {r.end_to_end_id for r in reports}


def _send(app: App, bank, worker: str, batch: Batch, pacing: Pacing,  # type: ignore[no-untyped-def]
          rng: random.Random, result: StageResult) -> None:
    _refuse_frozen(app, batch, worker)
    body, problem = _signed_file(app, batch)
    if body is None or hashlib.sha256(body).hexdigest() != batch.file_sha256:
        _tampered(app, batch, problem or "hash mismatch")
        raise SecurityError(f"batch {batch.msg_id}: the signed file {batch.file_path} is missing, "
                            "does not decrypt or no longer matches the hash recorded when it "
                            "was signed; nothing was sent (see alert)")
    with app.sessions.begin() as s:
        # The intent, committed before any byte leaves; never for a frozen batch or account.
        moved = s.execute(update(Batch).where(Batch.id == batch.id, Batch.claimed_by == worker,
                                              Batch.state == batch.state, sendable())
                          .values(state=B.SUBMITTING.value,
                                  send_attempts=Batch.send_attempts + 1, last_error=None)
                          .execution_options(synchronize_session=False)).rowcount
        if not moved:
            return
        pids = list(s.execute(select(Payment.id).where(
            Payment.batch_id == batch.id,
            Payment.state.in_([S.SIGNED.value, S.UNKNOWN.value]))).scalars())
        move_payments(s, app.audit, pids, S.SUBMITTING, actor=worker,
                      reason=f"batch {batch.msg_id} attempt {batch.send_attempts + 1}")
        app.audit.append(s, actor=worker, action="batch.sending", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "sha256": batch.file_sha256,
                                  "attempt": batch.send_attempts + 1, "bank": batch.bank})
    chaos.point("after-intent")
    result.sends += 1
    try:
        # NotDelivered (certainly not at the bank) goes up to the caller: the batch stays
        # SUBMITTING and the next round asks the bank before resending, which costs one query
        # and keeps one path for every resend.
        answer = bank.send_signed(batch.msg_id, body)
    except (OutcomeUnknown, BadBankAnswer) as exc:
        chaos.point("after-unknown-send")
        with app.sessions.begin() as s:
            ids = list(s.execute(select(Payment.id).where(
                Payment.batch_id == batch.id, Payment.state == S.SUBMITTING.value)).scalars())
            move_payments(s, app.audit, ids, S.UNKNOWN, actor=worker,
                          reason=f"no definitive answer: {exc}")
            s.execute(update(Batch).where(Batch.id == batch.id)
                      .values(state=B.UNKNOWN.value, last_error=str(exc))
                      .execution_options(synchronize_session=False))
            _schedule(s, batch.id, 0, pacing, rng)
        if isinstance(exc, BadBankAnswer):
            _distrusted(app, batch, exc, worker, "send")
        result.outcomes["UNKNOWN"] += len(ids)
        result.errors.append(str(exc))
        return
    except BankRefused as exc:
        with app.sessions.begin() as s:
            applied = apply_reports(s, app, batch.id, (), actor=worker, refused=True,
                                    refusal=f"refused by the bank: {exc}")
        _alert(app, "batch.refused", Severity.WARNING, batch, str(exc))
        result.outcomes.update(applied.moved)
        return
    chaos.point("after-answer")
    with app.sessions.begin() as s:
        applied = apply_reports(s, app, batch.id, answer.reports, actor=worker,
                                exchange=answer.exchange, refused=not answer.taken)
        app.audit.append(s, actor=worker, action="batch.answered", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "taken": answer.taken,
                                  "replayed": answer.replayed, "moved": applied.moved,
                                  "answer_sha256": answer.exchange.received_sha256
                                  if answer.exchange else None})
        _schedule(s, batch.id, 0, pacing, rng)
    if not answer.taken:
        _alert(app, "batch.refused", Severity.WARNING, batch,
               "; ".join(filter(None, (r.reason_code for r in answer.reports))) or "refused")
    result.outcomes.update(applied.moved)


def _refuse_frozen(app: App, batch: Batch, worker: str) -> None:
    """A batch frozen (or paid from a frozen account) after it was claimed is not sent: the
    refusal is audited and the batch waits for two people to lift the freeze."""
    with app.sessions.begin() as s:
        why = why_frozen(s, batch.id)
        if why is None:
            return
        audit_refused(s, app.audit, actor=worker, doing="send", subject_type="batch",
                      subject_ids=[batch.id], reason=why, msg_id=batch.msg_id,
                      state=batch.state)
    raise SecurityError(f"batch {batch.msg_id}: not sent, {why}")


def poll_batches(app: App, banks: BankPool, worker: str, *, limit: int = 50,
                 pacing: Pacing = Pacing(), rng: random.Random | None = None) -> StageResult:
    """Ask the bank about batches whose next query is due; back off between questions."""
    rng = rng or random.Random()
    result = StageResult()
    ids = claim_batches(app.sessions, worker, states=POLLED, limit=limit, due_only=True,
                        lease=pacing.lease)
    try:
        for batch_id in ids:
            batch = _load(app, batch_id)
            if batch is None or batch.claimed_by != worker:
                continue
            result.batches += 1
            with app.sessions() as s:
                wanted = in_flight_e2e(s, batch_id)
            try:
                answer = banks[batch.bank].status(batch.msg_id, wanted)
            except (BankError, ConfigError) as exc:
                _trouble(app, batch_id, worker, exc, "status query", pacing, rng, result)
                continue
            result.queries += 1
            chaos.point("after-poll")
            with app.sessions.begin() as s:
                applied = apply_reports(s, app, batch_id, answer.reports, actor=worker,
                                        exchange=answer.exchange)
                _schedule(s, batch_id, batch.poll_count + 1, pacing, rng)
            result.outcomes.update(applied.moved)
    finally:
        with app.sessions.begin() as s:
            release_batches(s, worker, ids)
    return result


def _trouble(app: App, batch_id: int, worker: str, exc: BankError | ConfigError, during: str,
             pacing: Pacing, rng: random.Random, result: StageResult) -> None:
    """A batch the bank could not be asked about or sent: ``last_error`` and a later try.

    An answer that fails its signature is refused and alerted for its batch. A certificate
    (or a bank missing from banks.toml) stops every batch of that bank until a person fixes
    it: one alert for the bank, and this run stops trying (the next run or sweep tries
    again); the other banks' batches go on."""
    result.errors.append(str(exc))
    _later(app, batch_id, worker, pacing, rng, str(exc))
    batch = _load(app, batch_id)
    if batch is None:
        return
    if isinstance(exc, BadBankAnswer):
        _distrusted(app, batch, exc, worker, during)
    elif isinstance(exc, CertificateError | ConfigError):
        bank_trouble(app, batch.bank, exc)
        result.blocked.append(batch_id)


def _load(app: App, batch_id: int) -> Batch | None:
    with app.sessions() as s:
        batch = s.get(Batch, batch_id)
        if batch is not None:
            s.expunge(batch)
        return batch


def _schedule(session, batch_id: int, poll_count: int, pacing: Pacing,  # type: ignore[no-untyped-def]
              rng: random.Random) -> None:
    delay = next_poll_delay(poll_count, rng, base=pacing.base, ceiling=pacing.ceiling)
    session.execute(update(Batch).where(Batch.id == batch_id)
                    .values(poll_count=poll_count, next_poll_at=utcnow() + delay)
                    .execution_options(synchronize_session=False))


def _later(app: App, batch_id: int, worker: str, pacing: Pacing, rng: random.Random,
           error: str) -> None:
    with app.sessions.begin() as s:
        count = s.execute(select(Batch.poll_count).where(Batch.id == batch_id)).scalar_one()
        _schedule(s, batch_id, count + 1, pacing, rng)
        s.execute(update(Batch).where(Batch.id == batch_id).values(last_error=error[:2000])
                  .execution_options(synchronize_session=False))


def _distrusted(app: App, batch: Batch, exc: BadBankAnswer, worker: str, during: str) -> None:
    """An answer that fails its signature moves nothing: it is refused, audited, alerted."""
    with app.sessions.begin() as s:
        app.audit.append(s, actor=worker, action="bank.answer_refused", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "bank": batch.bank, "during": during,
                                  "reason": str(exc)[:500]})
    # Every refused answer is audited; the operators are told once per batch, not per query.
    alert_once(app, kind="bank.bad_answer", severity=Severity.CRITICAL,
               subject=f"batch {batch.msg_id}", message=str(exc),
               details={"batch_id": batch.id, "bank": batch.bank})


def _alert(app: App, kind: str, severity: Severity, batch: Batch, message: str) -> None:
    with app.sessions.begin() as s:
        s.add(Alert(kind=kind, severity=severity.value, subject=f"batch {batch.msg_id}",
                    message=message[:2000], details={"batch_id": batch.id, "bank": batch.bank}))


def _tampered(app: App, batch: Batch, problem: str) -> None:
    with app.sessions.begin() as s:
        raise_once(s, kind="batch.file_tampered", severity=Severity.CRITICAL.value,
                   subject=f"batch {batch.msg_id}",
                   message="the signed payment file changed, vanished or no longer decrypts "
                           "after signing; it was not sent",
                   details={"batch_id": batch.id, "file": batch.file_path})
        app.audit.append(s, actor="yinqi.pipeline", action="batch.file_tampered",
                         subject_type="batch", subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "expected_sha256": batch.file_sha256,
                                  "problem": problem})


def due_at(app: App) -> datetime | None:
    """When the next batch wants attention (None: nothing is waiting for the bank)."""
    from sqlalchemy import func

    with app.sessions() as s:
        return s.execute(select(func.min(Batch.next_poll_at)).where(
            Batch.state.in_([b.value for b in (*UNSETTLED_SENDS, *POLLED, B.SIGNED)]))
        ).scalar_one_or_none()


def send_all(app: App, banks: BankPool, worker: str, *, pacing: Pacing = Pacing(),
             rng: random.Random | None = None, chunk: int = 20) -> StageResult:
    """:func:`send_batches` in claims of ``chunk`` batches until none is due: a small claim
    keeps every batch's lease well ahead of the time spent on it."""
    total = StageResult()
    while True:
        result = send_batches(app, banks, worker, limit=chunk, pacing=pacing, rng=rng)
        total.merge(result)
        if result.batches < chunk:
            return total


def poll_all(app: App, banks: BankPool, worker: str, *, pacing: Pacing = Pacing(),
             rng: random.Random | None = None, chunk: int = 20) -> StageResult:
    """:func:`poll_batches` in claims of ``chunk`` batches until none is due."""
    total = StageResult()
    while True:
        result = poll_batches(app, banks, worker, limit=chunk, pacing=pacing, rng=rng)
        total.merge(result)
        if result.batches < chunk:
            return total
