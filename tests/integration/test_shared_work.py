"""Several runs at once share the work after approval without doing any of it twice: batching
in chunks that each lock their own payments, and receipt downloads claimed under a lease.

One demo world (a Yinqi home, its database and a sandbox bank process over mTLS) per backend.
Each run here is its own App (its own engine and connections, like another process), started
together on a barrier. On SQLite the write lock serialises the claims; on PostgreSQL the row
locks (``FOR UPDATE SKIP LOCKED``) do, and the runs really overlap.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from conftest import BACKENDS, module_db_url
from production_support import funded_world
from sandbox_support import alert_only_risk_rules
from yinqi.bootstrap import App
from yinqi.cli.vouchers_cmd import run_import
from yinqi.demo.approve import approve_pending
from yinqi.demo.setup import DemoWorld
from yinqi.demo.vouchers import generate
from yinqi.pipeline import BankPool, Pacing, drive, form_batches, open_work
from yinqi.pipeline.batches import BATCH_ORDER
from yinqi.pipeline.receipts import WANT_RECEIPT, collect_receipts
from yinqi.states import PaymentState as S
from yinqi.store.claims import claim_receipts, release_receipts
from yinqi.store.models import AuditEventRow, Batch, Payment, Receipt
from yinqi.store.types import utcnow

FAST = Pacing(base=0.2, ceiling=1.0, lease=timedelta(seconds=60))
T = TypeVar("T")


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "shared-work-db")


class World:
    def __init__(self, demo: DemoWorld) -> None:
        self.demo, self.app = demo, demo.app
        self._moments = itertools.count(1)
        self._started = datetime.now(UTC)

    @property
    def postgres(self) -> bool:
        return self.app.engine.dialect.name == "postgresql"

    def approved(self, n: int, seed: int) -> list[int]:
        """``n`` new payments, approved (none the sandbox bank refuses)."""
        day = self._started.astimezone(ZoneInfo("Asia/Shanghai")).date()
        path = self.demo.home / "vouchers" / f"shared-{seed}-{uuid.uuid4().hex[:6]}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(generate(n, seed, day=day, bad_rows=0, refused_share=0.0))
        ids = run_import(self.app, path, imported_by="test").payment_ids
        approve_pending(self.app, self._started + timedelta(minutes=next(self._moments)))
        assert self.states(ids) == Counter({S.APPROVED.value: n})
        return ids

    def states(self, ids: list[int]) -> Counter[str]:
        with self.app.sessions() as s:
            return Counter(s.execute(select(Payment.state).where(Payment.id.in_(ids))).scalars())

    def receipt_asks(self) -> Counter[str]:
        """How often the sandbox bank was asked for each receipt, by end-to-end ID."""
        asks: Counter[str] = Counter()
        for code in ("icbc", "cmb"):
            asks.update(self.demo.control("GET", f"receipt-asks/{code}"))  # type: ignore[arg-type]
        return asks

    def together(self, runs: dict[str, Callable[[App, str], T]]) -> dict[str, T]:
        """Each run in its own thread with its own App, all released at once."""
        start = threading.Barrier(len(runs))

        def one(name: str, run: Callable[[App, str], T]) -> T:
            app = App(self.app.settings)
            try:
                start.wait(timeout=60)
                return run(app, name)
            finally:
                app.close()

        with ThreadPoolExecutor(len(runs)) as pool:
            futures = {name: pool.submit(one, name, run) for name, run in runs.items()}
            return {name: f.result(timeout=600) for name, f in futures.items()}


@pytest.fixture(scope="module")
def w(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("shared-work") / "home"
    alert_only_risk_rules(home / "config")
    # Funded accounts: every test's payments settle, whatever the ones before it spent.
    with funded_world(home, db_url, settle_after=0.2) as demo:
        yield World(demo)


def test_two_runs_batching_at_once_each_batch_a_share_and_no_payment_twice(w: World) -> None:
    ids = w.approved(1200, seed=31)
    results = w.together({name: lambda app, actor: form_batches(app, actor=actor, chunk=50)
                          for name in ("run-a", "run-b")})

    a, b = results["run-a"], results["run-b"]
    print(f"\nbatching at once ({w.app.engine.dialect.name}): run-a {len(a.batch_ids)} "
          f"batches / {a.batched} payments, run-b {len(b.batch_ids)} / {b.batched}")
    assert not set(a.batch_ids) & set(b.batch_ids)
    assert a.batched + b.batched == len(ids)
    assert not (a.held or b.held or a.frozen or b.frozen)
    if w.postgres:
        # Row locks, not a queue: each run skipped the other's chunk and batched the next.
        assert a.batch_ids and b.batch_ids, (a.batch_ids, b.batch_ids)
    with w.app.sessions() as s:
        batch_of = dict(s.execute(select(Payment.id, Payment.batch_id)
                                  .where(Payment.id.in_(ids))).all())
        batches = {bid: (count, state) for bid, count, state in s.execute(
            select(Batch.id, Batch.payment_count, Batch.state)
            .where(Batch.id.in_(a.batch_ids + b.batch_ids)))}
        batched_events = [e for e in s.execute(select(AuditEventRow).where(
            AuditEventRow.action == "payment.state")).scalars()
            if e.details["to"] == S.BATCHED.value]
    assert w.states(ids) == Counter({S.BATCHED.value: len(ids)})
    assert set(batch_of.values()) == set(batches)
    assert Counter(batch_of.values()) == {bid: count for bid, (count, _) in batches.items()}
    assert {state for _, state in batches.values()} == {"BUILT"}
    moved = Counter(int(pid) for e in batched_events for pid in e.subject_ids)
    assert {pid: moved[pid] for pid in ids} == dict.fromkeys(ids, 1)
    # Chunks follow the batch key, so a chunk's end cuts about one batch short; chunks of
    # payments in id order would make a batch per account (three) in nearly every chunk.
    assert len(batches) < 2 * len(ids) // 50, len(batches)


def test_a_run_batching_skips_the_chunk_another_run_holds(w: World) -> None:
    if not w.postgres:
        pytest.skip("SQLite has one write lock: a second run waits for it instead of skipping")
    ids = w.approved(120, seed=32)
    holder = w.app.sessions()
    try:
        # Another run is in the middle of its first chunk: it holds these payments' rows.
        held = list(holder.execute(
            select(Payment.id).where(Payment.state == S.APPROVED.value,
                                     Payment.batch_id.is_(None))
            .order_by(*BATCH_ORDER).limit(40).with_for_update(skip_locked=True)).scalars())
        assert set(held) <= set(ids) and len(held) == 40
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            other = pool.submit(form_batches, w.app, actor="run-b", chunk=30).result(timeout=60)
        assert time.monotonic() - started < 30, "the second run waited for the first one's lock"
        assert other.batched == len(ids) - len(held)
        assert w.states(held) == Counter({S.APPROVED.value: len(held)})
    finally:
        holder.rollback()
        holder.close()
    # What the first run held and never batched (it rolled back) goes with the next run.
    assert form_batches(w.app, actor="run-c").batched == len(held)
    assert w.states(ids) == Counter({S.BATCHED.value: len(ids)})


def test_two_collectors_at_once_ask_the_bank_for_each_receipt_once(w: World) -> None:
    ids = w.approved(300, seed=33)
    form_batches(w.app)
    # Every open batch (earlier tests' too) to the bank's final word; receipts not collected.
    drive(w.app, pacing=FAST, receipts=False, deadline=time.monotonic() + 180)
    assert open_work(w.app)[0] == 0
    with w.app.sessions() as s:
        waiting = list(s.execute(select(Payment.id, Payment.end_to_end_id, Batch.bank)
                                 .join(Batch, Batch.id == Payment.batch_id)
                                 .where(Payment.state == S.SETTLED.value)
                                 .order_by(Payment.id)).all())
    assert {pid for pid, _, _ in waiting} >= set(ids), w.states(ids)
    e2e = {pid: ref for pid, ref, _ in waiting}
    bank = waiting[0].bank
    before = w.receipt_asks()
    assert not set(before) & set(e2e.values())

    # A collector that died mid-download: its lease has run out, so its receipts are taken on.
    lapsed = claim_receipts(w.app.sessions, "collector-killed", bank=bank, states=WANT_RECEIPT,
                            limit=30, now=utcnow() - timedelta(minutes=11))
    # A collector still at work: nobody else asks for its receipts while its lease holds.
    busy = claim_receipts(w.app.sessions, "collector-busy", bank=bank, states=WANT_RECEIPT,
                          after=lapsed[-1][0], limit=5)
    assert len(lapsed) == 30 and len(busy) == 5

    def collect(app: App, actor: str) -> int:
        got = 0
        with BankPool(app) as banks:
            while n := collect_receipts(app, banks, actor=actor, per_request=10,
                                        threads=2).collected:
                got += n
        return got

    collected = w.together({name: collect for name in ("collector-a", "collector-b")})
    print(f"\nreceipts at once ({w.app.engine.dialect.name}): {collected}, "
          f"{len(waiting)} waiting, {len(busy)} claimed by a collector at work")
    assert sum(collected.values()) == len(waiting) - len(busy)
    assert all(collected.values()), collected
    asks = w.receipt_asks() - before
    busy_refs = {ref for _, ref in busy}
    assert {ref: n for ref, n in asks.items() if n != 1} == {}
    assert set(asks) == set(e2e.values()) - busy_refs

    # The collector at work gives its claim up (it failed): the next round takes them.
    with w.app.sessions.begin() as s:
        assert release_receipts(s, "collector-busy", [pid for pid, _ in busy]) == len(busy)
    with BankPool(w.app) as banks:
        assert collect_receipts(w.app, banks, actor="collector-c").collected == len(busy)
    asks = w.receipt_asks() - before
    assert set(asks) == set(e2e.values()) and set(asks.values()) == {1}

    with w.app.sessions() as s:
        kept = Counter(s.execute(select(Receipt.payment_id)
                                 .where(Receipt.payment_id.in_(list(e2e)))).scalars())
        owners = Counter(s.execute(select(Payment.receipt_claimed_by)
                                   .where(Payment.id.in_(list(e2e)))).scalars())
        left = s.execute(select(func.count()).select_from(Payment)
                         .where(Payment.state == S.SETTLED.value)).scalar_one()
    assert kept == dict.fromkeys(e2e, 1)
    assert w.states(ids) == Counter({S.RECEIPTED.value: len(ids)})
    assert left == 0
    # A collected receipt keeps its claim as the record of who fetched it.
    assert set(owners) == {"collector-a", "collector-b", "collector-c"}, owners
    with w.app.sessions() as s:
        verdict = w.app.audit.verify(s)
    assert verdict.ok, verdict
