"""`yinqi payments ...` and `yinqi batches ...` as an operator runs them, against a real
sandbox bank process: run the pipeline, look at batches and failures, correct, rerun.

One demo world per backend for the module; the vouchers are imported, approved and run once
(the ``ran`` fixture). Three batches: A (one refusal) and C (all good) are only looked at; B
(two refusals) belongs to the rerun test, so the tests hold in any order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cli_support import as_user, yinqi
from conftest import BACKENDS, module_db_url
from sandbox_support import alert_only_risk_rules
from yinqi.demo.approve import approve_pending
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER, REFUSED_PAYEES
from yinqi.store.models import AuditEventRow, Batch, Payment

ICBC_DEBTOR, ICBC_DEBTOR_2, CMB_DEBTOR = ("1202021209900123456", "1202021209900654321",
                                          "755912345610808")
AT_ICBC = ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996")
AT_ICBC_2 = ("李娜", "45401636481574033", "中国工商银行北京分行营业部", "102100099996")
AT_CMB = ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013")
ELSEWHERE = ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005")
CLOSED = REFUSED_PAYEES[0]
LINES = [  # (debtor, payee, amount); A = ICBC_DEBTOR, B = ICBC_DEBTOR_2, C = CMB_DEBTOR
    (ICBC_DEBTOR, CLOSED, "110.00"), (ICBC_DEBTOR, AT_ICBC, "120.00"),
    (ICBC_DEBTOR, ELSEWHERE, "130.00"),
    (ICBC_DEBTOR_2, CLOSED, "210.00"), (ICBC_DEBTOR_2, CLOSED, "220.00"),
    (ICBC_DEBTOR_2, AT_ICBC_2, "230.00"),
    (CMB_DEBTOR, AT_CMB, "310.00"), (CMB_DEBTOR, ELSEWHERE, "320.00"),
]
FULL_NUMBERS = {CLOSED[1], AT_ICBC[1], AT_ICBC_2[1], AT_CMB[1], ELSEWHERE[1], ICBC_DEBTOR,
                ICBC_DEBTOR_2, CMB_DEBTOR}
RUN_KEYS = {"rounds", "open_batches", "awaiting_receipts", "sends", "status_queries",
            "receipts", "states", "stage_seconds", "set_aside", "errors"}
BATCH_KEYS = {"id", "msg_id", "bank", "dialect", "state", "payments", "total", "currency",
              "execution_date", "file", "sha256", "send_attempts", "last_error",
              "payment_states"}
PAYMENT_KEYS = {"id", "end_to_end_id", "state", "amount", "currency", "creditor_name",
                "creditor_account", "batch_id", "bank_reference", "reason", "send_round"}
MASKED = re.compile(r"^\*{4}\d{4}$")


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The backend under test, once per module (the conftest one is per test)."""
    yield from module_db_url(request, tmp_path_factory, "payments-cli-db")


@dataclass
class Ran:
    world: DemoWorld
    env: dict[str, str]
    run: dict  # type: ignore[type-arg]
    ids: list[int]              # in LINES order
    batch_of: dict[str, int]    # "A" / "B" / "C" -> batch id
    moments: Iterator[datetime]

    @property
    def app(self):  # type: ignore[no-untyped-def]
        return self.world.app

    def approve(self) -> None:
        approve_pending(self.app, next(self.moments))

    def as_(self, username: str) -> dict[str, str]:
        """The env of a person with a session: correcting, rerunning and decrypting need one."""
        return as_user(self.env, username)

    def payment(self, pid: int) -> Payment:
        with self.app.sessions() as s:
            p = s.get_one(Payment, pid)
            s.expunge(p)
        return p

    def batch(self, batch_id: int) -> Batch:
        with self.app.sessions() as s:
            b = s.get_one(Batch, batch_id)
            s.expunge(b)
        return b


@pytest.fixture(scope="module")
def ran(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """Vouchers imported with the CLI, approved, and `yinqi payments run --json` once."""
    home = tmp_path_factory.mktemp("payments-cli") / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, database_url=db_url, settle_after=0.2) as world:
        settings = world.app.settings
        assert settings.master_secret is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
        env.update(YINQI_HOME=str(settings.home),
                   YINQI_DATABASE_URL=settings.resolved_database_url,
                   YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
                   YINQI_CONFIG_DIR=str(settings.config_dir), COLUMNS="200")
        day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(HEADER)
        for i, (debtor, payee, amount) in enumerate(LINES):
            w.writerow([f"CLI{i:04d}", day, debtor, *payee, amount, "CNY", "货款", "供应商", "否",
                        "wu.maker", day])
        file = home / "cli-vouchers.csv"
        file.write_text(out.getvalue(), encoding="utf-8")
        imported = json.loads(yinqi("vouchers", "import", str(file), "--json", env=env).stdout)
        assert (imported["accepted"], imported["quarantined"]) == (len(LINES), [])

        start = datetime.now(UTC)
        moments = (start + timedelta(seconds=60 * k) for k in itertools.count(1))
        approve_pending(world.app, next(moments))
        run = json.loads(yinqi("payments", "run", "--poll-seconds", "0.2", "--max-seconds", "120",
                               "--json", env=env).stdout)
        with world.app.sessions() as s:
            # Every line has its own amount: that tells the payments apart.
            by_amount = {minor: (pid, batch) for pid, batch, minor in s.execute(
                select(Payment.id, Payment.batch_id, Payment.amount_minor))}
        rows = [by_amount[int(amount.replace(".", ""))] for _, _, amount in LINES]
        ids = [pid for pid, _ in rows]
        batch_of = {"A": rows[0][1], "B": rows[3][1], "C": rows[6][1]}
        assert len(set(batch_of.values())) == 3
        yield Ran(world, env, run, ids, batch_of, moments)


def _decrypted(ran: Ran, stored: str) -> bytes:
    """An archived file's plaintext, as an operator gets it (files are encrypted at rest)."""
    out = ran.world.home.parent / f"shown-{os.urandom(6).hex()}"
    yinqi("archive", "show", stored, "--out", str(out), env=ran.as_("zhao.auditor"))
    return out.read_bytes()


def one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip()


# --- yinqi payments run ----------------------------------------------------------------------


def test_payments_run_carries_every_approved_payment_to_its_end(ran: Ran) -> None:
    out = ran.run
    assert set(out) == RUN_KEYS
    assert (out["open_batches"], out["awaiting_receipts"], out["errors"]) == (0, 0, [])
    assert out["set_aside"] == []
    assert out["sends"] == 3 and out["receipts"] == 5 and out["rounds"] >= 1
    assert out["status_queries"] >= 1
    assert {s: v["count"] for s, v in out["states"].items()} == {"RECEIPTED": 5, "FAILED": 3}
    assert out["states"]["FAILED"]["amounts"] == {"CNY": "540.00"}      # 110 + 210 + 220
    assert out["states"]["RECEIPTED"]["amounts"] == {"CNY": "1110.00"}
    assert set(out["stage_seconds"]) >= {"batching", "signing", "submission", "polling",
                                         "receipts"}
    assert all(isinstance(v, float | int) and v >= 0 for v in out["stage_seconds"].values())

    # Run again: nothing in flight, nothing sent, exit 0.
    again = json.loads(yinqi("payments", "run", "--json", env=ran.env).stdout)
    assert (again["sends"], again["open_batches"], again["rounds"]) == (0, 0, 1)


def test_payments_run_without_json_prints_a_table(ran: Ran) -> None:
    out = yinqi("payments", "run", "--no-receipts", env=ran.env).stdout
    assert "0 send(s)" in out and "0 batch(es) still open" in out
    assert "Payments by state" in out and "RECEIPTED" in out


# --- yinqi batches list ----------------------------------------------------------------------


def test_batches_list_shows_each_message_with_its_evidence(ran: Ran) -> None:
    rows = json.loads(yinqi("batches", "list", "--json", env=ran.env).stdout)
    assert rows and all(set(r) == BATCH_KEYS for r in rows)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    by_id = {r["id"]: r for r in rows}
    a, c = by_id[ran.batch_of["A"]], by_id[ran.batch_of["C"]]
    assert (a["bank"], a["dialect"], a["state"]) == ("icbc-sandbox", "iso20022", "COMPLETED")
    assert (c["bank"], c["dialect"], c["state"]) == ("cmb-sandbox", "cn-h2h", "COMPLETED")
    assert (a["payments"], a["total"], a["currency"]) == (3, "360.00", "CNY")
    assert a["payment_states"] == {"FAILED": 1, "RECEIPTED": 2}
    assert c["payment_states"] == {"RECEIPTED": 2} and c["total"] == "630.00"
    for r in (a, c):
        assert r["send_attempts"] == 1 and r["last_error"] is None
        plain = _decrypted(ran, r["file"])
        assert hashlib.sha256(plain).hexdigest() == r["sha256"]
        assert len(r["msg_id"]) <= 35 and r["execution_date"]

    completed = json.loads(yinqi("batches", "list", "--state", "completed", "--limit", "1",
                                 "--json", env=ran.env).stdout)
    assert len(completed) == 1 and completed[0]["state"] == "COMPLETED"
    table = yinqi("batches", "list", env=ran.env).stdout
    assert a["msg_id"] in table and "batch(es)" in table and "last error" in table


def test_batches_list_shows_the_last_error_masked_and_short(ran: Ran) -> None:
    # What a send left when the bank did not answer, quoting a payee's account.
    error = (f"bank icbc-sandbox: unavailable (503 'account {AT_ICBC[1]} under maintenance; "
             "retry later') " + "the next round asks first " * 10)
    a = ran.batch_of["A"]
    with ran.app.sessions.begin() as s:
        s.get(Batch, a).last_error = error
    try:
        table = yinqi("batches", "list", env={**ran.env, "COLUMNS": "400"}).stdout
        data = json.loads(yinqi("batches", "list", "--json", env=ran.env).stdout)
    finally:
        with ran.app.sessions.begin() as s:
            s.get(Batch, a).last_error = None
    row = next(line for line in table.splitlines() if line.startswith(f"│ {a} "))
    assert "bank icbc-sandbox: unavailable (503 'account ****" in row
    assert AT_ICBC[1] not in table and "****" + AT_ICBC[1][-4:] in row
    assert "…" in row and "the next round asks first " * 3 not in row
    assert next(r for r in data if r["id"] == a)["last_error"] == error  # --json: all of it


# --- yinqi payments list ---------------------------------------------------------------------


def test_payments_list_of_failures_shows_masked_accounts_only(ran: Ran) -> None:
    proc = yinqi("payments", "list", "--state", "FAILED", "--json", env=ran.env)
    rows = json.loads(proc.stdout)
    assert rows and all(set(r) == PAYMENT_KEYS for r in rows)
    assert {r["state"] for r in rows} == {"FAILED"}
    assert ran.ids[0] in {r["id"] for r in rows}
    for r in rows:
        assert MASKED.match(r["creditor_account"]), r["creditor_account"]
        assert r["creditor_account"] == "****2222"
        assert r["reason"] == "AC04: creditor account is closed"
    readable = yinqi("payments", "list", "--state", "failed", env=ran.env).stdout
    for text in (proc.stdout, proc.stderr, readable):
        assert not [n for n in FULL_NUMBERS if n in text]
    assert "****2222" in readable

    in_a = json.loads(yinqi("payments", "list", "--batch", str(ran.batch_of["A"]), "--json",
                            env=ran.env).stdout)
    assert sorted(r["id"] for r in in_a) == ran.ids[:3]
    assert not [n for n in FULL_NUMBERS if n in json.dumps(in_a)]


# --- yinqi payments fix ----------------------------------------------------------------------


@pytest.mark.parametrize(("options", "says"), [
    ([], "nothing to correct"),
    (["--amount", "-5"], "amount '-5': must be positive"),
    (["--creditor-account", "12ab"], "creditor_account"),
    # Error lines mask any run of 8+ digits (yinqi.cli.output.fail_line): a CNAPS code too.
    (["--creditor-cnaps", "10210009999"], "creditor_cnaps '****9999': a CNAPS code is 12"),
])
def test_payments_fix_refuses_bad_input_in_one_line(ran: Ran, options: list[str],
                                                    says: str) -> None:
    failed = ran.ids[0]
    before = ran.payment(failed)
    proc = yinqi("payments", "fix", str(failed), *options, "--json",
                 env=ran.as_("liu.treasurer"), check=2)
    assert says in one_line_error(proc)
    after = ran.payment(failed)
    assert (after.state, after.amount_minor, after.creditor_account, after.version) == \
        (before.state, before.amount_minor, before.creditor_account, before.version)


@pytest.mark.parametrize(("which", "says"), [
    ("settled", "only payments the bank definitively rejected (FAILED) can be corrected"),
    ("missing", "no payment 999999"),
])
def test_payments_fix_refuses_what_cannot_be_corrected(ran: Ran, which: str, says: str) -> None:
    pid = ran.ids[1] if which == "settled" else 999_999
    proc = yinqi("payments", "fix", str(pid), "--purpose", "x", env=ran.as_("liu.treasurer"),
                 check=2)
    assert says in one_line_error(proc)


# --- yinqi batches rerun ---------------------------------------------------------------------


def test_batches_rerun_prints_its_contract_and_sends_only_the_rejected(ran: Ran) -> None:
    unchanged, corrected, settled = ran.ids[3:6]
    batch = ran.batch(ran.batch_of["B"])
    first_e2e = ran.payment(unchanged).end_to_end_id
    treasurer = ran.as_("liu.treasurer")

    fixed = json.loads(yinqi("payments", "fix", str(corrected), "--as", "liu.treasurer",
                             "--creditor-name", AT_ICBC[0], "--creditor-account", AT_ICBC[1],
                             "--json", env=treasurer).stdout)
    assert fixed == {"payment_id": corrected, "changes": {
        "creditor_name": {"from": CLOSED[0], "to": AT_ICBC[0]},
        "creditor_account": {"from": "****2222", "to": "****2316"}}}

    out = json.loads(yinqi("batches", "rerun", batch.msg_id, "--reason",
                           "payee corrected", "--json", env=treasurer).stdout)
    assert out == {"batch_id": batch.id, "msg_id": batch.msg_id, "to_send": [unchanged],
                   "to_reapprove": [corrected], "untouched": {"RECEIPTED": 1}}
    with ran.app.sessions() as s:
        events = s.execute(select(AuditEventRow).where(AuditEventRow.action == "batch.rerun")
                           ).scalars().all()
        [event] = [e for e in events if e.subject_ids == [str(batch.id)]]
        assert (event.actor, event.details["reason"]) == ("liu.treasurer", "payee corrected")
        assert event.details["untouched"] == {"RECEIPTED": 1}

    # The same batch again: nothing the bank rejected is left in it.
    again = yinqi("batches", "rerun", str(batch.id), "--json", env=treasurer, check=2)
    assert "nothing to rerun" in one_line_error(again)
    unknown = yinqi("batches", "rerun", "NOSUCHBATCH", env=treasurer, check=2)
    assert "no batch 'NOSUCHBATCH'" in one_line_error(unknown)

    ran.approve()                              # the corrected payee, approved again
    run = json.loads(yinqi("payments", "run", "--poll-seconds", "0.2", "--max-seconds", "120",
                           "--json", env=ran.env).stdout)
    assert (run["open_batches"], run["sends"]) == (0, 1)      # one new message for both
    assert ran.payment(corrected).state == "RECEIPTED"
    assert ran.payment(corrected).batch_id == ran.payment(unchanged).batch_id != batch.id
    again_failed = ran.payment(unchanged)
    assert again_failed.state == "FAILED" and again_failed.send_round == 2
    assert again_failed.end_to_end_id != first_e2e
    assert ran.payment(settled).batch_id == batch.id
    assert "audit chain intact" in yinqi("audit", "verify", env=ran.env).stdout


# --- yinqi batches dissolve ------------------------------------------------------------------


def test_a_batch_that_cannot_be_built_is_set_aside_and_dissolved_from_the_cli(
        ran: Ran) -> None:
    day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    file = ran.world.home / "cli-dissolve.csv"
    file.write_text(",".join(HEADER) + "\n" + ",".join(
        ["CLI-D-0001", day, ICBC_DEBTOR_2, *CLOSED, "410.00", "CNY", "货款", "供应商", "否",
         "wu.maker", day]) + "\n", encoding="utf-8")
    assert json.loads(yinqi("vouchers", "import", str(file), "--json",
                            env=ran.env).stdout)["accepted"] == 1
    with ran.app.sessions() as s:
        [pid] = s.execute(select(Payment.id).where(Payment.amount_minor == 41000)).scalars()
    ran.approve()
    yinqi("payments", "run", "--poll-seconds", "0.2", "--json", env=ran.env)
    assert ran.payment(pid).state == "FAILED"
    failed = ran.batch(ran.payment(pid).batch_id)
    # A correction takes a purpose of up to 200 characters; pain.001 carries 140.
    treasurer = ran.as_("liu.treasurer")
    yinqi("payments", "fix", str(pid), "--purpose", "货款" * 80, env=treasurer)
    yinqi("batches", "rerun", failed.msg_id, env=treasurer)

    run = yinqi("payments", "run", "--poll-seconds", "0.2", env=ran.env, check=1)
    with ran.app.sessions() as s:
        invalid = s.execute(select(Batch).where(Batch.state == "INVALID")).scalars().one()
    reason = (f"payment '{ran.payment(pid).end_to_end_id}': purpose has 160 characters; "
              "pain.001 allows at most 140")
    assert f"not done: batch {invalid.msg_id} set aside: {reason}" in run.stdout.splitlines()
    listed = json.loads(yinqi("batches", "list", "--state", "invalid", "--json",
                              env=ran.env).stdout)
    assert [(b["msg_id"], b["last_error"], b["payment_states"]) for b in listed] == \
        [(invalid.msg_id, reason, {"BATCHED": 1})]

    # A decision: a person's, treasurer or admin, never the service identity's.
    service = yinqi("batches", "dissolve", invalid.msg_id, "--reason", "x", env=ran.env,
                    check=1)
    assert "the service identity may not run it" in one_line_error(service)
    auditor = yinqi("batches", "dissolve", invalid.msg_id, "--reason", "x",
                    env=ran.as_("zhao.auditor"), check=1)
    assert "needs role" in one_line_error(auditor)
    # Signed or sent: refused in one line, nothing changes.
    sent = ran.batch(ran.batch_of["C"])
    refused = yinqi("batches", "dissolve", sent.msg_id, "--reason", "x", env=treasurer,
                    check=2)
    assert one_line_error(refused) == (
        f"yinqi: error: batch {sent.msg_id} is COMPLETED: only a batch that was never signed "
        "(BUILT, or INVALID: set aside) can be dissolved; a signed one is sent as it was signed")

    out = yinqi("batches", "dissolve", invalid.msg_id, "--as", "liu.treasurer", "--reason",
                "purpose too long", env=treasurer).stdout
    assert out.splitlines() == [
        f"batch {invalid.msg_id} dissolved: 0 payment(s) back to APPROVED (the next payment "
        "run batches them again), 1 held",
        f"payment {pid} held: {reason}"]
    assert ran.payment(pid).state_reason == f"its payment order cannot be built: {reason}"
    assert (ran.batch(invalid.id).state, ran.payment(pid).state, ran.payment(pid).batch_id) == \
        ("DISSOLVED", "HELD", None)
    with ran.app.sessions() as s:
        [event] = [e for e in s.execute(select(AuditEventRow).where(
            AuditEventRow.action == "batch.dissolved")).scalars()
            if e.subject_ids == [str(invalid.id)]]
    assert (event.actor, event.details["reason"], event.details["held"]) == \
        ("liu.treasurer", "purpose too long", {str(pid): reason})
    # Nothing is left for a run: the held payment waits for a person, not for the bank.
    again = json.loads(yinqi("payments", "run", "--json", env=ran.env).stdout)
    assert (again["open_batches"], again["sends"], again["set_aside"]) == (0, 0, [])
