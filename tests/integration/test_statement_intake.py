"""Statement intake in the database: a statement delivered late is checked against the one
before it; a quarantined statement delivered again (after the gap before it was filled) is
checked again and accepted."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from yinqi.bankdata import Statement, StatementLine
from yinqi.bootstrap import App
from yinqi.money import Money
from yinqi.statement_checks import check_statements
from yinqi.store.models import AuditEventRow
from yinqi.store.models import Statement as StatementRow
from yinqi.store.statements import take_in

ACCOUNT = "1202021209900123456"


def day(n: int, opening: str, amounts: list[str]) -> Statement:
    d = date(2026, 11, 20 + n)
    lines = tuple(StatementLine(amount=Money.of(a, "CNY"), booking_date=d, value_date=d,
                                entry_ref=f"E{n}-{i}") for i, a in enumerate(amounts))
    opening_m = Money.of(opening, "CNY")
    closing = Money.sum([opening_m, *(x.amount for x in lines)], "CNY")
    return Statement(account=ACCOUNT, currency="CNY", statement_id=f"S{n}", sequence=str(n),
                     opening_balance=opening_m, closing_balance=closing, lines=lines,
                     from_date=d, to_date=d, kind="camt.053")


def intake(app: App, *statements: Statement):  # type: ignore[no-untyped-def]
    with app.sessions.begin() as s:
        return take_in(s, app.audit, list(statements), source="test", checker=check_statements,
                       actor="test")


def status(app: App) -> dict[str, str]:
    with app.sessions() as s:
        return {r.statement_id: r.status for r in s.execute(select(StatementRow)).scalars()}


def test_statements_delivered_out_of_order_are_all_accepted(app: App) -> None:
    d1, d2, d3 = day(1, "100.00", ["-10.00"]), day(2, "90.00", ["5.00"]), \
        day(3, "95.00", ["-1.00"])
    assert intake(app, d3).accepted
    # d1 arrives after d3: it is checked against what came before it (nothing), not d3.
    assert intake(app, d1).accepted
    assert intake(app, d2).accepted
    assert status(app) == {"S1": "accepted", "S2": "accepted", "S3": "accepted"}


def test_a_quarantined_statement_is_checked_again_when_delivered_again(app: App) -> None:
    d1, d2, d3 = day(1, "100.00", ["-10.00"]), day(2, "90.00", ["5.00"]), \
        day(3, "95.00", ["-1.00"])
    intake(app, d1)
    first = intake(app, d3)  # day 2 is missing: a gap in the sequence, continuity broken
    assert first.quarantined and not first.accepted
    assert intake(app, d2).accepted
    again = intake(app, d3)  # the bank sends day 3 again: now it continues day 2
    assert again.accepted == [first.quarantined[0][0]]
    assert status(app) == {"S1": "accepted", "S2": "accepted", "S3": "accepted"}
    with app.sessions() as s:
        events = s.execute(select(AuditEventRow).where(
            AuditEventRow.action == "statement.accepted")).scalars().all()
        assert any((e.details or {}).get("recheck") for e in events)
        assert app.audit.verify(s).ok
    # Delivered once more, it is a plain duplicate.
    assert intake(app, d3).duplicates and not intake(app, d3).accepted


def test_a_conflicting_redelivery_is_never_rechecked_into_acceptance(app: App) -> None:
    d1 = day(1, "100.00", ["-10.00"])
    intake(app, d1)
    changed = day(1, "100.00", ["-11.00"])
    got = intake(app, changed)
    assert got.quarantined and got.quarantined[0][1].startswith("conflict:")
    assert intake(app, changed).duplicates and not intake(app, changed).accepted
