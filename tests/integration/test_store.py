"""The store on both backends: schema, constraints, exact money and time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from yinqi.errors import SchemaOutOfDate
from yinqi.store import Base, ensure_current, head_revision, make_engine, upgrade
from yinqi.store.models import (
    Approval,
    BankAccount,
    Batch,
    Company,
    Payment,
    ReconMatch,
    ReconMatchItem,
    Voucher,
)


def test_migrations_and_models_agree(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_schema_check_refuses_an_unmigrated_database(db_url: str) -> None:
    eng = make_engine(db_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="run `yinqi init`"):
            ensure_current(eng)
        upgrade(eng)
        ensure_current(eng)
        upgrade(eng)  # a second upgrade is a no-op
        with eng.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                == head_revision()
    finally:
        eng.dispose()


def _account(session) -> BankAccount:  # type: ignore[no-untyped-def]
    company = Company(name="演示科技有限公司", credit_code="91350100M000100Y43")
    acct = BankAccount(company=company, bank="icbc-sandbox", number="1202021209900123456",
                       currency="CNY", name="基本户")
    session.add(acct)
    session.flush()
    return acct


def _payment(acct: BankAccount, e2e: str, **kw) -> Payment:  # type: ignore[no-untyped-def]
    values = dict(end_to_end_id=e2e, debtor_account_id=acct.id, creditor_name="杨磊",
                  creditor_account="49505976717236739", amount_minor=4172821, currency="CNY",
                  category="payroll", requested_date=date(2026, 11, 25), maker="wu.maker")
    values.update(kw)
    return Payment(**values)


@pytest.mark.parametrize(
    "duplicate",
    ["voucher_ref", "end_to_end_id", "msg_id", "approver_twice", "level_twice"],
)
def test_idempotency_keys_are_enforced_by_the_database(sessions, duplicate: str) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        acct = _account(s)
        s.add(Voucher(source="erp", external_ref="FK2026000001", payload={"a": 1}))
        s.add(Batch(msg_id="MSG-1", bank="icbc-sandbox", dialect="iso20022",
                    debtor_account_id=acct.id, currency="CNY"))
        p = _payment(acct, "E2E-1")
        s.add(p)
        s.flush()
        s.add(Approval(payment_id=p.id, level=1, role="approver", approver="li.approver",
                       decision="approved"))
        acct_id, pid = acct.id, p.id
    with pytest.raises(IntegrityError):
        with sessions.begin() as s:
            acct = s.get(BankAccount, acct_id)
            if duplicate == "voucher_ref":
                s.add(Voucher(source="erp", external_ref="FK2026000001", payload={}))
            elif duplicate == "end_to_end_id":
                s.add(_payment(acct, "E2E-1", amount_minor=1))
            elif duplicate == "msg_id":
                s.add(Batch(msg_id="MSG-1", bank="cmb-sandbox", dialect="cn-h2h",
                            debtor_account_id=acct_id, currency="CNY"))
            elif duplicate == "approver_twice":  # one person on two levels of one payment
                s.add(Approval(payment_id=pid, level=2, role="finance_manager",
                               approver="li.approver", decision="approved"))
            else:
                s.add(Approval(payment_id=pid, level=1, role="approver",
                               approver="sun.approver", decision="approved"))
    # The same voucher number from another source is a different voucher.
    with sessions.begin() as s:
        s.add(Voucher(source="other-erp", external_ref="FK2026000001", payload={}))


@pytest.mark.parametrize(
    ("column", "value"),
    [("amount_minor", 0), ("amount_minor", -100), ("state", "PAID"), ("debtor_account_id", 9999)],
)
def test_check_and_foreign_key_constraints(sessions, column: str, value: object) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        acct_id = _account(s).id
    with pytest.raises(IntegrityError):
        with sessions.begin() as s:
            acct = s.get(BankAccount, acct_id)
            s.add(_payment(acct, "E2E-X", **{column: value}))


def test_match_item_must_name_exactly_one_side(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        m = ReconMatch(rule="manual", score=1.0, created_by="liu.treasurer")
        s.add(m)
        s.flush()
        mid = m.id
    with pytest.raises(IntegrityError):
        with sessions.begin() as s:
            s.add(ReconMatchItem(match_id=mid))


def test_money_and_time_round_trip_exactly(sessions) -> None:  # type: ignore[no-untyped-def]
    huge = 999_999_999_999_999_99  # just under 10^18 minor units: far beyond any payment
    moment = datetime(2026, 11, 25, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=8)))
    with sessions.begin() as s:
        acct = _account(s)
        s.add(_payment(acct, "E2E-BIG", amount_minor=huge, created_at=moment))
    with sessions() as s:
        p = s.execute(select(Payment).where(Payment.end_to_end_id == "E2E-BIG")).scalar_one()
        assert p.amount_minor == huge and isinstance(p.amount_minor, int)
        assert p.created_at == moment and p.created_at.tzinfo is not None
        assert p.created_at.utcoffset() == timedelta(0)
        assert p.created_at == datetime(2026, 11, 25, 15, 59, 59, 999999, tzinfo=UTC)


def test_naive_datetimes_are_refused(sessions) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="naive datetime"):
        with sessions.begin() as s:
            acct = _account(s)
            s.add(_payment(acct, "E2E-N", created_at=datetime(2026, 1, 1)))


def test_concurrent_writers_to_one_payment_cannot_both_win(sessions) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.orm.exc import StaleDataError

    with sessions.begin() as s:
        p = _payment(_account(s), "E2E-V")
        s.add(p)
        s.flush()
        pid = p.id
    first, second = sessions(), sessions()
    try:
        # Both read version 1, each in its own (finished) transaction, as two workers would.
        a = first.get(Payment, pid)
        first.commit()
        b = second.get(Payment, pid)
        second.commit()
        a.state = "PENDING_APPROVAL"
        first.commit()
        b.state = "CANCELLED"
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        first.close()
        second.close()
    with sessions() as s:
        assert s.get(Payment, pid).state == "PENDING_APPROVAL"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'nested' / 'y.db'}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        eng.dispose()
