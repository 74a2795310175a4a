"""Payment state changes in the store: all or nothing, never illegal, always audited."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, update

from yinqi.errors import ConcurrencyConflict, IllegalTransition
from yinqi.states import PaymentState as S
from yinqi.store import AuditLog
from yinqi.store.models import AuditEventRow, BankAccount, Company, Payment
from yinqi.store.transitions import move_payments

KEY = b"transition-tests-key-0123456789a"


def _payments(sessions, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        acct = BankAccount(company=Company(name="c", credit_code="91350100M000100Y43"),
                           bank="icbc-sandbox", number="1202021209900123456", currency="CNY")
        s.add(acct)
        s.flush()
        rows = [Payment(end_to_end_id=f"E2E-{i}", debtor_account_id=acct.id,
                        creditor_name="杨磊", creditor_account="49505976717236739",
                        amount_minor=100 + i, currency="CNY", category="payroll",
                        requested_date=date(2026, 11, 25), maker="wu.maker")
                for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [p.id for p in rows]


def test_a_chunk_moves_together_with_one_audit_event(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    ids = _payments(sessions, 50)
    with sessions.begin() as s:
        assert move_payments(s, log, ids, S.PENDING_APPROVAL, actor="system:intake") == 50
    with sessions() as s:
        states = set(s.execute(select(Payment.state)).scalars())
        events = s.execute(select(AuditEventRow)).scalars().all()
        assert states == {"PENDING_APPROVAL"}
        assert len(events) == 1
        assert events[0].subject_ids == [str(i) for i in ids]
        assert events[0].details["to"] == "PENDING_APPROVAL"
        assert events[0].details["from"] == {"REQUESTED": 50}
        assert log.verify(s).ok


def test_one_illegal_member_stops_the_whole_chunk(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    ids = _payments(sessions, 5)
    with sessions.begin() as s:
        move_payments(s, log, ids[:4], S.PENDING_APPROVAL, actor="system:intake")
    with pytest.raises(IllegalTransition, match=f"payment {ids[4]}: cannot move from REQUESTED"):
        with sessions.begin() as s:
            move_payments(s, log, ids, S.APPROVED, actor="li.approver")
    with sessions() as s:
        assert set(s.execute(select(Payment.state)).scalars()) == {"PENDING_APPROVAL", "REQUESTED"}
        assert len(s.execute(select(AuditEventRow)).scalars().all()) == 1


def test_a_concurrent_change_fails_the_chunk_instead_of_overwriting(sessions, engine) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    ids = _payments(sessions, 3)
    with sessions.begin() as s:
        move_payments(s, log, ids, S.PENDING_APPROVAL, actor="system:intake")
    s = sessions()
    try:
        s.execute(select(Payment.id)).all()
        # Another worker cancels one payment between our read and our write.
        original = s.execute  # read inside move_payments happens first; emulate the race:

        def racing_execute(statement, *args, **kwargs):  # type: ignore[no-untyped-def]
            if getattr(statement, "is_update", False) and not racing_execute.done:
                racing_execute.done = True
                original(update(Payment).where(Payment.id == ids[1])
                         .values(state="CANCELLED", version=Payment.version + 1))
            return original(statement, *args, **kwargs)

        racing_execute.done = False
        s.execute = racing_execute  # type: ignore[method-assign]
        with pytest.raises(ConcurrencyConflict, match="1 of 3 payments changed state"):
            move_payments(s, log, ids, S.APPROVED, actor="li.approver")
        s.rollback()
    finally:
        s.close()


def test_unknown_payment_ids_are_refused(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    ids = _payments(sessions, 1)
    with pytest.raises(IllegalTransition, match="not found: 999999"):
        with sessions.begin() as s:
            move_payments(s, log, [ids[0], 999999], S.PENDING_APPROVAL, actor="x")
