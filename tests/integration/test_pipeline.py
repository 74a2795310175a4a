"""The payment pipeline after approval, against a real sandbox bank process over mTLS.

One demo world (a Yinqi home, its database and a sandbox bank process) per backend, shared by
the tests of this module: each test imports its own vouchers, asserts only on its own payments
(and on invariants that hold for everything: each end-to-end ID booked once, the audit chain
intact) and leaves no open work behind, so the tests run in any order. Nothing sleeps blindly:
the pipeline's own loop (``drive``) is run until nothing is in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from conftest import BACKENDS, module_db_url
from sandbox_support import alert_only_risk_rules
from connectors.transport import RetryPolicy
from yinqi.bootstrap import App
from yinqi.cli.vouchers_cmd import run_import
from yinqi.demo.approve import approve_pending
from yinqi.demo.bank import free_port
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER, REFUSED_PAYEES, generate
from yinqi.errors import InvalidValue
from yinqi.pipeline import BankPool, Pacing, drive, form_batches, open_work, send_batches
from yinqi.pipeline import sign_batches
from yinqi.pipeline.reruns import correct_payment, rerun_batch, rerun_end_to_end_id
from yinqi.pipeline.signing import home_path, read_archived
from yinqi.states import PaymentState as S
from yinqi.store.intake import ImportSummary
from yinqi.store.models import Alert, AuditEventRow, Batch, Payment, Receipt, StatusReport
from yinqi.vouchers import end_to_end_id_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
ICBC_DEBTOR, ICBC_DEBTOR_2, CMB_DEBTOR = ("1202021209900123456", "1202021209900654321",
                                          "755912345610808")
# (name, account, bank name, CNAPS): ICBC customers (internal transfers at the ICBC sandbox),
# a CMB customer, and a payee at another bank (cleared through CNAPS).
AT_ICBC = ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996")
AT_ICBC_2 = ("李娜", "45401636481574033", "中国工商银行北京分行营业部", "102100099996")
AT_CMB = ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013")
ELSEWHERE = ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005")
CLOSED_AT_ICBC = REFUSED_PAYEES[0]           # the ICBC sandbox refuses it: account closed

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
FAST = Pacing(base=0.2, ceiling=1.0, lease=timedelta(seconds=60))
READ_TIMEOUT = 3.0                            # Yinqi's read timeout towards the sandbox
FINISHED = {S.RECEIPTED.value, S.FAILED.value}


# --- one world per backend --------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The backend under test, once per module (the conftest one is per test)."""
    yield from module_db_url(request, tmp_path_factory, "pipeline-db")


@dataclass
class Line:
    """One voucher row."""

    debtor: str
    payee: tuple[str, str, str, str]
    amount: str = "1234.56"
    category: str = "供应商"


class World:
    def __init__(self, demo: DemoWorld) -> None:
        self.demo, self.app, self.home = demo, demo.app, demo.home
        self._approvals = itertools.count(1)
        self._started = datetime.now(UTC)
        self.today = self._started.astimezone(SHANGHAI).date()

    # the bank's side

    def faults(self, **rates: object) -> None:
        self.demo.control("PUT", "faults", content=json.dumps({"seed": 1, **rates}))

    def at_bank(self) -> dict[str, list[dict]]:  # type: ignore[type-arg]
        """Every payment the sandbox ever took, by end-to-end ID (a list: it must be one)."""
        rows: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        for code in ("icbc", "cmb"):
            for row in self.demo.control("GET", f"payments/{code}"):  # type: ignore[union-attr]
                rows.setdefault(row["end_to_end_id"], []).append(row)
        return rows

    def injected(self) -> Counter[str]:
        """How many faults of each kind the sandbox injected so far."""
        ledger: dict = self.demo.control("GET", "ledger")  # type: ignore[assignment, type-arg]
        return Counter(ledger["faults_injected"])

    def assert_bank_booked_nothing_twice(self) -> None:
        doubles = {e2e: len(v) for e2e, v in self.at_bank().items() if len(v) > 1}
        assert doubles == {}
        ledger: dict = self.demo.control("GET", "ledger")  # type: ignore[assignment, type-arg]
        assert ledger["payments_booked_twice"] == 0 and ledger["balanced"], ledger

    # Yinqi's side

    def import_lines(self, lines: list[Line]) -> list[int]:
        """Vouchers of our own making, each line one payment, in line order."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(HEADER)
        tag = uuid.uuid4().hex[:8].upper()
        day = self.today.isoformat()
        for i, ln in enumerate(lines):
            w.writerow([f"T{tag}{i:04d}", day, ln.debtor, *ln.payee, ln.amount, "CNY", "货款",
                        ln.category, "否", "wu.maker", day])
        summary = self._import(out.getvalue().encode("utf-8"), tag)
        assert summary.accepted == len(lines), summary.quarantined
        e2e = [end_to_end_id_for("erp", f"T{tag}{i:04d}") for i in range(len(lines))]
        with self.app.sessions() as s:
            by_e2e = dict(s.execute(select(Payment.end_to_end_id, Payment.id)
                                    .where(Payment.end_to_end_id.in_(e2e))).all())
        assert sorted(by_e2e.values()) == sorted(summary.payment_ids)
        return [by_e2e[e] for e in e2e]

    def import_generated(self, n: int, seed: int, **kw: object) -> tuple[list[int], int]:
        """The demo's generated vouchers: (payment ids, rows quarantined)."""
        summary = self._import(generate(n, seed, day=self.today, **kw),  # type: ignore[arg-type]
                               f"generated-{seed}-{uuid.uuid4().hex[:6]}")
        return summary.payment_ids, len(summary.quarantined)

    def _import(self, data: bytes, name: str) -> ImportSummary:
        path = self.home / "vouchers" / f"{name}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return run_import(self.app, path, imported_by="test")

    def next_moment(self) -> datetime:
        """A later approval moment each time: one-time codes are never reused."""
        return self._started + timedelta(seconds=60 * next(self._approvals))

    def approve(self, ids: list[int] | None = None) -> None:
        approve_pending(self.app, self.next_moment())
        if ids is not None:
            assert {p.state for p in self.payments(ids).values()} == {S.APPROVED.value}

    def drive(self) -> None:
        """The pipeline's own loop until nothing is in flight (the deadline only guards)."""
        drive(self.app, pacing=FAST, deadline=time.monotonic() + 120)
        assert open_work(self.app) == (0, 0), "the pipeline did not finish within its deadline"

    def payments(self, ids: list[int]) -> dict[int, Payment]:
        with self.app.sessions() as s:
            rows = s.execute(select(Payment).where(Payment.id.in_(ids))).scalars().all()
            s.expunge_all()
        return {p.id: p for p in rows}

    def states(self, ids: list[int]) -> dict[int, str]:
        return {pid: p.state for pid, p in self.payments(ids).items()}

    def batch(self, batch_id: int) -> Batch:
        with self.app.sessions() as s:
            b = s.get_one(Batch, batch_id)
            s.expunge(b)
        return b

    def batches_of(self, ids: list[int]) -> list[Batch]:
        wanted = {p.batch_id for p in self.payments(ids).values()}
        assert None not in wanted
        return [self.batch(b) for b in sorted(wanted)]  # type: ignore[type-var]

    def events(self, action: str, subject: int | None = None) -> list[AuditEventRow]:
        with self.app.sessions() as s:
            rows = s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                             .order_by(AuditEventRow.seq)).scalars().all()
            s.expunge_all()
        return [r for r in rows if subject is None or str(subject) in r.subject_ids]

    def alerts(self, kind: str) -> list[Alert]:
        with self.app.sessions() as s:
            rows = s.execute(select(Alert).where(Alert.kind == kind)
                             .order_by(Alert.id)).scalars().all()
            s.expunge_all()
        return list(rows)

    def sql(self, statement: str, **params: object) -> None:
        with self.app.engine.begin() as conn:
            conn.execute(text(statement), params)

    def assert_audit_intact(self) -> None:
        with self.app.sessions() as s:
            verdict = self.app.audit.verify(s)
        assert verdict.ok, verdict


@pytest.fixture(scope="module")
def world(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("pipeline") / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, database_url=db_url, settle_after=0.2,
                    read_timeout=READ_TIMEOUT) as demo:
        yield World(demo)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The shared world, handed back with faults off and nothing left in flight."""
    world.faults()
    yield world
    world.faults()
    with world.app.sessions() as s:
        loose = s.execute(select(Payment.state, func.count()).where(
            Payment.state.in_([S.APPROVED.value, S.BATCHED.value, S.SIGNED.value]))
            .group_by(Payment.state)).all()
    if loose or open_work(world.app) != (0, 0):
        world.drive()           # carry it on, so that the next test starts clean
    assert loose == [], f"the test left payments on the way to the bank: {loose}"


def sign_all(app: App) -> list[int]:
    signed: list[int] = []
    with BankPool(app, retry=NO_WAIT) as banks:
        while got := sign_batches(app, banks, "test-signer").signed:
            signed += got
    return signed


def sha256_of(app: App, stored: str) -> str:
    """The hash of an archived file's plaintext (the file itself is encrypted at rest)."""
    return hashlib.sha256(read_archived(app, stored)).hexdigest()


# --- (a) the happy path ----------------------------------------------------------------------


def test_every_approved_payment_ends_receipted_or_failed_with_its_evidence(w: World) -> None:
    # Seed 11 puts payments to the closed ICBC account on ICBC debtors: the bank refuses them.
    ids, quarantined = w.import_generated(24, 11, bad_rows=2, refused_share=0.25)
    assert (len(ids), quarantined) == (24, 2)
    w.approve(ids)
    w.drive()

    payments = w.payments(ids)
    states = Counter(p.state for p in payments.values())
    assert set(states) == FINISHED and states[S.FAILED.value] >= 2, states
    bank = w.at_bank()
    for p in payments.values():
        if p.state == S.FAILED.value:
            # Refused on arrival (the sandbox books nothing for it), with the bank's reason.
            assert p.end_to_end_id not in bank
            assert p.state_reason == "AC04: creditor account is closed"
            assert p.creditor_account == CLOSED_AT_ICBC[1]
        else:
            [at_bank] = bank[p.end_to_end_id]
            assert (at_bank["status"], at_bank["amount_minor"]) == ("ACSC", p.amount_minor)
    w.assert_bank_booked_nothing_twice()

    receipted = sorted(pid for pid, p in payments.items() if p.state == S.RECEIPTED.value)
    with w.app.sessions() as s:
        receipts = {r.payment_id: r for r in s.execute(
            select(Receipt).where(Receipt.payment_id.in_(ids))).scalars()}
        reports = s.execute(select(StatusReport).where(StatusReport.payment_id.in_(ids))
                            ).scalars().all()
    assert sorted(receipts) == receipted
    for r in receipts.values():
        path = home_path(w.app, r.file_path)
        assert not Path(r.file_path).is_absolute() and path.is_file()
        assert r.signature_valid and sha256_of(w.app, r.file_path) == r.sha256
        assert read_archived(w.app, r.file_path).startswith(b"%PDF")
        assert not path.read_bytes().startswith(b"%PDF")  # encrypted at rest

    # The bank's status reports are kept byte for byte, their hash with them.
    assert {r.payment_id for r in reports} == set(ids)
    for r in reports:
        assert r.archive_path and not Path(r.archive_path).is_absolute()
        assert sha256_of(w.app, r.archive_path) == r.sha256
        if payments[r.payment_id].state == S.FAILED.value:
            assert (r.tx_status, r.reason_code) == ("RJCT", "AC04")

    batches = w.batches_of(ids)
    assert {b.bank for b in batches} == {"icbc-sandbox", "cmb-sandbox"}
    for b in batches:
        assert b.state == "COMPLETED" and b.send_attempts == 1
        assert b.file_path and b.file_path.startswith(f"archive/{b.bank}/")
        assert sha256_of(w.app, b.file_path) == b.file_sha256
        [signed] = w.events("batch.signed", b.id)
        [sending] = w.events("batch.sending", b.id)
        assert signed.details["sha256"] == sending.details["sha256"] == b.file_sha256
        assert w.events("batch.built", b.id) and w.events("batch.answered", b.id)

    collected = {pid for e in w.events("receipt.collected") for pid in map(int, e.subject_ids)}
    assert set(receipted) <= collected
    w.assert_audit_intact()


# --- (b) approval bypass caught at batching --------------------------------------------------


@pytest.mark.security
def test_a_payment_approved_behind_the_gate_s_back_is_held_and_never_sent(w: World) -> None:
    bypassed, edited, honest = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC),
                                               Line(ICBC_DEBTOR, ELSEWHERE, amount="880.00"),
                                               Line(CMB_DEBTOR, AT_CMB)])
    # Someone with database access skips the approvers ...
    w.sql("UPDATE payments SET state = 'APPROVED' WHERE id = :id", id=bypassed)
    w.approve([edited, honest])
    # ... and someone raises an amount after it was approved.
    w.sql("UPDATE payments SET amount_minor = amount_minor + 1000000 WHERE id = :id", id=edited)

    result = form_batches(w.app)
    assert set(result.held) == {bypassed, edited}
    assert "APPROVED without approval of level(s) 1" in result.held[bypassed]
    assert "amount or payee changed after approval" in result.held[edited]
    assert result.batched == 1
    assert w.states([bypassed, edited, honest]) == {bypassed: "HELD", edited: "HELD",
                                                    honest: "BATCHED"}
    held = {pid: a for a in w.alerts("payment.held") for pid in a.details["payment_ids"]}
    assert held[bypassed].severity == "critical" and held[edited].severity == "critical"
    assert held[bypassed].message == result.held[bypassed]
    assert held[edited].message == result.held[edited]
    moved = [e for e in w.events("payment.state", bypassed) if e.details["to"] == "HELD"]
    assert moved and moved[-1].details["reason"] == result.held[bypassed]

    w.drive()
    payments = w.payments([bypassed, edited, honest])
    bank = w.at_bank()
    assert payments[bypassed].end_to_end_id not in bank
    assert payments[edited].end_to_end_id not in bank
    assert len(bank[payments[honest].end_to_end_id]) == 1
    assert w.states([bypassed, edited, honest]) == {bypassed: "HELD", edited: "HELD",
                                                    honest: "RECEIPTED"}
    w.assert_audit_intact()


# --- (c) the signed file changed after signing -----------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("damage", ["one byte changed", "file deleted"])
def test_a_tampered_signed_file_is_never_sent(w: World, damage: str) -> None:
    [pid] = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC_2, amount="321.00")])
    w.approve([pid])
    form_batches(w.app)
    sign_all(w.app)
    [batch] = w.batches_of([pid])
    assert batch.state == "SIGNED" and batch.file_path
    path = home_path(w.app, batch.file_path)
    original = path.read_bytes()
    try:
        if damage == "file deleted":
            path.unlink()
        else:
            at = len(original) // 2
            path.write_bytes(original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1:])
        with BankPool(w.app, retry=NO_WAIT) as banks:
            refused = send_batches(w.app, banks, "test-sender", pacing=FAST)
        assert refused.blocked == [batch.id] and refused.sends == 0
        assert any(batch.msg_id in e and "no longer matches" in e for e in refused.errors)
        # A whole run refuses it the same way, finishes everything else and returns: the
        # batch waits for a person, it does not stop the pipeline.
        progress = drive(w.app, pacing=FAST, deadline=time.monotonic() + 30)
        assert batch.id in progress.sent.blocked

        after = w.batch(batch.id)
        assert (after.state, after.send_attempts) == ("SIGNED", 0)
        assert w.states([pid]) == {pid: "SIGNED"}
        alerts = [a for a in w.alerts("batch.file_tampered")
                  if a.details["batch_id"] == batch.id]
        assert len(alerts) == 1 and alerts[0].severity == "critical"
        [event, *_] = w.events("batch.file_tampered", batch.id)
        assert event.details["expected_sha256"] == batch.file_sha256
        assert not w.events("batch.sending", batch.id)
        assert w.payments([pid])[pid].end_to_end_id not in w.at_bank()
    finally:
        path.write_bytes(original)
    # With the signed bytes back, the batch goes out as it was signed.
    w.drive()
    assert w.states([pid]) == {pid: "RECEIPTED"}
    assert w.batch(batch.id).send_attempts == 1
    w.assert_audit_intact()


# --- (d) the bank's answer is lost -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["answer lost after booking", "connection reset"])
def test_an_unknown_outcome_is_settled_by_asking_the_bank(w: World, fault: str) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC), Line(ICBC_DEBTOR, ELSEWHERE),
                          Line(ICBC_DEBTOR, CLOSED_AT_ICBC), Line(CMB_DEBTOR, AT_CMB)])
    refused = ids[2]
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)
    if fault == "connection reset":
        w.faults(reset_rate=1.0)
    else:
        w.faults(timeout_after_booking_rate=1.0, timeout_hold_seconds=READ_TIMEOUT + 3)
    try:
        with BankPool(w.app, retry=NO_WAIT) as banks:
            sent = send_batches(w.app, banks, "test-sender", pacing=FAST)
    finally:
        w.faults()
    assert sent.sends == 2 and sent.outcomes == Counter({"UNKNOWN": 4}), sent
    assert set(w.states(ids).values()) == {"UNKNOWN"}
    batches = w.batches_of(ids)
    assert {(b.state, b.send_attempts) for b in batches} == {("UNKNOWN", 1)}
    payments = w.payments(ids)
    taken = [p for pid, p in payments.items() if pid != refused]
    bank = w.at_bank()
    booked = fault == "answer lost after booking"
    assert all((p.end_to_end_id in bank) == booked for p in taken)

    w.drive()
    assert w.states(ids) == {pid: "FAILED" if pid == refused else "RECEIPTED" for pid in ids}
    assert w.payments([refused])[refused].state_reason == "AC04: creditor account is closed"
    bank = w.at_bank()
    assert all(len(bank[p.end_to_end_id]) == 1 for p in taken)
    assert payments[refused].end_to_end_id not in bank
    w.assert_bank_booked_nothing_twice()
    for b in batches:
        sends = w.events("batch.sending", b.id)
        assert {e.details["sha256"] for e in sends} == {b.file_sha256}   # the same bytes
        if booked:
            # The bank had it: a status query decided, nothing was sent again.
            assert w.batch(b.id).send_attempts == 1 and len(sends) == 1
            [resolved] = w.events("batch.resolved", b.id)
            assert resolved.details["by"] == "status query"
        else:
            # The bank never got it (it said so when asked): the same bytes went again.
            assert w.batch(b.id).send_attempts == 2 and len(sends) == 2
    w.assert_audit_intact()


@pytest.mark.security
@pytest.mark.parametrize("damage", ["tampered_answer", "unsigned_answer"])
def test_a_tampered_or_unsigned_bank_answer_moves_nothing_and_is_audited(
        w: World, damage: str) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC), Line(CMB_DEBTOR, AT_CMB)])
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)
    w.faults(**{f"{damage}_rate": 1.0})
    try:
        with BankPool(w.app, retry=NO_WAIT) as banks:
            sent = send_batches(w.app, banks, "test-sender", pacing=FAST)
    finally:
        w.faults()
    # Whatever the damaged answer said, it decided nothing.
    assert sent.outcomes == Counter({"UNKNOWN": 2}), sent
    batches = w.batches_of(ids)
    for b in batches:
        [refused] = w.events("bank.answer_refused", b.id)
        assert refused.details["during"] == "send" and refused.details["reason"]
    assert len([a for a in w.alerts("bank.bad_answer")
                if any(f"batch {b.msg_id}" == a.subject for b in batches)]) == 2
    # The bank did take the orders; asking it with a sound answer settles them, once.
    w.drive()
    assert set(w.states(ids).values()) == {"RECEIPTED"}
    assert all(w.batch(b.id).send_attempts == 1 for b in batches)
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


class Killed(BaseException):
    """The worker process dies here (what SIGKILL does, minus the process)."""


@pytest.mark.parametrize("point", ["after-intent", "after-answer"])
def test_a_worker_killed_mid_send_is_carried_on_by_the_next_one(
        w: World, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from yinqi.pipeline import chaos
    from yinqi.store.types import utcnow

    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC), Line(CMB_DEBTOR, AT_CMB)])
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)

    def die(name: str) -> None:
        if name == point:
            raise Killed(name)

    monkeypatch.setattr(chaos, "point", die)
    with BankPool(w.app, retry=NO_WAIT) as banks, pytest.raises(Killed):
        send_batches(w.app, banks, "doomed-worker", pacing=FAST)
    monkeypatch.undo()
    [dead] = [b for b in w.batches_of(ids) if b.state == "SUBMITTING"]
    assert dead.send_attempts == 1
    # A killed worker releases nothing: its lease runs out on its own.
    w.sql("UPDATE batches SET claimed_by = 'doomed-worker', lease_until = :until "
          "WHERE id = :id", until=utcnow() + timedelta(seconds=1), id=dead.id)
    e2e = [p.end_to_end_id for p in w.payments(ids).values()]
    in_dead = [p.end_to_end_id for p in w.payments(ids).values() if p.batch_id == dead.id]
    assert all((e in w.at_bank()) == (point == "after-answer") for e in in_dead)

    w.drive()
    assert set(w.states(ids).values()) == {"RECEIPTED"}
    bank = w.at_bank()
    assert all(len(bank[e]) == 1 for e in e2e)
    after = w.batch(dead.id)
    sends = w.events("batch.sending", dead.id)
    assert {e.details["sha256"] for e in sends} == {dead.file_sha256}
    assert sends[0].actor == "doomed-worker"
    if point == "after-answer":
        # The bank had it: asking settled it, nothing was sent twice.
        assert after.send_attempts == 1 and len(sends) == 1
        [resolved] = w.events("batch.resolved", dead.id)
        assert resolved.actor != "doomed-worker"
    else:
        # Killed before the bytes left: the bank said it never got it; the same bytes went,
        # sent by the worker that took the batch over once the lease ran out.
        assert after.send_attempts == 2 and len(sends) == 2
        assert sends[1].actor != "doomed-worker"
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


def test_repeated_and_stale_status_reports_never_move_a_payment_back(w: World) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC), Line(ICBC_DEBTOR, CLOSED_AT_ICBC),
                          Line(CMB_DEBTOR, AT_CMB), Line(CMB_DEBTOR, ELSEWHERE)])
    w.approve(ids)
    before = w.injected()
    w.faults(duplicate_status_rate=1.0, out_of_order_status_rate=0.5)
    try:
        w.drive()
    finally:
        w.faults()
    assert w.states(ids) == {pid: "FAILED" if pid == ids[1] else "RECEIPTED" for pid in ids}
    assert w.injected()["duplicate_status"] > before["duplicate_status"]
    # Each payment went forward only: never from SETTLED back to ACCEPTED.
    for pid in ids:
        path = [e.details["to"] for e in w.events("payment.state", pid)]
        assert path.count("SETTLED") <= 1 and path.count("ACCEPTED") <= 1, path
        if "SETTLED" in path:
            assert path[path.index("SETTLED"):] == ["SETTLED", "RECEIPTED"], path
    w.assert_bank_booked_nothing_twice()


# --- (e) the bank cannot be reached ----------------------------------------------------------


@pytest.mark.parametrize("outage", ["nothing listens on the port", "maintenance window"])
def test_a_bank_out_of_reach_loses_nothing_and_the_batch_completes_later(
        w: World, outage: str) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR_2, AT_ICBC), Line(CMB_DEBTOR, AT_CMB)])
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)
    if outage == "maintenance window":
        w.faults(maintenance_rate=1.0, maintenance_retry_after=1)
        worker = w.app
    else:
        banks = {code: bank.model_copy(update={"endpoint": bank.endpoint.replace(
            f":{w.demo.bank.port}/", f":{free_port()}/")})
            for code, bank in w.app.config.banks.items()}
        worker = App(w.app.settings, config=dataclasses.replace(w.app.config, banks=banks))
    try:
        with BankPool(worker, retry=NO_WAIT) as pool:
            sent = send_batches(worker, pool, "test-sender", pacing=FAST)
    finally:
        w.faults()
        if worker is not w.app:
            worker.close()
    assert sent.sends == 2 and len(sent.errors) == 2 and not sent.outcomes, sent
    batches = w.batches_of(ids)
    # The intent was recorded; the bank certainly has nothing; nothing is lost or doubled.
    assert {(b.state, b.send_attempts) for b in batches} == {("SUBMITTING", 1)}
    assert all(b.last_error for b in batches)
    assert set(w.states(ids).values()) == {"SUBMITTING"}
    payments = w.payments(ids)
    assert not {p.end_to_end_id for p in payments.values()} & set(w.at_bank())

    w.drive()
    assert set(w.states(ids).values()) == {"RECEIPTED"}
    bank = w.at_bank()
    assert all(len(bank[p.end_to_end_id]) == 1 for p in payments.values())
    for b in batches:
        after = w.batch(b.id)
        assert (after.state, after.send_attempts, after.file_sha256) == \
            ("COMPLETED", 2, b.file_sha256)
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


# --- (f) reruns ------------------------------------------------------------------------------


def test_a_rerun_resends_only_what_the_bank_rejected(w: World) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR, CLOSED_AT_ICBC, amount="100.00"),
                          Line(ICBC_DEBTOR, AT_ICBC, amount="200.00"),
                          Line(ICBC_DEBTOR, CLOSED_AT_ICBC, amount="300.00"),
                          Line(ICBC_DEBTOR, ELSEWHERE, amount="400.00")])
    unchanged, settled_1, corrected, settled_2 = ids
    w.approve(ids)
    w.drive()
    assert w.states(ids) == {unchanged: "FAILED", settled_1: "RECEIPTED",
                             corrected: "FAILED", settled_2: "RECEIPTED"}
    [batch] = w.batches_of(ids)
    before = w.payments(ids)

    diff = correct_payment(w.app, corrected, {"creditor_name": AT_ICBC_2[0],
                                              "creditor_account": AT_ICBC_2[1]},
                           actor="ops.lead")
    assert diff["creditor_account"] == ("****2222", "****4033")
    with pytest.raises(InvalidValue, match="only payments the bank definitively rejected"):
        correct_payment(w.app, settled_1, {"purpose": "x"}, actor="ops.lead")

    result = rerun_batch(w.app, batch.msg_id, actor="ops.lead", reason="payee fixed")
    assert (result.to_send, result.to_reapprove) == ([unchanged], [corrected])
    assert result.untouched == {"RECEIPTED": 2}
    after = w.payments(ids)
    # Settled payments are not touched at all.
    for pid in (settled_1, settled_2):
        assert (after[pid].state, after[pid].end_to_end_id, after[pid].batch_id,
                after[pid].send_round) == ("RECEIPTED", before[pid].end_to_end_id, batch.id, 1)
    # The unchanged one goes straight back to APPROVED under a new end-to-end ID ...
    u = after[unchanged]
    assert (u.state, u.send_round, u.batch_id) == ("APPROVED", 2, None)
    assert u.end_to_end_id == rerun_end_to_end_id(before[unchanged].end_to_end_id, 2)
    assert u.end_to_end_id != before[unchanged].end_to_end_id and len(u.end_to_end_id) <= 35
    # ... the corrected one waits for a fresh approval.
    c = after[corrected]
    assert (c.state, c.approval_round, c.approved_digest) == \
        ("PENDING_APPROVAL", before[corrected].approval_round + 1, None)
    [event] = w.events("batch.rerun", batch.id)
    assert event.actor == "ops.lead" and event.details["reason"] == "payee fixed"
    assert event.details["resend"] == [unchanged] and event.details["reapprove"] == [corrected]
    assert event.details["new_end_to_end_ids"][str(unchanged)] == u.end_to_end_id
    assert event.details["previous_end_to_end_ids"][str(corrected)] == \
        before[corrected].end_to_end_id
    assert w.events("payment.corrected", corrected)

    w.approve([corrected])          # a later moment: new one-time codes
    w.drive()
    final = w.payments(ids)
    assert final[corrected].state == "RECEIPTED"        # the corrected payee exists
    assert final[unchanged].state == "FAILED"           # still closed: rejected again
    assert final[unchanged].batch_id not in (None, batch.id)
    bank = w.at_bank()
    # The first attempts were refused (the bank took nothing); of the reruns, the corrected
    # one was taken once under its new ID, the unchanged one refused again.
    assert not {before[pid].end_to_end_id for pid in ids[::2]} & set(bank)
    assert [r["status"] for r in bank[final[corrected].end_to_end_id]] == ["ACSC"]
    assert final[unchanged].end_to_end_id not in bank
    assert final[unchanged].state_reason == "AC04: creditor account is closed"
    for pid in (settled_1, settled_2):
        assert len(bank[final[pid].end_to_end_id]) == 1
    w.assert_bank_booked_nothing_twice()

    # Nothing left to rerun in the first batch: refused, naming what it holds.
    with pytest.raises(InvalidValue, match=r"no payment the bank definitively rejected.*"
                                           r"2 RECEIPTED"):
        rerun_batch(w.app, str(batch.id), actor="ops.lead")
    with pytest.raises(InvalidValue, match="no batch 'NOSUCHBATCH'"):
        rerun_batch(w.app, "NOSUCHBATCH", actor="ops.lead")
    assert len(w.events("batch.rerun", batch.id)) == 1
    w.assert_audit_intact()


def test_a_batch_that_fully_settled_cannot_be_rerun(w: World) -> None:
    ids = w.import_lines([Line(CMB_DEBTOR, AT_CMB), Line(CMB_DEBTOR, ELSEWHERE)])
    w.approve(ids)
    w.drive()
    [batch] = w.batches_of(ids)
    with pytest.raises(InvalidValue) as refused:
        rerun_batch(w.app, batch.msg_id, actor="ops.lead")
    assert str(refused.value) == (f"batch {batch.msg_id} has no payment the bank definitively "
                                  "rejected; nothing to rerun (2 RECEIPTED)")
    assert w.states(ids) == {pid: "RECEIPTED" for pid in ids}
    assert not w.events("batch.rerun", batch.id)


# --- (g) two workers, one database -----------------------------------------------------------


def test_two_workers_on_one_database_never_send_a_batch_twice(w: World) -> None:
    ids: list[int] = []
    for round_ in range(4):
        lines = [Line(d, p, amount=f"{100 + 7 * round_ + i}.00")
                 for i, (d, p) in enumerate([(ICBC_DEBTOR, AT_ICBC), (ICBC_DEBTOR, ELSEWHERE),
                                             (ICBC_DEBTOR_2, AT_ICBC_2), (CMB_DEBTOR, AT_CMB),
                                             (CMB_DEBTOR, ELSEWHERE)])]
        got = w.import_lines(lines)
        w.approve(got)
        if round_ < 3:
            form_batches(w.app)  # separate batches per round; the last round races at batching
        ids += got

    start = threading.Barrier(2)

    def worker(name: str) -> None:
        app = App(w.app.settings)      # its own engine and connections, like another process
        try:
            start.wait(timeout=60)
            drive(app, worker=name, pacing=FAST, deadline=time.monotonic() + 120)
        finally:
            app.close()

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(worker, "worker-a"), pool.submit(worker, "worker-b")]:
            f.result()
    assert open_work(w.app) == (0, 0)

    assert set(w.states(ids).values()) == {"RECEIPTED"}
    batches = w.batches_of(ids)
    assert len(batches) == 12
    for b in batches:
        assert b.send_attempts == 1, (b.msg_id, b.send_attempts)
        assert len(w.events("batch.sending", b.id)) == 1
    bank = w.at_bank()
    payments = w.payments(ids)
    assert all(len(bank[p.end_to_end_id]) == 1 for p in payments.values())
    with w.app.sessions() as s:
        receipts = s.execute(select(Receipt.payment_id, func.count()).where(
            Receipt.payment_id.in_(ids)).group_by(Receipt.payment_id)).all()
    assert sorted(receipts) == [(pid, 1) for pid in sorted(ids)]
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


# --- (h) one bank's certificate, one batch that cannot be built ------------------------------


def expired_channel(w: World, bank: str) -> App:
    """The world as a worker whose client certificate for ``bank`` expired yesterday (issued
    by the sandbox's own CA, so nothing else about it is wrong)."""
    from connectors.sandbox.pki import issue_client_cert

    cert, key = w.home / f"client-{bank}-expired.pem", w.home / f"client-{bank}-expired.key"
    issue_client_cert(w.home / "sandbox", "演示科技有限公司", cert, key, days=30,
                      not_before=datetime.now(UTC) - timedelta(days=31))
    banks = {code: cfg.model_copy(update={"client_cert": cert, "client_key": key})
             if code == bank else cfg for code, cfg in w.app.config.banks.items()}
    return App(w.app.settings, config=dataclasses.replace(w.app.config, banks=banks))


def open_alerts(w: World, kind: str) -> list[Alert]:
    return [a for a in w.alerts(kind) if a.acknowledged_at is None]


def acknowledge(w: World, kind: str) -> None:
    from sqlalchemy import update

    from yinqi.store.types import utcnow

    with w.app.sessions.begin() as s:
        s.execute(update(Alert).where(Alert.kind == kind, Alert.acknowledged_at.is_(None))
                  .values(acknowledged_at=utcnow(), acknowledged_by="test"))


def test_an_expired_client_certificate_stops_only_its_bank_and_is_alerted_once(
        w: World) -> None:
    acknowledge(w, "bank.certificate")
    icbc, cmb = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC, amount="511.00"),
                                Line(CMB_DEBTOR, AT_CMB, amount="512.00")])
    w.approve([icbc, cmb])
    broken = expired_channel(w, "cmb-sandbox")
    try:
        started = time.monotonic()
        runs = [drive(broken, pacing=FAST, deadline=time.monotonic() + 90) for _ in range(2)]
        # Each run ends when the good bank is done: it does not wait for the broken one.
        assert time.monotonic() - started < 60
    finally:
        broken.close()

    assert w.states([icbc, cmb]) == {icbc: "RECEIPTED", cmb: "SIGNED"}
    [batch] = w.batches_of([cmb])
    # Signed (that needs our signing key, not the channel), not sent, the reason kept.
    assert (batch.state, batch.send_attempts) == ("SIGNED", 0)
    assert batch.last_error and batch.last_error.startswith(
        "bank cmb-sandbox: our client certificate (")
    assert "EXPIRED on" in batch.last_error and "\n" not in batch.last_error
    assert not w.events("batch.sending", batch.id)
    for run in runs:
        assert batch.id in run.waiting()
        # One readable line for the bank, however many of its batches met it.
        assert [p for p in run.problems() if "cmb-sandbox" in p] == [batch.last_error]
    [alert] = open_alerts(w, "bank.certificate")
    assert (alert.subject, alert.severity, alert.details["bank"]) == \
        ("bank cmb-sandbox", "critical", "cmb-sandbox")
    assert alert.message == batch.last_error

    # With the certificate renewed (the world's own), the next run sends it.
    w.drive()
    assert w.states([icbc, cmb]) == {icbc: "RECEIPTED", cmb: "RECEIPTED"}
    assert w.batch(batch.id).send_attempts == 1
    assert len(open_alerts(w, "bank.certificate")) == 1
    acknowledge(w, "bank.certificate")
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


@pytest.mark.parametrize("waiting", ["accepted by the bank", "outcome unknown"])
def test_an_expired_client_certificate_is_alerted_once_while_asking_for_statuses(
        w: World, waiting: str) -> None:
    from yinqi.pipeline import collect_receipts, poll_batches

    acknowledge(w, "bank.certificate")
    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC, amount="521.00"),
                          Line(CMB_DEBTOR, AT_CMB, amount="522.00")])
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)
    if waiting == "outcome unknown":
        w.faults(reset_rate=1.0)
    try:
        with BankPool(w.app, retry=NO_WAIT) as banks:
            send_batches(w.app, banks, "test-sender", pacing=FAST)
    finally:
        w.faults()
    by_bank = {b.bank: b for b in w.batches_of(ids)}
    good, bad = by_bank["icbc-sandbox"], by_bank["cmb-sandbox"]
    state = "UNKNOWN" if waiting == "outcome unknown" else "ACCEPTED"
    assert {good.state, bad.state} == {state}

    broken = expired_channel(w, "cmb-sandbox")
    try:
        for round_ in range(2):
            w.sql("UPDATE batches SET next_poll_at = NULL WHERE id IN (:a, :b)",
                  a=good.id, b=bad.id)
            with BankPool(broken, retry=NO_WAIT) as banks:
                asked = (send_batches if state == "UNKNOWN" else poll_batches)(
                    broken, banks, "test-poller", pacing=FAST)
            # The good bank was asked; the broken one's batch waits with the reason.
            assert asked.blocked == [bad.id] and asked.queries >= (round_ == 0), asked
            assert asked.errors == [w.batch(bad.id).last_error]
        after = w.batch(bad.id)
        assert after.state == state and "EXPIRED on" in (after.last_error or "")
        assert w.batch(good.id).last_error is None
        [alert] = open_alerts(w, "bank.certificate")
        assert alert.subject == "bank cmb-sandbox"

        # Receipts too: the good bank's are collected, the broken one's wait (no new alert).
        drive(w.app, pacing=FAST, deadline=time.monotonic() + 60, receipts=False)
        assert set(w.states(ids).values()) == {"SETTLED"}
        with BankPool(broken, retry=NO_WAIT) as banks:
            got = collect_receipts(broken, banks, actor="test-collector")
        assert got.collected == 1 and [e for e in got.errors if "cmb-sandbox" in e]
        assert len(open_alerts(w, "bank.certificate")) == 1
    finally:
        broken.close()
    assert w.states(ids) == {ids[0]: "RECEIPTED", ids[1]: "SETTLED"}
    w.drive()
    assert set(w.states(ids).values()) == {"RECEIPTED"}
    acknowledge(w, "bank.certificate")
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()


@pytest.mark.security
def test_a_status_query_answered_with_a_bad_signature_is_refused_and_alerted_once(
        w: World) -> None:
    ids = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC, amount="541.00")])
    w.approve(ids)
    form_batches(w.app)
    sign_all(w.app)
    # The bank books it and the answer is lost: only a status query can settle it.
    w.faults(timeout_after_booking_rate=1.0, timeout_hold_seconds=READ_TIMEOUT + 3)
    try:
        with BankPool(w.app, retry=NO_WAIT) as banks:
            send_batches(w.app, banks, "test-sender", pacing=FAST)
    finally:
        w.faults()
    [batch] = w.batches_of(ids)
    assert batch.state == "UNKNOWN"
    w.faults(tampered_answer_rate=1.0)
    try:
        for _ in range(2):
            w.sql("UPDATE batches SET next_poll_at = NULL WHERE id = :id", id=batch.id)
            with BankPool(w.app, retry=NO_WAIT) as banks:
                asked = send_batches(w.app, banks, "test-sender", pacing=FAST)
            assert asked.sends == 0 and asked.errors
    finally:
        w.faults()
    assert w.batch(batch.id).state == "UNKNOWN"
    refused = w.events("bank.answer_refused", batch.id)
    assert [e.details["during"] for e in refused] == ["status query", "status query"]
    assert len([a for a in open_alerts(w, "bank.bad_answer")
                if a.subject == f"batch {batch.msg_id}"]) == 1
    w.drive()
    assert w.states(ids) == {ids[0]: "RECEIPTED"}
    w.assert_audit_intact()


def test_a_batch_whose_file_cannot_be_built_is_set_aside_and_dissolved(w: World) -> None:
    from yinqi.pipeline.dissolve import dissolve_batch

    # A payment the bank rejected, corrected with a purpose pain.001 cannot carry: intake
    # allows 140 characters, a correction 200 (and the purpose needs no new approval).
    [bad] = w.import_lines([Line(ICBC_DEBTOR, CLOSED_AT_ICBC, amount="531.00")])
    w.approve([bad])
    w.drive()
    [failed] = w.batches_of([bad])
    correct_payment(w.app, bad, {"purpose": "货款" * 80}, actor="ops.lead")
    assert rerun_batch(w.app, failed.msg_id, actor="ops.lead").to_send == [bad]
    same, other = w.import_lines([Line(ICBC_DEBTOR, AT_ICBC, amount="532.00"),
                                  Line(CMB_DEBTOR, AT_CMB, amount="533.00")])
    w.approve([same, other])

    runs = [drive(w.app, pacing=FAST, deadline=time.monotonic() + 90) for _ in range(2)]
    assert w.states([bad, same, other]) == {bad: "BATCHED", same: "BATCHED",
                                            other: "RECEIPTED"}
    [invalid] = w.batches_of([bad, same])
    e2e = w.payments([bad])[bad].end_to_end_id
    reason = f"payment '{e2e}': purpose has 160 characters; pain.001 allows at most 140"
    assert (invalid.state, invalid.file_path, invalid.last_error) == ("INVALID", None, reason)
    # Set aside once, with one readable line; the second run did not try it again.
    assert runs[0].signed.set_aside == [invalid.id] and runs[1].signed.set_aside == []
    assert f"batch {invalid.msg_id} set aside: {reason}" in runs[0].problems()
    [alert] = [a for a in w.alerts("batch.invalid_file")
               if a.subject == f"batch {invalid.msg_id}"]
    assert reason in alert.message and alert.details["payments"] == 2
    [event] = w.events("batch.set_aside", invalid.id)
    assert event.details["reason"] == reason
    assert not w.events("batch.signed", invalid.id)
    assert open_work(w.app) == (0, 0)

    with pytest.raises(InvalidValue, match="needs a reason"):
        dissolve_batch(w.app, invalid.msg_id, actor="ops.lead", reason=" ")
    out = dissolve_batch(w.app, invalid.msg_id, actor="ops.lead", reason="purpose too long")
    assert (out.returned, list(out.held)) == ([same], [bad])
    assert w.states([bad, same]) == {bad: "HELD", same: "APPROVED"}
    assert w.payments([bad])[bad].state_reason == \
        f"its payment order cannot be built: {reason}"
    assert w.payments([same])[same].batch_id is None
    assert w.batch(invalid.id).state == "DISSOLVED"
    [dissolved] = w.events("batch.dissolved", invalid.id)
    assert (dissolved.actor, dissolved.details["reason"]) == ("ops.lead", "purpose too long")
    with pytest.raises(InvalidValue, match="is DISSOLVED: only a batch that was never signed"):
        dissolve_batch(w.app, invalid.msg_id, actor="ops.lead", reason="again")
    [sent] = w.batches_of([other])
    with pytest.raises(InvalidValue, match="is COMPLETED"):
        dissolve_batch(w.app, sent.msg_id, actor="ops.lead", reason="too late")

    # The rest is batched anew and sent; the held payment stays out of every batch.
    w.drive()
    assert w.states([bad, same]) == {bad: "HELD", same: "RECEIPTED"}
    assert w.payments([bad])[bad].batch_id is None
    [rebatched] = w.batches_of([same])
    assert rebatched.id != invalid.id and rebatched.state == "COMPLETED"
    assert e2e not in w.at_bank()
    w.assert_bank_booked_nothing_twice()
    w.assert_audit_intact()
