"""Two workers never take the same batch: proven with real processes on both backends."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update

from yinqi.payments import BatchState
from conftest import MASTER_SECRET
from yinqi.security.fields import FieldCrypto
from yinqi.store import claim_batches, make_engine, release_batches, session_factory
from yinqi.store.models import BankAccount, Batch, Company

WORKERS = 8
BATCHES = 1000


def _seed(sessions, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        acct = BankAccount(company=Company(name="c", credit_code="91350100M000100Y43"),
                           bank="icbc-sandbox", number="1202021209900123456", currency="CNY")
        s.add(acct)
        s.flush()
        s.execute(insert(Batch), [
            {"msg_id": f"MSG-{i:06d}", "bank": "icbc-sandbox", "dialect": "iso20022",
             "debtor_account_id": acct.id, "currency": "CNY", "state": "SIGNED"}
            for i in range(n)
        ])
    with sessions() as s:
        return list(s.execute(select(Batch.id).order_by(Batch.id)).scalars())


def _worker(url: str, name: str, start, results) -> None:  # type: ignore[no-untyped-def]
    """A worker process: claim, 'send' (mark SUBMITTING, count the attempt), repeat."""
    engine = make_engine(url, fields=FieldCrypto(MASTER_SECRET.encode()))
    sessions = session_factory(engine)
    taken: list[int] = []
    start.wait()
    while True:
        ids = claim_batches(sessions, name, states=[BatchState.SIGNED], limit=7)
        if not ids:
            break
        with sessions.begin() as s:
            s.execute(update(Batch).where(Batch.id.in_(ids)).values(
                state="SUBMITTING", send_attempts=Batch.send_attempts + 1))
            release_batches(s, name, ids)
        taken.extend(ids)
    engine.dispose()
    results.put((name, taken))


@pytest.mark.slow
def test_eight_processes_claim_a_thousand_batches_each_exactly_once(db_url, engine, sessions) -> None:  # type: ignore[no-untyped-def]
    all_ids = _seed(sessions, BATCHES)
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db_url, f"worker-{i}", start, results))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    taken = dict(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = [i for ids in taken.values() for i in ids]
    assert len(claimed) == len(set(claimed)), "a batch was claimed by two workers"
    assert sorted(claimed) == all_ids, "a batch was never claimed"
    assert sum(1 for ids in taken.values() if ids) > 1, "only one worker ever got work"
    with sessions() as s:
        attempts = dict(s.execute(
            select(Batch.send_attempts, func.count()).group_by(Batch.send_attempts)).all())
        assert attempts == {1: BATCHES}
        owner = dict(s.execute(select(Batch.id, Batch.claimed_by)).all())
    assert all(owner[i] == name for name, ids in taken.items() for i in ids)


@pytest.mark.postgres
def test_skip_locked_hands_a_second_worker_other_rows_without_waiting(request) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_database")
    eng = make_engine(url, fields=FieldCrypto(MASTER_SECRET.encode()))
    from yinqi.store import upgrade

    upgrade(eng)
    sessions = session_factory(eng)
    try:
        ids = _seed(sessions, 20)
        holder = sessions()
        # Worker A is in the middle of its claim: it holds row locks on the first five.
        locked = list(holder.execute(
            select(Batch.id).order_by(Batch.id).limit(5).with_for_update(skip_locked=True)
        ).scalars())
        assert locked == ids[:5]
        got = claim_batches(sessions, "worker-b", states=[BatchState.SIGNED], limit=5)
        assert got == ids[5:10]
        holder.rollback()
        holder.close()
    finally:
        eng.dispose()


def test_a_lease_keeps_a_batch_until_it_expires(sessions) -> None:  # type: ignore[no-untyped-def]
    _seed(sessions, 3)
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    lease = timedelta(minutes=10)
    first = claim_batches(sessions, "a", limit=10, lease=lease, now=t0)
    assert len(first) == 3
    assert claim_batches(sessions, "b", limit=10, lease=lease, now=t0 + timedelta(minutes=9)) == []
    # Worker a died: after the lease, b may carry the batches on (the exactly-once rules then
    # decide from each payment's state what may be sent).
    assert claim_batches(sessions, "b", limit=10, lease=lease,
                         now=t0 + timedelta(minutes=11)) == first
    with sessions.begin() as s:
        assert release_batches(s, "a", first) == 0, "a stale owner released b's claim"
        assert release_batches(s, "b", first) == 3
    assert claim_batches(sessions, "c", limit=2, now=t0 + timedelta(minutes=12)) == first[:2]


def test_only_claimable_states_are_handed_out(sessions) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(sessions, 4)
    with sessions.begin() as s:
        s.execute(update(Batch).where(Batch.id == ids[0]).values(state="COMPLETED"))
        s.execute(update(Batch).where(Batch.id == ids[1]).values(state="REJECTED"))
    assert claim_batches(sessions, "a", limit=10) == ids[2:]
