"""The chaos harness: random bank faults and SIGKILLed payment workers, then an audit of
the bank's ledger against Yinqi's database.

One sandbox bank process serves every seed; each seed gets its own Yinqi installation (a
copy of one enrolled template, so every seed signs with the key the bank knows), its own
vouchers (a source name per seed keeps end-to-end IDs apart) and its own fault plan.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from config import load_settings
from sandbox_support import alert_only_risk_rules
from yinqi.bootstrap import App
from yinqi.demo.approve import approve_pending
from yinqi.demo.bank import free_port, product_config, sandbox_config
from yinqi.demo.setup import DEMO_MASTER_SECRET, DemoWorld
from yinqi.demo.vouchers import generate
from yinqi.money import Money
from yinqi.states import BOOKED, PaymentState
from yinqi.store.models import Approval, Batch, Payment

BANKS = ("icbc", "cmb")
READ_TIMEOUT = 1.5
#: Payment states that are the end of the road for a payment with complete approvals.
DONE = {PaymentState.RECEIPTED.value, PaymentState.FAILED.value,
        PaymentState.RETURNED.value, PaymentState.RECONCILED.value}


@dataclass
class Tally:
    seeds: int = 0
    faults: int = 0
    kills: int = 0
    duplicates: int = 0
    lost: int = 0
    unapproved: int = 0
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"seeds": self.seeds, "faults": self.faults, "kills": self.kills,
                "duplicates": self.duplicates, "lost": self.lost,
                "unapproved": self.unapproved}

    def line(self) -> str:
        return (f"chaos: {self.seeds} seeds, {self.faults} faults, {self.kills} kills, "
                f"{self.duplicates} duplicates, {self.lost} lost, {self.unapproved} unapproved")


TALLY = Tally()


@dataclass
class SeedResult:
    seed: int
    payments: int
    kills: int
    faults: int
    duplicates: list[str]
    lost: list[str]
    unapproved: list[str]
    states: dict[str, int]

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.unapproved)


class Chaos:
    """The shared bank and the enrolled template installation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.template = root / "template"
        self.world: DemoWorld | None = None

    def settings_for(self, home: Path, database_url: str):  # type: ignore[no-untyped-def]
        return load_settings(home=home, database_url=database_url,
                             master_secret=DEMO_MASTER_SECRET, config_dir=home / "config")

    def env_for(self, app: App) -> dict[str, str]:
        s = app.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
        env.update(YINQI_HOME=str(s.home), YINQI_DATABASE_URL=str(s.resolved_database_url),
                   YINQI_CONFIG_DIR=str(s.config_dir), YINQI_MASTER_SECRET=DEMO_MASTER_SECRET)
        return env

    def new_seed_app(self, seed: int, database_url: str | None) -> App:
        """A copy of the template installation: same keys and certificates, own database."""
        home = self.root / f"seed-{seed}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(self.template, home, ignore=shutil.ignore_patterns("archive", "*.log"))
        if database_url is None:
            url = f"sqlite:///{home / 'yinqi.db'}"
        else:
            url = database_url
            _copy_into_postgres(self.template / "yinqi.db", url)
        return App(self.settings_for(home, url))


def _copy_into_postgres(sqlite_file: Path, url: str) -> None:
    """The template's rows (company, users, keys) in a fresh PostgreSQL database."""
    from yinqi.security.fields import FieldCrypto
    from yinqi.store import make_engine, upgrade
    from yinqi.store.models import Base

    # The same master secret reads the rows on one side and writes them on the other.
    crypto = FieldCrypto(DEMO_MASTER_SECRET.encode())
    source = make_engine(f"sqlite:///{sqlite_file}", fields=crypto)
    target = make_engine(url, fields=crypto)
    upgrade(target)
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in src.execute(table.select())]
            if rows:
                dst.execute(table.insert(), rows)
        if target.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and pk[0].autoincrement is not False and \
                        str(pk[0].type).upper().startswith(("BIGINT", "INTEGER")):
                    dst.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk[0].name}'),"
                        f" COALESCE((SELECT MAX({pk[0].name}) FROM {table.name}), 0) + 1, false)"
                    ))
    source.dispose()
    target.dispose()


def start(root: Path):  # type: ignore[no-untyped-def]
    """Build the template installation and start the shared sandbox bank (a context manager)."""
    from contextlib import contextmanager

    from yinqi.cli.init_cmd import run_init
    from yinqi.cli.sandbox_cmd import enrol
    from yinqi.demo.bank import sandbox_process

    @contextmanager
    def running():  # type: ignore[no-untyped-def]
        chaos = Chaos(root)
        home = chaos.template
        home.mkdir(parents=True, exist_ok=True)
        product_config(home / "config", chaos.port, read_timeout=READ_TIMEOUT)
        alert_only_risk_rules(home / "config")
        app = App(chaos.settings_for(home, f"sqlite:///{home / 'yinqi.db'}"))
        run_init(app)
        config = sandbox_config(root / "bank-config", settle_after=0.3)
        enrol(app, config, root / "bank")
        # The bank's certificates were copied where banks.toml expects them in the template.
        with sandbox_process(config, root / "bank", chaos.port, root / "bank.log") as bank:
            chaos.world = DemoWorld(app, bank, home)
            try:
                yield chaos
            finally:
                app.close()

    return running()


def fault_plan(rng: random.Random, seed: int) -> dict[str, object]:
    """Every fault the issue names, at rates drawn per seed."""
    return {"seed": seed, "latency_ms": 50, "latency_rate": rng.uniform(0, 0.3),
            "http_5xx_rate": rng.uniform(0.05, 0.25), "reset_rate": rng.uniform(0.05, 0.25),
            "timeout_after_booking_rate": rng.uniform(0.1, 0.4),
            "timeout_hold_seconds": READ_TIMEOUT + 0.5,
            "duplicate_status_rate": rng.uniform(0.1, 0.5),
            "out_of_order_status_rate": rng.uniform(0.1, 0.5),
            "maintenance_rate": rng.uniform(0, 0.15), "maintenance_retry_after": 1}


def _worker(chaos: Chaos, app: App, *, kill_after: float | None, kill_points: float,
            seed: int, max_seconds: float, prefect_api: str | None = None) -> int | None:
    """Run `yinqi payments run` once; SIGKILL it after ``kill_after`` seconds (if still
    running). Returns its exit code (negative: killed)."""
    env = chaos.env_for(app)
    if kill_points:
        env["YINQI_CHAOS_KILL"] = f"{seed}:{kill_points}"
    command = [sys.executable, "-m", "yinqi", "payments", "run", "--max-seconds",
               str(max_seconds), "--poll-seconds", "0.2", "--lease-seconds", "3", "--json"]
    if prefect_api:
        # The payment flow itself, in its own process, against the shared Prefect server.
        env.update(PREFECT_API_URL=prefect_api, PREFECT_LOGGING_LEVEL="WARNING")
        command.append("--prefect")
    with open(app.settings.home / "worker.log", "ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return proc.returncode


def run_seed(chaos: Chaos, seed: int, *, database_url: str | None = None,
             payments: tuple[int, int] = (15, 40), kill_rounds: tuple[int, int] = (1, 3),
             prefect_api: str | None = None) -> SeedResult:
    assert chaos.world is not None
    rng = random.Random(seed)
    app = chaos.new_seed_app(seed, database_url)
    try:
        before = chaos.world.control("GET", "ledger")["faults_injected"]  # type: ignore[index]
        chaos.world.control("PUT", "faults", json=fault_plan(rng, seed))
        n = rng.randint(*payments)
        day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
        data = generate(n, seed, day=day, bad_rows=2, refused_share=0.05)
        vouchers = app.settings.home / "vouchers.csv"
        vouchers.write_bytes(data)
        from yinqi.cli.vouchers_cmd import run_import

        summary = run_import(app, vouchers, source=f"chaos{seed}", imported_by="chaos")
        # One payment is pushed to APPROVED behind the gate's back: it must never be paid.
        with app.sessions.begin() as s:
            sneaky = s.execute(select(Payment.id).where(
                Payment.state == PaymentState.PENDING_APPROVAL.value).order_by(Payment.id)
            ).scalars().first()
            s.execute(text("UPDATE payments SET state = 'APPROVED' WHERE id = :i"),
                      {"i": sneaky})
        approve_pending(app, datetime.now(UTC))
        kills = 0
        for _ in range(rng.randint(*kill_rounds)):
            code = _worker(chaos, app, kill_after=rng.uniform(1.2, 4.0) + (3 if prefect_api
                                                                             else 0),
                           kill_points=rng.choice((0.0, 0.05, 0.15)), seed=seed * 100 + kills,
                           max_seconds=30, prefect_api=prefect_api)
            if code is not None and code < 0:
                kills += 1
        # The storm passes: no more faults and no more kills, and the work must finish.
        chaos.world.control("PUT", "faults", json={"seed": seed})
        for _ in range(3):
            if _worker(chaos, app, kill_after=None, kill_points=0.0, seed=seed,
                       max_seconds=60, prefect_api=prefect_api) == 0:
                break
        after = chaos.world.control("GET", "ledger")
        faults = sum(after["faults_injected"].values()) - sum(before.values())  # type: ignore[index,union-attr]
        return _audit(chaos, app, seed, n, summary, kills, faults, sneaky, after)
    finally:
        app.close()


def _audit(chaos: Chaos, app: App, seed: int, n: int, summary, kills: int,  # type: ignore[no-untyped-def]
           faults: int, sneaky: int | None, ledger: dict) -> SeedResult:  # type: ignore[type-arg]
    assert chaos.world is not None
    duplicates: list[str] = []
    lost: list[str] = []
    unapproved: list[str] = []
    if ledger.get("payments_booked_twice"):
        duplicates.append(f"bank ledger: {ledger['payments_booked_twice']} payment(s) booked twice")
    if ledger.get("ok") is False or ledger.get("balanced") is False:
        lost.append(f"bank ledger does not balance: {ledger}")
    with app.sessions() as s:
        payments = {p.end_to_end_id: p for p in s.execute(select(Payment)).scalars()}
        msg_of = dict(s.execute(select(Batch.id, Batch.msg_id)).all())
        approvals = Counter(
            pid for pid, rnd, prnd in s.execute(
                select(Approval.payment_id, Approval.approval_round, Payment.approval_round)
                .join(Payment, Payment.id == Approval.payment_id)
                .where(Approval.decision == "approved")) if rnd == prnd)
        verdict = app.audit.verify(s)
    if not verdict.ok:
        lost.append(f"audit chain broken: {verdict}")
    rows = n + 2
    if summary.accepted + len(summary.quarantined) != rows:
        lost.append(f"voucher file had {rows} rows, intake accounted for "
                    f"{summary.accepted + len(summary.quarantined)}")
    if len(payments) != summary.accepted:
        lost.append(f"{summary.accepted} vouchers accepted but {len(payments)} payments exist")
    policy = app.config.approval_policy
    ours = {e2e for e2e in payments}
    at_bank: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for bank in BANKS:
        for row in chaos.world.control("GET", f"payments/{bank}"):  # type: ignore[union-attr]
            if row["end_to_end_id"] in ours:
                at_bank.setdefault(row["end_to_end_id"], []).append(row)
    for e2e, p in payments.items():
        rows_ = at_bank.get(e2e, [])
        needed = len(policy.levels_for(Money.from_minor(p.amount_minor, p.currency).amount,
                                       p.category))
        approved = approvals[p.id] >= needed
        booked_at_bank = [r for r in rows_ if r["status"] in ("ACSC", "ACSP", "RTND")]
        if len(rows_) > 1 or any(r["msg_id"].split(":", 1)[-1] != msg_of.get(p.batch_id) for r in rows_):
            duplicates.append(f"{e2e}: {len(rows_)} bank payment(s) "
                              f"{[r['msg_id'] for r in rows_]}")
        if booked_at_bank and not approved:
            unapproved.append(f"{e2e}: at the bank ({booked_at_bank[0]['status']}) with "
                              f"{approvals[p.id]} of {needed} approvals")
        if not approved:
            if p.id == sneaky and p.state != PaymentState.HELD.value:
                unapproved.append(f"{e2e}: pushed to APPROVED without approvals and not held "
                                  f"({p.state})")
            continue
        if p.state not in DONE:
            lost.append(f"{e2e}: still {p.state} after the storm ({p.state_reason})")
        elif p.state in {s.value for s in BOOKED} and not any(
                r["status"] == "ACSC" for r in rows_):
            lost.append(f"{e2e}: Yinqi says {p.state}, the bank says "
                        f"{[r['status'] for r in rows_] or 'never received'}")
        elif p.state == PaymentState.FAILED.value and any(
                r["status"] in ("ACSC", "ACSP") for r in rows_):
            lost.append(f"{e2e}: Yinqi says FAILED, but the bank booked it")
    states = Counter(p.state for p in payments.values())
    result = SeedResult(seed, len(payments), kills, faults, duplicates, lost, unapproved,
                        dict(states))
    TALLY.seeds += 1
    TALLY.faults += faults
    TALLY.kills += kills
    TALLY.duplicates += len(duplicates)
    TALLY.lost += len(lost)
    TALLY.unapproved += len(unapproved)
    TALLY.problems += [f"seed {seed}: {x}" for x in (duplicates + lost + unapproved)[:5]]
    return result


