"""Production mode on one machine, for tests: a Prefect server on PostgreSQL, workers of a
process work pool, a Yinqi installation on PostgreSQL whose sandbox bank can pay a large run,
and the bank's ledger held against Yinqi's database.

The Prefect pieces are separate processes reached over HTTP only: nothing here changes this
process's environment or Prefect settings, so tests that run after it in the same process
find them as they were.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from chaos.harness import BANKS, DONE
from config import load_settings
from yinqi.bootstrap import App
from yinqi.demo.bank import free_port, product_config, sandbox_process
from yinqi.demo.setup import DEMO_MASTER_SECRET, DemoWorld
from yinqi.money import Money
from yinqi.states import BOOKED, PaymentState
from yinqi.store.models import Approval, Batch, Payment, StatusReport

#: Wherever Prefect runs in a test: no telemetry, no UI build, quiet logs.
PREFECT_QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


def asyncpg_url(url: str) -> str:
    """The same PostgreSQL database as Prefect's server reaches it (asyncpg driver)."""
    return re.sub(r"^postgresql(\+\w+)?://", "postgresql+asyncpg://", url)


def _clean_env() -> dict[str, str]:
    """This process's environment without Yinqi's and Prefect's own variables."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("YINQI_", "PREFECT_"))}


# --- the Prefect server ----------------------------------------------------------------------

@dataclass
class PrefectServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    timeout: float
    #: Seconds from the process start to its first healthy answer (None until then).
    start_seconds: float | None = None

    def ready(self) -> PrefectServer:
        """Wait until the server answers /api/health (at once if it already did)."""
        if self.start_seconds is None:
            _wait_healthy(self.process, self.url, self.log, self.timeout)
            self.start_seconds = time.perf_counter() - self.started
        return self

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def env(self, home: Path) -> dict[str, str]:
        """The environment of a process that talks to this server (CLI, worker)."""
        home.mkdir(parents=True, exist_ok=True)
        return {**_clean_env(), **PREFECT_QUIET, "PREFECT_API_URL": self.url,
                "PREFECT_HOME": str(home)}


@contextmanager
def prefect_server(folder: Path, database_url: str, *, timeout: float = 240.0
                   ) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free loopback port with its database on PostgreSQL
    (``database_url``: any SQLAlchemy URL of an empty database); stopped afterwards.

    Yields as soon as the process runs: its first start migrates the database (half a
    minute), so other set-up can go on meanwhile; ``ready()`` waits for it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**_clean_env(), **PREFECT_QUIET, "PREFECT_HOME": str(folder),
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": asyncpg_url(database_url)}
    log = folder / "server.log"
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--no-ui"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield PrefectServer(url, proc, log, started, timeout)
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"prefect server did not answer within {timeout:g} s; see {log}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started: SIGTERM, then SIGKILL if it is still there after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prefect_cli(args: Sequence[str], env: Mapping[str, str]) -> str:
    """``prefect <args>`` as an operator types it; its output, or an error with it."""
    done = subprocess.run([sys.executable, "-m", "prefect", *args], env=dict(env),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


# --- workers of a process work pool ----------------------------------------------------------

@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def process_workers(server: PrefectServer, pool: str, names: Sequence[str], folder: Path, *,
                    env: Mapping[str, str], limit: int, query_seconds: float = 2.0,
                    timeout: float = 180.0) -> Iterator[list[Worker]]:
    """``prefect worker start --pool <pool>`` once per name, each with ``env`` added (its
    flow runs inherit it) and at most ``limit`` flow runs at a time; yields once every one
    is ONLINE, stops them all afterwards."""
    server.ready()
    with ExitStack() as stack:
        workers = []
        for name in names:
            worker_env = {**server.env(folder / name), **env,
                          "PREFECT_WORKER_QUERY_SECONDS": f"{query_seconds:g}"}
            log = folder / f"{name}.log"
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                     "--type", "process", "--name", name, "--limit", str(limit)],
                    env=worker_env, stdout=out, stderr=subprocess.STDOUT)
            stack.callback(_stop, proc)
            workers.append(Worker(name, proc, log))
        _wait_online(server, pool, workers, timeout)
        yield workers


def _wait_online(server: PrefectServer, pool: str, workers: list[Worker],
                 timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with server.client() as api:
        while True:
            for w in workers:
                if w.process.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited with {w.process.returncode}: "
                                       f"{w.log.read_text(errors='replace')[-2000:]}")
            online = {row["name"] for row in api.post(f"/work_pools/{pool}/workers/filter",
                                                      json={}).json()
                      if row["status"] == "ONLINE"}
            if {w.name for w in workers} <= online:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted({w.name for w in workers} - online)} "
                                   f"not online within {timeout:g} s")
            time.sleep(0.5)


FINAL_RUN_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def flow_runs(server: PrefectServer, ids: Sequence[str]) -> list[dict[str, Any]]:
    with server.client() as api:
        r = api.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": list(ids)}}})
        r.raise_for_status()
        return list(r.json())


def task_seconds(server: PrefectServer, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per flow run (by name): seconds spent in each of its tasks (by task name)."""
    names = {r["id"]: r["name"] for r in flow_runs(server, ids)}
    out: dict[str, dict[str, float]] = {name: {} for name in names.values()}
    with server.client() as api:
        r = api.post("/task_runs/filter",
                     json={"flow_runs": {"id": {"any_": list(ids)}}, "limit": 200})
        r.raise_for_status()
        for task in r.json():
            spent = out[names[task["flow_run_id"]]]
            name = task["name"].rsplit("-", 1)[0]
            spent[name] = round(spent.get(name, 0.0) + task["total_run_time"], 1)
    return out


def wait_final(server: PrefectServer, ids: Sequence[str], timeout: float
               ) -> list[dict[str, Any]]:
    """The flow runs once each is in a final state (or the time is up: as they are)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = flow_runs(server, ids)
        if all(r["state"]["type"] in FINAL_RUN_STATES for r in runs) \
                or time.monotonic() > deadline:
            return runs
        time.sleep(1.0)


def stop_unfinished(server: PrefectServer, ids: Sequence[str]) -> list[int]:
    """SIGKILL the processes of those flow runs that are not final (a test that gave up on
    them): a worker starts each run in a session of its own, so stopping the worker does
    not reach it. Only a process of a Prefect flow run reporting to ``server`` is touched."""
    killed = []
    for run in flow_runs(server, ids):
        pid = run.get("infrastructure_pid")
        if run["state"]["type"] in FINAL_RUN_STATES or not pid or not str(pid).isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT_API_URL={server.url}".encode() in environ:
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))
    return killed


def who_ran(server: PrefectServer, ids: Sequence[str], *, timeout: float = 60.0
            ) -> dict[str, str]:
    """Flow run id -> the name of the worker that took it, from the workers' own
    ``prefect.worker.submitted-flow-run`` events (waiting up to ``timeout`` for the server
    to have stored them all)."""
    deadline = time.monotonic() + timeout
    while True:
        found = _submitted_events(server, ids)
        if set(found) >= set(ids) or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def _submitted_events(server: PrefectServer, ids: Sequence[str]) -> dict[str, str]:
    wanted = {f"prefect.flow-run.{i}": i for i in ids}
    found: dict[str, str] = {}
    with server.client() as api:
        r = api.post("/events/filter", json={
            "filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]}},
            "limit": 50})
        r.raise_for_status()
        page = r.json()
        while True:
            for event in page["events"]:
                for related in event.get("related", []):
                    run = wanted.get(related.get("prefect.resource.id", ""))
                    if run is not None:
                        found[run] = event["resource"]["prefect.resource.name"]
            if not page.get("next_page"):
                return found
            page = api.get(page["next_page"]).json()


# --- a Yinqi installation its bank lets pay a large run --------------------------------------

@contextmanager
def funded_world(home: Path, database_url: str, *, settle_after: float = 1.0,
                 batch_size_limit: int | None = None) -> Iterator[DemoWorld]:
    """``yinqi.demo.setup.demo_world`` on ``database_url`` with the company's sandbox accounts
    funded for any size (the benchmark's ``funded`` config) and, when given, every bank's
    ``batch_size_limit`` set to it (smaller batches: more of them for workers to share)."""
    from bench.pipeline import funded
    from yinqi.cli.init_cmd import run_init
    from yinqi.cli.sandbox_cmd import enrol

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_dir = product_config(home / "config", port)
    if batch_size_limit is not None:
        banks = config_dir / "banks.toml"
        banks.write_text(re.sub(r"(?m)^batch_size_limit = \d+$",
                                f"batch_size_limit = {batch_size_limit}",
                                banks.read_text(encoding="utf-8")), encoding="utf-8")
    app = App(load_settings(home=home, database_url=database_url,
                            master_secret=DEMO_MASTER_SECRET, config_dir=config_dir))
    try:
        run_init(app)
        config = funded(home / "sandbox-config", settle_after=settle_after)
        enrol(app, config, home / "sandbox")
        with sandbox_process(config, home / "sandbox", port, home / "sandbox-bank.log") as bank:
            yield DemoWorld(app, bank, home)
    finally:
        app.close()


def yinqi_env(app: App) -> dict[str, str]:
    """What a process needs to be this installation: flows started by a worker read it."""
    s = app.settings
    return {"YINQI_HOME": str(s.home), "YINQI_DATABASE_URL": s.resolved_database_url,
            "YINQI_CONFIG_DIR": str(s.config_dir), "YINQI_MASTER_SECRET": DEMO_MASTER_SECRET}


# --- the bank's ledger against Yinqi's database ----------------------------------------------

@dataclass
class LedgerVerdict:
    payments: int
    at_bank: int
    states: dict[str, int]
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unapproved: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.unapproved)


def ledger_verdict(world: DemoWorld, app: App, *, every_approved_sent: bool,
                   done: frozenset[str] | set[str] = DONE) -> LedgerVerdict:
    """Every payment of ``app`` held against the sandbox bank's own records.

    Duplicates: a payment the bank has more than once, or under another message than its
    batch's, a booking the bank made twice, or a payment the bank refused as a duplicate
    (DUPL: its end-to-end ID had reached the bank before). Lost: an approved payment not in
    one of the ``done`` states, booked by Yinqi but not by the bank or the other way round,
    the bank's books out of balance, the audit chain broken; with ``every_approved_sent``
    also an approved payment of which the bank has no word at all (a run without faults
    must send them all: the bank either has the payment or refused it with a reason).
    Unapproved: at the bank without its approvals.
    """
    ledger: dict[str, Any] = world.control("GET", "ledger")  # type: ignore[assignment]
    with app.sessions() as s:
        payments = {p.end_to_end_id: p for p in s.execute(select(Payment)).scalars()}
        msg_of = dict(s.execute(select(Batch.id, Batch.msg_id)).all())
        approvals = Counter(
            pid for pid, rnd, prnd in s.execute(
                select(Approval.payment_id, Approval.approval_round, Payment.approval_round)
                .join(Payment, Payment.id == Approval.payment_id)
                .where(Approval.decision == "approved")) if rnd == prnd)
        refused = {pid: code for pid, code in s.execute(
            select(StatusReport.payment_id, StatusReport.reason_code)
            .where(StatusReport.tx_status == "RJCT", StatusReport.reason_code.is_not(None)))}
        chain = app.audit.verify(s)
    at_bank: dict[str, list[dict[str, Any]]] = {}
    for bank in BANKS:
        for row in world.control("GET", f"payments/{bank}"):  # type: ignore[union-attr]
            if row["end_to_end_id"] in payments:
                at_bank.setdefault(row["end_to_end_id"], []).append(row)
    verdict = LedgerVerdict(len(payments), sum(len(r) for r in at_bank.values()),
                            dict(Counter(p.state for p in payments.values())))
    if ledger.get("payments_booked_twice"):
        verdict.duplicates.append(f"bank ledger: {ledger['payments_booked_twice']} payment(s) "
                                  "booked twice")
    if ledger.get("ok") is False or ledger.get("balanced") is False:
        verdict.lost.append(f"bank ledger does not balance: {ledger}")
    if not chain.ok:
        verdict.lost.append(f"audit chain broken: {chain}")
    policy = app.config.approval_policy
    booked = {s.value for s in BOOKED}
    for e2e, p in payments.items():
        rows = at_bank.get(e2e, [])
        needed = len(policy.levels_for(Money.from_minor(p.amount_minor, p.currency).amount,
                                       p.category))
        approved = approvals[p.id] >= needed
        if len(rows) > 1 or any(r["msg_id"].split(":", 1)[-1] != msg_of.get(p.batch_id)
                                for r in rows):
            verdict.duplicates.append(f"{e2e}: {len(rows)} bank payment(s) "
                                      f"{[r['msg_id'] for r in rows]}")
        if refused.get(p.id) == "DUPL":
            verdict.duplicates.append(f"{e2e}: the bank refused it as a duplicate")
        if not approved:
            if any(r["status"] in ("ACSC", "ACSP", "RTND") for r in rows):
                verdict.unapproved.append(f"{e2e}: at the bank with {approvals[p.id]} of "
                                          f"{needed} approvals")
            continue
        if every_approved_sent and not rows and p.id not in refused:
            verdict.lost.append(f"{e2e}: approved ({p.state}) but the bank has no word of it")
        elif p.state not in done:
            verdict.lost.append(f"{e2e}: still {p.state} ({p.state_reason})")
        elif p.state in booked and not any(r["status"] == "ACSC" for r in rows):
            verdict.lost.append(f"{e2e}: Yinqi says {p.state}, the bank says "
                                f"{[r['status'] for r in rows] or 'never received'}")
        elif p.state == PaymentState.FAILED.value and any(
                r["status"] in ("ACSC", "ACSP") for r in rows):
            verdict.lost.append(f"{e2e}: Yinqi says FAILED, but the bank booked it")
    return verdict
