"""Storing voucher files: one transaction per file, idempotent by file and by voucher, on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from yinqi.bootstrap import App
from yinqi.money import Money
from yinqi.states import PaymentState
from yinqi.store.intake import ImportSummary, import_vouchers, own_accounts
from yinqi.store.models import (
    AuditEventRow,
    BankAccount,
    Base,
    ImportFile,
    Payment,
    QuarantinedRow,
    Voucher,
)
from yinqi.vouchers import ERP_CN, end_to_end_id_for, read_rows, validate_rows

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers"
GBK = SAMPLES / "erp-payments-gbk.csv"
#: 11:00 in Shanghai: the out-of-hours rule (08:00-20:00 there) stays quiet.
BUSINESS_HOURS = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
HEADER = "单据编号,单据日期,付款账号,收款户名,收款账号,收款银行,联行号,金额,币种,用途,类别,加急,制单人,期望付款日"


def run_import(app: App, data: bytes, *, name: str = "f.csv", source: str = "erp",
               user: str = "wu.maker", now: datetime | None = None) -> ImportSummary:
    with app.sessions.begin() as session:
        checked = validate_rows(read_rows(data, name), ERP_CN,
                                own_accounts=own_accounts(session), source=source)
        summary = import_vouchers(session, app.audit, source=source, file_name=name, data=data,
                                  rows_result=checked, imported_by=user,
                                  risk_rules=app.config.risk_rules, now=now)
        rows = checked.rows
    # Nothing is dropped in silence: every row is accepted, quarantined or a duplicate.
    assert summary.accepted + len(summary.quarantined) + len(summary.duplicates) == rows
    return summary


def count(app: App, model: type[Base]) -> int:
    with app.sessions() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_the_sample_file_becomes_40_payments_pending_approval(app: App) -> None:
    with app.sessions() as session:
        events_before = session.execute(select(func.count()).select_from(AuditEventRow)
                                        ).scalar_one()
    # Within business hours in Shanghai, so that only the payees' newness fires.
    summary = run_import(app, GBK.read_bytes(), name=GBK.name, now=BUSINESS_HOURS)
    assert summary.accepted == 40 and not summary.duplicates and not summary.already_imported
    assert [row for row, _ in summary.quarantined] == [42, 43, 44, 45, 46, 47]
    assert summary.quarantined[5] == (
        47, "单据编号 FK2026000006: appears twice in this file (first on row 7)")
    assert len(summary.payment_ids) == 40

    with app.sessions() as session:
        payments = session.execute(select(Payment).order_by(Payment.id)).scalars().all()
        assert {p.state for p in payments} == {PaymentState.PENDING_APPROVAL.value}
        first = session.execute(select(Payment).where(
            Payment.end_to_end_id == end_to_end_id_for("erp", "FK2026000001"))).scalar_one()
        assert (first.amount_minor, first.currency) == (166593134, "CNY")
        assert (first.creditor_name, first.creditor_cnaps) == ("苏州工业园区精密制造有限公司",
                                                               "308584000013")
        assert (first.category, first.urgent, first.maker) == ("supplier", False, "wu.maker")
        assert str(first.requested_date) == "2026-11-25" and first.version == 2
        debtor = session.get(BankAccount, first.debtor_account_id)
        assert debtor is not None and debtor.number == "1202021209900123456"
        total = sum(p.amount_minor for p in payments)
        assert Money.from_minor(total, "CNY") == Money.of("20180917.64", "CNY")

        voucher = session.execute(select(Voucher).where(Voucher.external_ref == "FK2026000006")
                                  ).scalar_one()
        assert voucher.row_number == 7 and voucher.payload["金额"] == "1058150.53"
        quarantined = session.execute(select(QuarantinedRow).order_by(QuarantinedRow.row_number)
                                      ).scalars().all()
        assert [q.row_number for q in quarantined] == [42, 43, 44, 45, 46, 47]
        assert quarantined[0].payload["单据编号"] == "FK2026900001"
        assert quarantined[1].reason == "金额 '1,234.567': 3 decimals but CNY has 2"
        record = session.get(ImportFile, summary.import_file_id)
        assert record is not None
        assert (record.accepted, record.quarantined, record.duplicates) == (40, 6, 0)

        events = session.execute(select(AuditEventRow).where(AuditEventRow.seq > events_before)
                                 .order_by(AuditEventRow.seq)).scalars().all()
        # The risk screen runs between intake and approval: every payee is new here, which
        # only alerts (new_payee), so every payment goes on to approval.
        actions = [e.action for e in events]
        assert actions[0] == "vouchers.imported" and actions[-1] == "payment.state"
        assert set(actions[1:-1]) == {"risk.fired"}
        assert {e.details["rule"] for e in events[1:-1]} == {"new_payee"}
        assert events[0].details["sha256"] == summary.sha256
        assert events[0].details["accepted"] == 40 and events[0].details["quarantined"] == 6
        assert events[-1].details["to"] == "PENDING_APPROVAL"
        assert sorted(map(int, events[-1].subject_ids)) == summary.payment_ids
        assert {e.actor for e in events} == {"wu.maker"}
        assert app.audit.verify(session).ok


def test_the_same_file_again_creates_nothing(app: App) -> None:
    first = run_import(app, GBK.read_bytes(), name=GBK.name)
    tables = [count(app, m) for m in (ImportFile, Voucher, Payment, QuarantinedRow,
                                      AuditEventRow)]
    again = run_import(app, GBK.read_bytes(), name="renamed.csv", user="zhou.maker")
    assert again.already_imported and again.import_file_id == first.import_file_id
    assert (again.accepted, again.quarantined, again.payment_ids) == (0, [], [])
    assert [row for row, _ in again.duplicates] == list(range(2, 48))
    assert again.duplicates[0] == (2, "FK2026000001")
    assert [count(app, m) for m in (ImportFile, Voucher, Payment, QuarantinedRow,
                                    AuditEventRow)] == tables


def test_other_encodings_of_the_same_vouchers_are_duplicates(app: App) -> None:
    run_import(app, GBK.read_bytes(), name=GBK.name)
    utf8 = run_import(app, (SAMPLES / "erp-payments-utf8.csv").read_bytes())
    assert utf8.accepted == 0 and not utf8.already_imported
    # The 40 received vouchers and the repeat of FK2026000006 are duplicates; the 5 bad rows
    # were never received, so they are quarantined again.
    assert len(utf8.duplicates) == 41 and (47, "FK2026000006") in utf8.duplicates
    assert [row for row, _ in utf8.quarantined] == [42, 43, 44, 45, 46]
    as_json = run_import(app, (SAMPLES / "erp-payments.json").read_bytes(), name="f.json")
    assert as_json.accepted == 0 and not as_json.quarantined
    assert as_json.duplicates == [(n, f"FK2026{n:06d}") for n in range(1, 11)]
    assert count(app, Payment) == 40 and count(app, Voucher) == 40


def test_another_source_imports_the_same_numbers_anew(app: App) -> None:
    run_import(app, GBK.read_bytes(), name=GBK.name)
    other = run_import(app, GBK.read_bytes(), name=GBK.name, source="erp-branch")
    assert other.accepted == 40 and len(other.quarantined) == 6 and not other.duplicates
    assert count(app, Payment) == 80
    with app.sessions() as session:
        ids = session.execute(select(Payment.end_to_end_id)).scalars().all()
    assert len(set(ids)) == 80


def test_a_fixed_quarantined_row_can_be_imported_later(app: App) -> None:
    run_import(app, GBK.read_bytes(), name=GBK.name)
    fixed = HEADER + "\r\nFK2026900004,2026-11-24,755912345610808,杭州西湖茶业有限公司," \
        "67790081923749510,中国农业银行南京分行,103301000016,1141985.81,CNY,设备款,供应商,否," \
        "zhou.maker,2026-11-25\r\n"
    summary = run_import(app, fixed.encode("gbk"))
    assert summary.accepted == 1 and summary.payment_ids


def test_a_large_generated_file_imports_completely(app: App) -> None:
    lines = [HEADER]
    for i in range(20_000):
        amount = f"{i % 9999 + 1}.{i % 100:02d}" if i % 1000 else "-1.00"
        lines.append(f"G{i:07d},2026-11-24,1202021209900654321,供应商{i}有限公司,6222{i:015d},"
                     f"中国银行,104331000018,{amount},CNY,货款,供应商,否,wu.maker,2026-11-25")
    data = ("\r\n".join(lines) + "\r\n").encode("gbk")
    summary = run_import(app, data)
    assert summary.accepted == 19_980 and len(summary.quarantined) == 20
    assert len(summary.payment_ids) == 19_980
    with app.sessions() as session:
        states = {state: n for state, n in session.execute(
            select(Payment.state, func.count()).group_by(Payment.state))}
        assert states == {"PENDING_APPROVAL": 19_980}
        moves = session.execute(select(func.count()).select_from(AuditEventRow)
                                .where(AuditEventRow.action == "payment.state")).scalar_one()
        assert moves == 4  # one event per chunk of 5,000
        assert app.audit.verify(session).ok
    again = run_import(app, data)
    assert again.already_imported and len(again.duplicates) == 20_000


def test_two_imports_of_the_same_file_at_once_store_it_once(app: App) -> None:
    data = GBK.read_bytes()
    results: list[ImportSummary] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work() -> None:
        try:
            start.wait()
            results.append(run_import(app, data, name=GBK.name))
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.accepted for r in results) == [0, 40]
    assert count(app, Payment) == 40 and count(app, ImportFile) == 1


def test_overlapping_files_at_once_receive_each_voucher_once(app: App) -> None:
    gbk, utf8 = GBK.read_bytes(), (SAMPLES / "erp-payments-utf8.csv").read_bytes()
    results: list[ImportSummary] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(data: bytes) -> None:
        try:
            start.wait()
            results.append(run_import(app, data))
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in (gbk, utf8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.accepted for r in results) == [0, 40]
    assert sorted(len(r.duplicates) for r in results) == [0, 41]
    assert count(app, Payment) == 40 and count(app, ImportFile) == 2


@pytest.mark.parametrize("status", ["frozen", "closed"])
def test_only_active_accounts_pay(app: App, status: str) -> None:
    with app.sessions.begin() as session:
        account = session.execute(select(BankAccount).where(
            BankAccount.number == "755912345610808")).scalar_one()
        account.status = status
    summary = run_import(app, GBK.read_bytes(), name=GBK.name)
    assert summary.accepted == 26
    reason = dict(summary.quarantined)[5]
    if status == "frozen":
        assert "debtor account ****0808 is frozen" in reason, reason
    else:
        assert "付款账号 ****0808: not one of the company's accounts" in reason, reason
