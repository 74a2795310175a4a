"""Production mode: Yinqi and the Prefect server on PostgreSQL, two workers of a process work
pool, 10,000 approved payments and several payment runs submitted at once. The database's row
locks decide who carries which batch; the sandbox bank's own ledger must show every payment
exactly once, both workers must have run flow runs and sent bank messages, and the audit
chain must verify.

The runs stop at the bank's final word (settled or refused): receipts are documents fetched
afterwards, and fetching 10,000 of them is the sandbox bank's rendering work, not the sharing
of sends this test is about.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import select

from chaos.harness import DONE
from conftest import fresh_pg_database
from production_support import (
    LedgerVerdict,
    PrefectServer,
    Worker,
    flow_runs,
    funded_world,
    ledger_verdict,
    prefect_cli,
    prefect_server,
    process_workers,
    stop_unfinished,
    task_seconds,
    wait_final,
    who_ran,
    yinqi_env,
)
from yinqi.demo.setup import DemoWorld
from yinqi.states import PaymentState
from yinqi.store.models import AuditEventRow, Batch

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PAYMENTS = 10_000
#: Flow runs submitted at once; each worker takes at most RUNS_PER_WORKER at a time, so the
#: second worker always gets some even when the first one polls first.
RUNS = 4
RUNS_PER_WORKER = 2
WORKERS = ("worker-a", "worker-b")
POOL = "yinqi-payments"
#: Small batches (the banks' limits are 2,000 and 5,000): ~50 bank messages to share.
BATCH_SIZE = 200
SEED = 9


@dataclass
class Outcome:
    world: DemoWorld
    server: PrefectServer
    #: The Prefect server's database (SQLAlchemy URL, psycopg driver).
    prefect_db: str
    workers: list[Worker]
    run_ids: list[str]
    runs: list[dict[str, Any]]
    accepted: int
    #: Intake, approvals and the runs, until every run is final.
    seconds: float
    #: From the runs' submission until every run is final.
    run_seconds: float
    setup_seconds: dict[str, float]


def _deploy(server: PrefectServer, pool: str, home: Path) -> str:
    """The payment run as a deployment of the work pool. Its entrypoint is the module path
    of the installed package, so a worker needs no code download: the flow run's process
    imports ``flows.payment.flow`` from the same installation as the worker."""
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from flows.payment import payment_run

    with temporary_settings(updates={PREFECT_API_URL: server.url, PREFECT_HOME: home}):
        deployment = payment_run.to_deployment(
            name="payment-run", entrypoint_type=EntrypointType.MODULE_PATH, tags=["yinqi"])
        return str(deployment.apply(work_pool_name=pool))


def _submit(server: PrefectServer, deployment_id: str, count: int) -> list[str]:
    parameters = {"wait_for_approval": False, "poll_seconds": 0.25,
                  "max_follow_seconds": 600.0, "collect_receipts": False}
    with server.client() as api:
        ids = []
        for _ in range(count):
            r = api.post(f"/deployments/{deployment_id}/create_flow_run",
                         json={"parameters": parameters})
            r.raise_for_status()
            ids.append(r.json()["id"])
    return ids


@pytest.fixture(scope="module")
def outcome(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    from yinqi.cli.vouchers_cmd import run_import
    from yinqi.demo.approve import approve_pending
    from yinqi.demo.vouchers import generate

    root = tmp_path_factory.mktemp("production")
    setup: dict[str, float] = {}
    mark = time.perf_counter()
    with ExitStack() as stack:
        yinqi_db = stack.enter_context(fresh_pg_database(pg_admin_dsn))
        prefect_db = stack.enter_context(fresh_pg_database(pg_admin_dsn))
        server = stack.enter_context(prefect_server(root / "prefect", prefect_db))
        world = stack.enter_context(funded_world(root / "home", yinqi_db, settle_after=0.5,
                                                 batch_size_limit=BATCH_SIZE))
        app = world.app
        setup["yinqi_and_bank"] = time.perf_counter() - mark
        server.ready()
        setup["prefect_server"] = server.start_seconds or 0.0
        mark = time.perf_counter()
        operator = server.env(root / "operator")
        prefect_cli(["work-pool", "create", POOL, "--type", "process"], operator)
        deployment_id = _deploy(server, POOL, root / "operator")
        workers = stack.enter_context(process_workers(
            server, POOL, WORKERS, root / "workers", env=yinqi_env(app),
            limit=RUNS_PER_WORKER))
        setup["pool_deployment_workers"] = time.perf_counter() - mark

        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
        vouchers = root / "vouchers.csv"
        vouchers.write_bytes(generate(PAYMENTS, SEED, day=today, bad_rows=0))
        started = time.perf_counter()
        accepted = run_import(app, vouchers, imported_by="treasury").accepted
        approve_pending(app, datetime.now(UTC))
        submitted = time.perf_counter()
        run_ids = _submit(server, deployment_id, RUNS)
        stack.callback(stop_unfinished, server, run_ids)
        runs = wait_final(server, run_ids, timeout=900)
        done = time.perf_counter()
        yield Outcome(world, server, prefect_db, workers, run_ids, runs, accepted,
                      done - started, done - submitted, setup)


def test_every_payment_reaches_the_bank_exactly_once(outcome: Outcome) -> None:
    verdict: LedgerVerdict = ledger_verdict(outcome.world, outcome.world.app,
                                            every_approved_sent=True,
                                            done=DONE | {PaymentState.SETTLED.value})
    print(f"\ntwo workers: {outcome.accepted} payments in {outcome.seconds:.1f} s "
          f"({outcome.accepted / outcome.seconds:.0f}/s; runs alone {outcome.run_seconds:.1f} s, "
          f"{outcome.accepted / outcome.run_seconds:.0f}/s); set-up "
          + ", ".join(f"{k} {v:.1f} s" for k, v in outcome.setup_seconds.items())
          + f"; states {verdict.states}")
    assert outcome.world.app.engine.dialect.name == "postgresql"
    assert outcome.accepted == PAYMENTS
    assert verdict.payments == PAYMENTS
    assert not verdict.duplicates, verdict.duplicates[:10]
    assert not verdict.unapproved, verdict.unapproved[:10]
    assert not verdict.lost, verdict.lost[:10]
    # Nearly all settle; the rest are the payees the bank refuses.
    assert verdict.states.get(PaymentState.SETTLED.value, 0) > PAYMENTS * 0.95, verdict.states


def test_every_run_completed_and_both_workers_ran_some(outcome: Outcome) -> None:
    states = {r["id"]: r["state"]["type"] for r in outcome.runs}
    tasks = task_seconds(outcome.server, outcome.run_ids)
    print("\nflow runs (s): " + "; ".join(f"{r['name']} {r['total_run_time']:.1f} "
                                         f"{tasks.get(r['name'])}" for r in outcome.runs))
    assert set(states.values()) == {"COMPLETED"}, states
    # The server keeps its runs in PostgreSQL, not in a SQLite file of its own.
    with psycopg.connect(outcome.prefect_db.replace("postgresql+psycopg://", "postgresql://",
                                                    1)) as conn:
        stored = conn.execute("SELECT count(*) FROM flow_run WHERE id::text = ANY(%s)",
                              (outcome.run_ids,)).fetchone()
    assert stored == (RUNS,)
    ran_by = who_ran(outcome.server, outcome.run_ids)
    assert set(ran_by) == set(outcome.run_ids), ran_by
    # Each worker takes at most RUNS_PER_WORKER at a time and asks for more every 2 s, so
    # the other one is given the rest long before the first has finished its runs.
    assert set(ran_by.values()) == set(WORKERS), ran_by


def test_every_batch_was_sent_by_a_flow_run_of_the_pool(outcome: Outcome) -> None:
    """Yinqi's audit names the process that sent each bank message: every one is the
    process of one of the pool's flow runs (Prefect's ``infrastructure_pid``)."""
    app = outcome.world.app
    pids = {str(r["infrastructure_pid"]): r["id"]
            for r in flow_runs(outcome.server, outcome.run_ids)}
    with app.sessions() as s:
        batches = s.execute(select(Batch.id)).scalars().all()
        sends = s.execute(select(AuditEventRow.actor, AuditEventRow.subject_ids)
                          .where(AuditEventRow.action == "batch.sending")).all()
    sent_by = Counter(actor.rsplit(":", 1)[-1] for actor, _ in sends)
    ran_by = who_ran(outcome.server, outcome.run_ids)
    per_worker: Counter[str] = Counter()
    for pid, n in sent_by.items():
        per_worker[ran_by.get(pids.get(pid, ""), f"pid {pid}")] += n
    print(f"\n{len(batches)} batches, {len(sends)} sends; by flow-run process "
          f"{dict(sent_by)}, by worker {dict(per_worker)}")
    assert set(sent_by) <= set(pids), (sent_by, pids)
    # Runs submitted together share the sending: batching commits chunk by chunk, so the
    # runs that start while another one batches find batches to send too.
    assert set(per_worker) == set(WORKERS), per_worker
    # A resend (same bytes, same message ID, after a status query found nothing) is allowed;
    # whether the bank has anything twice is the ledger test's question.
    per_batch = Counter(int(i) for _, ids in sends for i in ids)
    assert set(per_batch) == set(batches)
