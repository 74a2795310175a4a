"""`yinqi statements import|fetch` and `yinqi reconcile ...` as an operator runs them in the
morning, against a real sandbox bank process.

One demo world per backend for the module: a few payments run to their receipts, the bank
day closed, and its statements fetched twice with the command (the ``morning`` fixture). The
tests only look at what that left, or add their own statement files for an account no
company config knows (dated years back), so they hold in any order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cli_support import as_user, yinqi
from conftest import BACKENDS, module_db_url
from sandbox_support import alert_only_risk_rules
from yinqi.cli.vouchers_cmd import run_import
from yinqi.demo.approve import approve_pending
from yinqi.demo.bank import SANDBOX_DEFAULT
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER, REFUSED_PAYEES
from yinqi.pipeline import Pacing, drive, open_work
from yinqi.recon import write_off
from yinqi.store.models import AuditEventRow, Payment

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ICBC_DEBTOR, CMB_DEBTOR = "1202021209900123456", "755912345610808"
AT_ICBC = ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996")
AT_CMB = ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013")
ELSEWHERE = ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005")
CLOSED = REFUSED_PAYEES[0]
LINES = [(ICBC_DEBTOR, AT_ICBC, "120.00"), (ICBC_DEBTOR, ELSEWHERE, "130.00"),
         (ICBC_DEBTOR, CLOSED, "110.00"), (CMB_DEBTOR, AT_CMB, "310.00"),
         (CMB_DEBTOR, ELSEWHERE, "320.00")]
# No company config knows these: the import test's own.
OUTSIDE, OUTSIDE_2 = "6214830000004242", "6214830000005353"
MASKED = re.compile(r"^\*{4}\d{4}$")
RUN_KEYS = {"first", "last", "payments", "lines", "matches", "matched_lines", "reconciled",
            "returned", "unmatched_payments", "unmatched_lines", "new_exceptions",
            "match_rate", "seconds"}


def funding() -> dict[str, Decimal]:
    spec = tomllib.loads(SANDBOX_DEFAULT.read_text(encoding="utf-8"))
    return {a["number"]: Decimal(a["balance"]) for bank in spec["banks"].values()
            for a in bank["accounts"] if "balance" in a}


def statement(account: str, statement_id: str, sequence: int, day: date, opening: str,
              entries: Sequence[tuple[str, str | None]], *, closing: str | None = None) -> str:
    """One day's camt.053 ``Stmt``; entries are (signed amount, payee name); ``closing``
    defaults to one that adds up."""
    start = Decimal(opening)
    end = start + sum((Decimal(a) for a, _ in entries), Decimal(0)) if closing is None \
        else Decimal(closing)

    def balance(code: str, amount: Decimal) -> str:
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
                f'<Amt Ccy="CNY">{abs(amount):.2f}</Amt>'
                f"<CdtDbtInd>{'CRDT' if amount >= 0 else 'DBIT'}</CdtDbtInd>"
                f"<Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")

    out = []
    for n, (amount, name) in enumerate(entries, start=1):
        value = Decimal(amount)
        sign, role = ("CRDT", "Dbtr") if value > 0 else ("DBIT", "Cdtr")
        parties = f"<RltdPties><{role}><Pty><Nm>{escape(name)}</Nm></Pty></{role}></RltdPties>" \
            if name else ""
        out.append(
            f'<Ntry><NtryRef>E{n}</NtryRef><Amt Ccy="CNY">{abs(value):.2f}</Amt>'
            f"<CdtDbtInd>{sign}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>{day.isoformat()}</Dt></BookgDt><ValDt><Dt>{day.isoformat()}</Dt>"
            f"</ValDt><AcctSvcrRef>C{n:04d}{statement_id[-8:]}</AcctSvcrRef>"
            f'<NtryDtls><TxDtls><Amt Ccy="CNY">{abs(value):.2f}</Amt>'
            f"<CdtDbtInd>{sign}</CdtDbtInd>{parties}</TxDtls></NtryDtls></Ntry>")
    return (f"<Stmt><Id>{statement_id}</Id><ElctrncSeqNb>{sequence}</ElctrncSeqNb>"
            f"<CreDtTm>{day.isoformat()}T18:00:00+08:00</CreDtTm>"
            f"<FrToDt><FrDtTm>{day.isoformat()}T00:00:00+08:00</FrDtTm>"
            f"<ToDtTm>{day.isoformat()}T23:59:59+08:00</ToDtTm></FrToDt>"
            f"<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>"
            + balance("OPBD", start) + balance("CLBD", end) + "".join(out) + "</Stmt>")


def camt053(*statements: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>M{uuid.uuid4().hex[:16]}</MsgId>"
            "<CreDtTm>2021-03-01T18:00:00+08:00</CreDtTm></GrpHdr>"
            + "".join(statements) + "</BkToCstmrStmt></Document>\n").encode("utf-8")


def one_line_error(proc: Any) -> str:
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert "Traceback" not in proc.stderr
    return str(proc.stderr.strip())


# --- one world per backend --------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The backend under test, once per module (the conftest one is per test)."""
    yield from module_db_url(request, tmp_path_factory, "reconcile-cli-db")


@dataclass
class Morning:
    world: DemoWorld
    env: dict[str, str]
    day: date
    receipted: list[int]
    fetched: dict[str, Any]
    fetched_again: dict[str, Any]

    def cli(self, *args: str, check: int | None = 0, person: str | None = None) -> Any:
        """Run yinqi as the service identity, or as ``person`` (a real session)."""
        return yinqi(*args, env=as_user(self.env, person) if person else self.env, check=check)

    def events(self, action: str) -> list[AuditEventRow]:
        with self.world.app.sessions() as s:
            rows = s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                             .order_by(AuditEventRow.seq)).scalars().all()
            s.expunge_all()
        return list(rows)


@pytest.fixture(scope="module")
def morning(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Morning]:
    home = tmp_path_factory.mktemp("reconcile-cli") / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, database_url=db_url, settle_after=0.2) as world:
        settings = world.app.settings
        assert settings.master_secret is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
        env.update(YINQI_HOME=str(settings.home),
                   YINQI_DATABASE_URL=settings.resolved_database_url,
                   YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
                   YINQI_CONFIG_DIR=str(settings.config_dir), COLUMNS="200")

        def bank_now(advance: float = 0) -> date:
            answer = world.control("POST", "clock", json={"advance_seconds": advance})
            return datetime.fromisoformat(answer["now"]).astimezone(SHANGHAI).date()

        day = bank_now()          # the sandbox starts on a business morning
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(HEADER)
        for i, (debtor, payee, amount) in enumerate(LINES):
            w.writerow([f"RC{i:04d}", day.isoformat(), debtor, *payee, amount, "CNY", "货款",
                        "供应商", "否", "wu.maker", day.isoformat()])
        file = home / "vouchers.csv"
        file.write_text(out.getvalue(), encoding="utf-8")
        ids = run_import(world.app, file, imported_by="test").payment_ids
        assert len(ids) == len(LINES)
        approve_pending(world.app, datetime.now(UTC) + timedelta(seconds=60))
        drive(world.app, pacing=Pacing(base=0.2, ceiling=1.0),
              deadline=time.monotonic() + 120)
        assert open_work(world.app) == (0, 0)
        with world.app.sessions() as s:
            receipted = sorted(s.execute(select(Payment.id).where(
                Payment.id.in_(ids), Payment.state == "RECEIPTED")).scalars())
        assert len(receipted) == len(LINES) - 1       # the closed account is refused

        assert bank_now(86_400) > day                 # the bank's day closes
        args = ("statements", "fetch", "--from", day.isoformat(), "--to", day.isoformat(),
                "--json")
        fetched = json.loads(yinqi(*args, env=env).stdout)
        again = json.loads(yinqi(*args, env=env).stdout)
        yield Morning(world, env, day, receipted, fetched, again)


# --- statements ---------------------------------------------------------------------------------


def test_statements_fetch_takes_each_account_s_statement_in_once(morning: Morning) -> None:
    accounts = len(funding())
    first, again = morning.fetched, morning.fetched_again
    assert set(first) == {"accepted", "quarantined", "duplicates", "errors"}
    assert len(first["accepted"]) == accounts
    assert (first["quarantined"], first["duplicates"], first["errors"]) == ([], [], [])
    # Delivered again: recognised, nothing new.
    assert (again["accepted"], again["quarantined"], again["errors"]) == ([], [], [])
    assert sorted(d["already_as"] for d in again["duplicates"]) == sorted(first["accepted"])
    assert all(d["statement_id"] for d in again["duplicates"])


def test_statements_import_accepts_recognises_and_quarantines(morning: Morning,
                                                              tmp_path: Path) -> None:
    # One file, two statements of an account no config knows: one adds up, one is 5.00 off.
    # A letter before the hex: an ID whose hex came out all digits ("CLI-4096812377") is an
    # account number to the masking, and is echoed back as "CLI-****2377".
    good, broken = (f"CLI-S{uuid.uuid4().hex[:10].upper()}" for _ in range(2))
    file = tmp_path / "statements.xml"
    file.write_bytes(camt053(
        statement(OUTSIDE, good, 3, date(2021, 3, 1), "500.00",
                  [("-20.00", "北京华信科技股份有限公司"), ("80.00", "赵敏")]),
        statement(OUTSIDE_2, broken, 1, date(2021, 3, 1), "100.00", [("-10.00", "赵敏")],
                  closing="95.00")))
    # A quarantined statement is in the JSON; the exit code is not asserted here (see the
    # report: 0 with --json, 1 without).
    proc = morning.cli("statements", "import", str(file), "--json", check=None)
    got = json.loads(proc.stdout)
    assert set(got) == {"file", "accepted", "quarantined", "duplicates"}
    assert got["file"] == str(file) and len(got["accepted"]) == 1 and got["duplicates"] == []
    [pk] = got["accepted"]
    [q] = got["quarantined"]
    assert q["reason"].startswith("balance: ") and "95.00" in q["reason"]

    # The same file again: both recognised, nothing new, exit 0.
    again = json.loads(morning.cli("statements", "import", str(file), "--json").stdout)
    assert (again["accepted"], again["quarantined"]) == ([], [])
    assert sorted(again["duplicates"], key=lambda d: d["already_as"]) == \
        [{"statement_id": good, "already_as": pk},
         {"statement_id": broken, "already_as": q["statement"]}]
    plain = morning.cli("statements", "import", str(file)).stdout
    assert "0 accepted, 0 quarantined, 2 already received" in plain


# --- reconcile ----------------------------------------------------------------------------------


def test_reconcile_run_report_exceptions_and_write_off(morning: Morning,
                                                       tmp_path: Path) -> None:
    d = morning.day.isoformat()
    funded = funding()
    run = json.loads(morning.cli("reconcile", "run", "--from", d, "--to", d, "--json").stdout)
    assert set(run) == RUN_KEYS and (run["first"], run["last"]) == (d, d)
    assert run["reconciled"] == run["payments"] == len(morning.receipted)
    assert run["unmatched_payments"] == 0 and run["returned"] == 0
    assert run["unmatched_lines"] == run["new_exceptions"] == len(funded)
    with morning.world.app.sessions() as s:
        states = set(s.execute(select(Payment.state).where(
            Payment.id.in_(morning.receipted))).scalars())
    assert states == {"RECONCILED"}

    workbook = tmp_path / "report.xlsx"
    proc = morning.cli("reconcile", "report", "--date", d, "--xlsx", str(workbook), "--json")
    rows = json.loads(proc.stdout)
    assert workbook.is_file()
    assert len(rows) == len(funded)
    assert all(MASKED.match(r["account"]) for r in rows)
    assert not [n for n in funded if n in proc.stdout]
    by_tail = {r["account"]: r for r in rows}
    for number, amount in funded.items():
        r = by_tail[f"****{number[-4:]}"]
        assert Decimal(r["difference"]) == amount and r["open_exceptions"] == 1
        assert r["lines"] == r["matched_lines"] + r["unmatched_lines"] + r["written_off_lines"]

    listed = morning.cli("reconcile", "exceptions", "list", "--json")
    exceptions = json.loads(listed.stdout)
    assert not [n for n in funded if n in listed.stdout]
    ours = [e for e in exceptions if e["day"] == d]
    assert len(ours) == len(funded)
    assert all(MASKED.match(e["account"]) and e["side"] == "line" for e in ours)
    assert sorted(Decimal(e["amount"]) for e in ours) == sorted(funded.values())

    # One written off with the command, the others as the treasurer would in the same way
    # (in process: each command start costs seconds).
    reason = "opening balance: the sandbox bank funded the account"
    proc = morning.cli("reconcile", "exceptions", "write-off", str(ours[0]["id"]), "--as",
                       "liu.treasurer", "--reason", reason, person="liu.treasurer")
    assert proc.stdout.strip() == f"exception #{ours[0]['id']}: written off"
    for e in ours[1:]:
        write_off(morning.world.app, e["id"], actor="liu.treasurer", reason=reason)
    done = json.loads(morning.cli("reconcile", "exceptions", "list", "--status", "written_off",
                                  "--json").stdout)
    assert {e["id"] for e in ours} <= {e["id"] for e in done}
    assert all(MASKED.match(e["account"]) for e in done)
    offs = [e for e in morning.events("reconcile.written_off")
            if int(e.subject_ids[0]) in {x["id"] for x in ours}]
    assert len(offs) == len(ours) and {e.actor for e in offs} == {"liu.treasurer"}
    assert {e.details["reason"] for e in offs} == {reason}

    rows = json.loads(morning.cli("reconcile", "report", "--date", d, "--json").stdout)
    assert {r["difference"] for r in rows} == {"0.00"}
    assert {r["open_exceptions"] for r in rows} == {0}

    # Refused in one line, exit 2: written off already, or no reason given.
    first = str(ours[0]["id"])
    msg = one_line_error(morning.cli("reconcile", "exceptions", "write-off", first, "--as",
                                     "liu.treasurer", "--reason", "again", check=2,
                                     person="liu.treasurer"))
    assert f"no open exception #{first}" in msg
    msg = one_line_error(morning.cli("reconcile", "exceptions", "write-off", first, "--as",
                                     "liu.treasurer", "--reason", "  ", check=2,
                                     person="liu.treasurer"))
    assert "reason" in msg


@pytest.mark.parametrize("args", [
    ("reconcile", "run", "--from", "2026-11-02", "--to", "2026-02-30", "--json"),
    ("reconcile", "report", "--date", "26.11.2026", "--json"),
])
def test_a_bad_date_exits_2_with_one_line(morning: Morning, args: tuple[str, ...]) -> None:
    msg = one_line_error(morning.cli(*args, check=2))
    assert "--" in msg and ("date" in msg.lower() or "format" in msg.lower()), msg
