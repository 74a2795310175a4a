"""The pipeline's stages in one loop, for the CLI, the chaos test and the benchmark.

The Prefect flows call the same stage functions as tasks; this loop is what a worker without
Prefect runs, and it continues from whatever the database says, killed at any line or not.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field


from sqlalchemy import func, select

from yinqi.bootstrap import App
from yinqi.money import Money
from yinqi.payments import BatchState
from yinqi.pipeline.banks import BankPool
from yinqi.pipeline.batches import form_batches
from yinqi.pipeline.receipts import collect_receipts
from yinqi.pipeline.sending import Pacing, StageResult, due_at, poll_all, send_all
from yinqi.pipeline.signing import SigningResult, sign_batches
from yinqi.store.models import Batch, Payment
from yinqi.store.types import utcnow

#: Batch states in which the pipeline still has work to do.
OPEN_BATCHES = (BatchState.BUILT, BatchState.SIGNED, BatchState.SUBMITTING, BatchState.UNKNOWN,
                BatchState.ACCEPTED, BatchState.PARTIAL)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Progress:
    rounds: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    signed: SigningResult = field(default_factory=SigningResult)
    sent: StageResult = field(default_factory=StageResult)
    polled: StageResult = field(default_factory=StageResult)
    receipts: int = 0
    bad_receipts: int = 0
    receipt_errors: list[str] = field(default_factory=list)

    def time(self, stage: str, started: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - started

    def waiting(self) -> list[int]:
        """Batches this run stopped trying: they wait for a person or a fix."""
        return self.signed.blocked + self.sent.blocked + self.polled.blocked

    def problems(self) -> list[str]:
        """What stopped batches or receipts in this run, each distinct line once."""
        return list(dict.fromkeys(self.signed.errors + self.sent.errors + self.polled.errors
                                  + self.receipt_errors))


def open_work(app: App, excluding: list[int] | None = None) -> tuple[int, int]:
    """(batches still open, settled payments still without a receipt); ``excluding`` batches
    that wait for a person."""
    with app.sessions() as s:
        batches = s.execute(select(func.count()).select_from(Batch).where(
            Batch.state.in_([b.value for b in OPEN_BATCHES]),
            Batch.id.not_in(excluding or []))).scalar_one()
        settled = s.execute(select(func.count()).select_from(Payment).where(
            Payment.state == "SETTLED")).scalar_one()
    return batches, settled


def drive(app: App, *, worker: str | None = None, pacing: Pacing = Pacing(),
          deadline: float | None = None, receipts: bool = True,
          on_round: Callable[[Progress], None] | None = None) -> Progress:
    """Run every stage until nothing is left in flight (or ``deadline``, a monotonic time)."""
    worker = worker or worker_name()
    progress = Progress()
    with BankPool(app) as banks:
        started = time.perf_counter()
        form_batches(app, actor=worker)
        progress.time("batching", started)
        while True:
            progress.rounds += 1
            started = time.perf_counter()
            while True:
                signed = sign_batches(app, banks, worker, lease=pacing.lease)
                progress.signed.merge(signed)
                if not signed.batches:
                    break
            progress.time("signing", started)
            started = time.perf_counter()
            progress.sent.merge(send_all(app, banks, worker, pacing=pacing))
            progress.time("submission", started)
            started = time.perf_counter()
            progress.polled.merge(poll_all(app, banks, worker, pacing=pacing))
            progress.time("polling", started)
            stuck_receipts = False
            if receipts:
                started = time.perf_counter()
                while True:
                    got = collect_receipts(app, banks, actor=worker, lease=pacing.lease)
                    progress.receipts += got.collected
                    progress.bad_receipts += got.bad_signature
                    progress.receipt_errors += got.errors
                    if not got.collected:
                        # Receipts the bank will not give (or that fail their signature) are
                        # alerted and retried by the next sweep; they must not hold this run.
                        stuck_receipts = bool(got.bad_signature or got.not_ready or got.errors)
                        break
                progress.time("receipts", started)
            if on_round is not None:
                on_round(progress)
            batches, settled = open_work(app, excluding=progress.waiting())
            if not batches and not (receipts and settled and not stuck_receipts):
                return progress
            if deadline is not None and time.monotonic() > deadline:
                return progress
            _nap(app, pacing)


def _nap(app: App, pacing: Pacing) -> None:
    due = due_at(app)
    wait = pacing.base if due is None else (due - utcnow()).total_seconds()
    time.sleep(min(max(wait, 0.05), max(pacing.base, 0.05) * 2))


@dataclass(frozen=True)
class StateTotal:
    state: str
    count: int
    amounts: dict[str, str]


def totals_by_state(app: App) -> list[StateTotal]:
    with app.sessions() as s:
        rows = s.execute(select(Payment.state, Payment.currency, func.count(),
                                func.sum(Payment.amount_minor))
                         .group_by(Payment.state, Payment.currency)).all()
    by_state: dict[str, StateTotal] = {}
    for state, currency, count, minor in rows:
        prev = by_state.get(state)
        amounts = dict(prev.amounts) if prev else {}
        amounts[currency] = str(Money.from_minor(int(minor or 0), currency).amount)
        by_state[state] = StateTotal(state, (prev.count if prev else 0) + count, amounts)
    return sorted(by_state.values(), key=lambda t: t.state)


