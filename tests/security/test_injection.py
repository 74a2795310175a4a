"""Text that looks like SQL, markup or a spreadsheet formula is data, wherever it goes.

A voucher file whose payee names and purposes are SQL, HTML, markdown links and spreadsheet
formulas goes through the real intake (``yinqi vouchers import`` in its own process, on both
databases): the rows are stored and read back byte for byte, no table is touched, the CLI's
JSON shows them as strings. In the Prefect UI (markdown artifacts, and table artifacts whose
text cells the UI renders as markdown) they show as the literal text, never as a tag or a
link. In the reconciliation workbook no cell is a formula. And every export of the code base
goes through ``yinqi.exports``, which is what makes that hold for exports still to come.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import markdown_it
import pytest
from openpyxl import load_workbook
from sqlalchemy import func, inspect, select

from cli_support import yinqi
from yinqi.bootstrap import App
from yinqi.demo.vouchers import HEADER, PAYEES
from yinqi.exports import safe_text, write_csv
from yinqi.store.models import Payment, QuarantinedRow, ReconException, User, Voucher
from yinqi.vouchers import end_to_end_id_for

REPO = Path(__file__).resolve().parents[2]
HOSTILE = [
    "'; DROP TABLE payments; --",
    "Robert'); DELETE FROM users;--",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    '=HYPERLINK("http://x","y")',
    "@SUM(1+1)",
    "+cmd|' /C calc'!A0",
    "-2+3",
]
# Rows the intake refuses, whose reasons quote the hostile cell (a category it does not know).
BAD_CATEGORIES = ["<script>alert(1)</script>", '=HYPERLINK("http://x","y")']
DEBTOR = "1202021209900123456"  # an account of the shipped config
SOURCE = "erp"
_MD = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def ref(i: int) -> str:
    return f"INJ{i:04d}"


def voucher_file(folder: Path) -> Path:
    """Each hostile text once as a payee name and once as a purpose; two refused rows."""
    day = datetime.now(UTC).date().isoformat()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for i, name in enumerate(HOSTILE):
        _, account, bank, cnaps = PAYEES[i % len(PAYEES)]
        purpose = HOSTILE[(i + 4) % len(HOSTILE)]
        w.writerow([ref(i), day, DEBTOR, name, account, bank, cnaps, f"{100 + i}.00", "CNY",
                    purpose, "供应商", "否", "wu.maker", day])
    for k, category in enumerate(BAD_CATEGORIES):
        _, account, bank, cnaps = PAYEES[k]
        w.writerow([ref(100 + k), day, DEBTOR, "张伟", account, bank, cnaps, "10.00", "CNY",
                    "货款", category, "否", "wu.maker", day])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hostile.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def cli_env(app: App) -> dict[str, str]:
    settings = app.settings
    assert settings.master_secret is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    env.update(YINQI_HOME=str(settings.home), YINQI_DATABASE_URL=settings.resolved_database_url,
               YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
               YINQI_ACTOR="service", COLUMNS="200")
    return env


def rendered(markdown: str) -> str:
    return _MD.render(markdown)


_FORBIDDEN = re.compile(r"<\s*(a|img|script|iframe|svg|object|embed|code|em|strong)\b", re.I)


def assert_inert(markdown: str) -> None:
    """Rendered, the markdown has no link, image, script or other tag the text asked for."""
    out = rendered(markdown)
    assert not _FORBIDDEN.search(out), out


# --- the intake, the store and the CLI ------------------------------------------------------------


def test_hostile_vouchers_are_stored_and_shown_as_data(app: App, tmp_path: Path) -> None:
    tables = set(inspect(app.engine).get_table_names())
    with app.sessions() as s:
        users = s.execute(select(func.count()).select_from(User)).scalar_one()
    env = cli_env(app)

    out = json.loads(yinqi("vouchers", "import", str(voucher_file(tmp_path)), "--json",
                           env=env).stdout)
    assert out["accepted"] == len(HOSTILE) and out["payments"] == len(HOSTILE)
    reasons = [q["reason"] for q in out["quarantined"]]
    assert len(reasons) == len(BAD_CATEGORIES)
    for category, reason in zip(BAD_CATEGORIES, reasons, strict=True):
        assert repr(category) in reason  # quoted as the text it is

    # Nothing ran: every table is there, no user is gone, the audit chain holds.
    assert set(inspect(app.engine).get_table_names()) == tables
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == users
        assert app.audit.verify(s).ok
        payments = {p.end_to_end_id: p for p in s.execute(select(Payment)).scalars()}
        vouchers = {v.external_ref: v for v in s.execute(select(Voucher)).scalars()}
        quarantined = list(s.execute(select(QuarantinedRow)).scalars())
    # Stored and read back byte for byte, through the encrypted columns too.
    assert len(payments) == len(HOSTILE)
    for i, name in enumerate(HOSTILE):
        p = payments[end_to_end_id_for(SOURCE, ref(i))]
        purpose = HOSTILE[(i + 4) % len(HOSTILE)]
        assert p.creditor_name.encode() == name.encode()
        assert p.purpose.encode() == purpose.encode()
        assert vouchers[ref(i)].payload["收款户名"] == name
        assert vouchers[ref(i)].payload["用途"] == purpose
    assert sorted(q.payload["类别"] for q in quarantined) == sorted(BAD_CATEGORIES)

    # The CLI's JSON carries them as strings, exactly.
    listed = json.loads(yinqi("payments", "list", "--json", "--limit", "100", env=env).stdout)
    assert {r["creditor_name"] for r in listed} == set(HOSTILE)
    assert {r["end_to_end_id"]: r["creditor_name"] for r in listed} == {
        end_to_end_id_for(SOURCE, ref(i)): name for i, name in enumerate(HOSTILE)}
    # The table output prints them literally too (no console markup swallowed a bracket).
    table = yinqi("payments", "list", "--limit", "100", env=env).stdout
    assert "[click](javascript:alert(1))" in table and "<script>alert(1)</script>" in table


def test_the_reconciliation_workbook_has_no_formula(app: App, tmp_path: Path) -> None:
    from yinqi.cli.vouchers_cmd import run_import
    from yinqi.recon import daily_report, export_xlsx

    run_import(app, voucher_file(tmp_path), imported_by="wu.maker")
    day = date.today()
    with app.sessions.begin() as s:
        # As the reconciliation queues a payment the statements never showed.
        for p in s.execute(select(Payment)).scalars():
            s.add(ReconException(payment_id=p.id, account=DEBTOR, day=day,
                                 amount_minor=-p.amount_minor, currency=p.currency,
                                 candidates=[], status="open"))
    path = export_xlsx(app, daily_report(app, day), tmp_path / "reconciliation.xlsx")
    book = load_workbook(path)  # formulas as written, not values computed by a spreadsheet
    texts: list[str] = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    texts.append(cell.value)
    sheet = book["exceptions"]
    header = [c.value for c in sheet[1]]
    shown = {r[header.index("counterparty")] for r in sheet.iter_rows(min_row=2,
                                                                     values_only=True)}
    assert shown == {safe_text(name) for name in HOSTILE}
    for name in HOSTILE:
        if name.startswith(("=", "+", "-", "@")):
            assert "'" + name in shown  # a literal, shown as typed
    accounts = {r[header.index("account")] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert accounts == {"****3456"}
    assert DEBTOR not in "\n".join(texts)
    # The same rows as CSV: every formula-looking cell starts with an apostrophe.
    data = write_csv([{"counterparty": n} for n in HOSTILE], ["counterparty"])
    cells = [r[0] for r in csv.reader(io.StringIO(data.decode("utf-8-sig")))][1:]
    assert cells == [safe_text(n) for n in HOSTILE]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]


# --- the Prefect UI -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_builders_escape_bank_and_operator_text(text: str) -> None:
    from tasks.reconciliation import quarantine_markdown
    from yinqi.recon import AccountDay, as_markdown

    report = {"statement_id": text, "account": "1202021209900123456", "lines": 3,
              "source": text, "checks": {
                  "failures": [{"check": "entry_ref_unique", "message": f"entry {text} twice"}],
                  "expectations": [{"expectation": text, "columns": [text], "success": False,
                                    "unexpected_count": 1}]}}
    page = quarantine_markdown(report)
    assert_inert(page)
    assert "1202021209900123456" not in page and "\\*\\*\\*\\*3456" in page
    visible = html.unescape(re.sub(r"<[^>]+>", "", rendered(page)))
    assert f"entry {text} twice" in visible  # shown, as the text it is

    row = AccountDay(account="1202021209900123456", currency="CNY", day=date(2026, 11, 26),
                     statements=1, bank_opening="0.00", bank_closing="1.00", lines=1,
                     matched_lines=1, matched_amount="1.00", unmatched_lines=0,
                     unmatched_amount="0", written_off_lines=0, ledger_balance="1.00",
                     difference="0.00", payments=1, payments_reconciled=1, payments_unmatched=0,
                     payments_returned=0, open_exceptions=0, quarantined_statements=0)
    summary = as_markdown([row], row.day, {row.account: {"bank": text, "account_name": text,
                                                         "account": "****3456"}})
    assert_inert(summary)
    assert "1202021209900123456" not in summary
    assert rendered(summary).count("<tr>") == 2  # the text did not add or split a row


@pytest.fixture
def prefect_app(tmp_path: Path) -> Iterator[App]:
    """An initialised Yinqi on SQLite, used by the Prefect tasks, with a temporary Prefect."""
    from prefect.testing.utilities import prefect_test_harness

    from config import load_settings
    from tasks.context import use_app
    from yinqi.cli.init_cmd import run_init

    saved = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    app = App(load_settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/y.db",
                            master_secret="injection-tests-master-secret-" + "x" * 32))
    run_init(app)
    try:
        with prefect_test_harness(server_startup_timeout=180):
            use_app(app)
            yield app
    finally:
        use_app(None)
        app.close()
        if saved is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = saved


def _artifacts() -> list[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return list(client.read_artifacts())


@pytest.mark.slow
def test_intake_artifacts_show_hostile_text_literally(prefect_app: App, tmp_path: Path) -> None:
    from flows.payment import voucher_intake

    voucher_file(tmp_path / "drop")
    out = voucher_intake(str(tmp_path / "drop"), imported_by="wu.maker")
    assert out["results"][0]["accepted"] == len(HOSTILE)
    [artifact] = [a for a in _artifacts() if a.key == "quarantined-vouchers"]
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert len(rows) == len(BAD_CATEGORIES)
    cells = [str(v) for r in rows for v in r.values()] + [artifact.description or ""]
    for cell in cells:  # the Prefect UI renders each text cell as markdown
        assert_inert(cell)
    visible = " ".join(html.unescape(re.sub(r"<[^>]+>", "", rendered(c))) for c in cells)
    for category in BAD_CATEGORIES:
        assert category in visible


# --- every export goes through yinqi.exports ----------------------------------------------------

# Writing spreadsheets or CSV anywhere else would bypass the formula guard.
_EXPORT_CALLS = re.compile(r"csv\.(writer|DictWriter)\(|\bWorkbook\(|\.to_csv\(|\.to_excel\(|"
                           r"xlsxwriter|\bopenpyxl\.Workbook")
#: Files allowed to write CSV without yinqi.exports, and why.
_NOT_EXPORTS = {
    "yinqi/exports.py": "the guard itself",
    "yinqi/demo/vouchers.py": "writes the demo's *input* voucher file, as an ERP would",
}


def test_every_export_goes_through_yinqi_exports() -> None:
    offenders = []
    for folder in ("yinqi", "tasks", "flows", "connectors", "config"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in _NOT_EXPORTS or rel.startswith("connectors/sandbox/"):
                continue  # the sandbox bank writes the bank's files, not Yinqi's exports
            text = path.read_text(encoding="utf-8")
            offenders += [f"{rel}: {m.group(0)}" for m in _EXPORT_CALLS.finditer(text)]
    assert not offenders, "exports must use yinqi.exports (write_csv/write_xlsx):\n" + \
        "\n".join(offenders)
    # And the one workbook Yinqi writes does use it.
    report = (REPO / "yinqi/recon/report.py").read_text(encoding="utf-8")
    assert "from yinqi.exports import write_xlsx" in report


def test_the_guard_recognises_an_export() -> None:
    # The search above cannot pass vacuously: it finds each way of writing a spreadsheet.
    for code in ("w = csv.writer(out)", "csv.DictWriter(f, fields)", "book = Workbook()",
                 "frame.to_csv(path)", "frame.to_excel(path)", "import xlsxwriter"):
        assert _EXPORT_CALLS.search(code), code
    assert not _EXPORT_CALLS.search("write_csv(rows, columns)")
