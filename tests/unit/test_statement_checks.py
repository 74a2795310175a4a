"""Data-quality checks on statements (yinqi.statement_checks).

Every test starts from one clean statement that passes, injects one defect and expects exactly
that defect's check to fail, with one readable line saying what and where. The checks run
through great-expectations, so the first test in a process pays for importing it (seconds);
nothing here asserts on time.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from yinqi.bankdata import Statement, StatementLine
from yinqi.currency import Currency
from yinqi.money import Money
from yinqi.statement_checks import (
    CHECKS,
    MAX_LINES_PER_CHECK,
    CheckReport,
    PreviousStatement,
    check_statement,
    check_statements,
)

DAY = date(2024, 3, 1)
EDGE = Path(__file__).resolve().parents[1] / "fixtures" / "iso20022" / "edge"


def cny(text: str) -> Money:
    return Money.of(text, "CNY")


def line(amount: str | Money, ref: str | None = None, *, booked: date | None = DAY,
         value: date | None = DAY, status: str = "BOOK") -> StatementLine:
    money = cny(amount) if isinstance(amount, str) else amount
    return StatementLine(amount=money, booking_date=booked, value_date=value, entry_ref=ref,
                         status=status)


def statement(lines: tuple[StatementLine, ...] | None = None, *, opening: str = "100.00",
              closing: str | None = None, sequence: str | None = "5", **changes: Any,
              ) -> Statement:
    """A camt.053 for one day whose closing balance adds up unless ``closing`` says otherwise."""
    if lines is None:
        lines = (line("50.00", "E1"), line("-10.00", "E2"), line("0.01", "E3"))
    base = cny(opening)
    if closing is None:
        booked = [x.amount for x in lines if x.status == "BOOK" and isinstance(x.amount, Money)
                  and x.amount.currency.code == "CNY"]
        closing_money = base + Money.sum(booked, "CNY")
    else:
        closing_money = cny(closing)
    made = Statement(account="6222020200112233445", currency="CNY", statement_id="STMT-5",
                     sequence=sequence, opening_balance=base, closing_balance=closing_money,
                     lines=lines, from_date=DAY, to_date=DAY, kind="camt.053")
    return replace(made, **changes) if changes else made


def closing_of(s: Statement) -> str:
    assert s.closing_balance is not None
    return str(s.closing_balance.amount)


def only_failing(report: CheckReport, check: str) -> list[str]:
    """The messages of ``check``, after making sure no other check failed."""
    assert not report.passed
    assert report.failed_checks() == [check], report.failures
    return [f.message for f in report.failures]


# --- a clean statement ---------------------------------------------------------------------------


def test_a_clean_statement_passes_every_check() -> None:
    report = check_statement(statement(), previous_closing=cny("100.00"), previous_sequence="4")
    assert report.passed, report.failures
    assert report.failures == ()
    assert set(report.check_results().values()) == {"passed"}
    # Every check ran as at least one GX expectation, each of which succeeded.
    assert {e.check for e in report.expectations} == set(CHECKS)
    assert all(e.success and e.unexpected_count == 0 for e in report.expectations)
    assert report.validator.startswith("great_expectations ")
    assert (report.account, report.statement_id, report.sequence) == (
        "6222020200112233445", "STMT-5", "5")
    assert report.period == (DAY, DAY)
    assert report.line_count == 3


def test_the_report_as_json_is_compact_and_serialisable() -> None:
    report = check_statement(statement())
    data = json.loads(json.dumps(report.as_json()))
    assert data["passed"] is True and data["verdict"] == "accepted"
    assert data["statement"]["statement_id"] == "STMT-5"
    assert data["statement"]["from_date"] == "2024-03-01"
    assert set(data["checks"]) == set(CHECKS)
    assert data["checks"]["continuity"] == "skipped"  # no previous statement given
    assert any(s.startswith("continuity:") for s in data["skipped"])
    for expectation in data["expectations"]:
        assert set(expectation) >= {"check", "expectation", "columns", "success",
                                    "unexpected_count"}
        assert expectation["expectation"].startswith("expect_")


def test_the_report_as_markdown_names_the_verdict_and_every_failure() -> None:
    accepted = check_statement(statement()).as_markdown()
    assert "STMT-5: accepted" in accepted
    assert "| balance | pass |" in accepted
    bad = check_statement(statement(closing="141.00")).as_markdown()
    assert "STMT-5: QUARANTINED" in bad
    assert "- **balance**: opening 100.00 + entries 40.01 = 140.01" in bad
    assert "| balance | FAIL |" in bad


def test_a_statement_without_lines_passes() -> None:
    report = check_statement(statement((), opening="5.00"))
    assert report.passed, report.failures
    assert report.line_count == 0


def test_nothing_to_check_gives_no_reports() -> None:
    assert check_statements([]) == []


# --- one defect each -----------------------------------------------------------------------------


def test_a_broken_balance_is_caught_by_balance() -> None:
    report = check_statement(statement(closing="141.00"))
    assert only_failing(report, "balance") == [
        "opening 100.00 + entries 40.01 = 140.01 but closing says 141.00 CNY (difference 0.99)"]


def test_pending_and_information_lines_move_no_balance() -> None:
    lines = (line("50.00", "E1"), line("7.00", "E2", status="PDNG"),
             line("9.00", "E3", status="INFO"))
    assert check_statement(statement(lines, closing="150.00")).passed
    assert only_failing(check_statement(statement(lines, closing="166.00")),
                        "balance")[0].startswith("opening 100.00 + entries 50.00 = 150.00")


def test_a_gap_in_sequence_numbers_is_caught_by_sequence() -> None:
    report = check_statement(statement(sequence="7"), previous_sequence="5")
    assert only_failing(report, "sequence") == [
        "sequence 7 follows 5: 1 statement or page missing in between"]


def test_a_gap_inside_a_batch_is_caught_on_the_statement_after_it() -> None:
    first = statement(sequence="1", statement_id="S1", from_date=date(2024, 3, 1),
                      to_date=date(2024, 3, 1))
    third = statement(sequence="3", statement_id="S3", from_date=date(2024, 3, 3),
                      to_date=date(2024, 3, 3), opening=closing_of(first),
                      lines=(line("1.00", "E9", booked=date(2024, 3, 3)),))
    reports = check_statements([first, third])
    assert reports[0].passed
    assert only_failing(reports[1], "sequence") == [
        "sequence 3 follows 1 (statement S1): 1 statement or page missing in between"]


def test_a_repeated_or_backward_sequence_is_caught() -> None:
    repeated = check_statement(statement(sequence="5"), previous_sequence="5")
    assert only_failing(repeated, "sequence") == [
        "sequence 5 repeats the previous statement's number"]
    back = check_statement(statement(sequence="3"), previous_sequence="5")
    assert only_failing(back, "sequence") == ["sequence 3 comes after 5: it goes back"]


@pytest.mark.parametrize(("previous", "current"), [
    ("00005/001", "00005/002"),   # the next page of statement 5
    ("00005/002", "00006/001"),   # statement 6 starts on page 1
    ("00005", "00006"),
    ("0", "0"),                   # Rabobank numbers no statement: not checked
])
def test_statement_and_page_numbers_that_follow(previous: str, current: str) -> None:
    report = check_statement(statement(sequence=current), previous_sequence=previous)
    assert report.passed, report.failures


def test_a_missing_page_or_a_number_that_is_not_one_is_caught() -> None:
    page = check_statement(statement(sequence="00005/003"), previous_sequence="00005/001")
    assert only_failing(page, "sequence") == [
        "sequence 00005/003 follows 00005/001: 1 statement or page missing in between"]
    word = check_statement(statement(sequence="five"))
    assert only_failing(word, "sequence") == [
        "sequence 'five' is not a statement number like 5 or 00005/001"]


def test_a_duplicate_entry_reference_is_caught_by_entry_ref_unique() -> None:
    lines = (line("50.00", "E1"), line("-10.00", "E2"), line("0.01", "E1"), line("3.00"))
    report = check_statement(statement(lines))
    assert only_failing(report, "entry_ref_unique") == [
        "entry reference 'E1' is on lines 1 and 3"]
    outcome = next(e for e in report.expectations if e.check == "entry_ref_unique")
    assert (outcome.unexpected_count, outcome.examples) == (2, ("E1", "E1"))


def test_the_same_reference_in_two_statements_is_not_a_duplicate() -> None:
    reports = check_statements([
        statement(statement_id="A", account="1"), statement(statement_id="B", account="2")])
    assert all(r.passed for r in reports), [r.failures for r in reports]


def test_an_unknown_statement_currency_is_caught_by_statement_currency() -> None:
    report = check_statement(statement(currency="XYZ"))
    assert "statement_currency" in report.failed_checks()
    messages = [f.message for f in report.failures if f.check == "statement_currency"]
    assert "statement currency 'XYZ' is not an ISO 4217 code Yinqi knows" in messages
    assert "the opening balance is in CNY but the statement is in XYZ" in messages


def test_a_line_in_another_currency_is_caught_by_line_currency() -> None:
    lines = (line("50.00", "E1"), line(Money.of("5.00", "USD"), "E2"))
    report = check_statement(statement(lines))
    assert only_failing(report, "line_currency") == [
        "line 2 (E2): amount 5.00 USD is not in the statement currency CNY"]


@dataclass(frozen=True)
class RawAmount:
    """Shaped like Money but unchecked: what a reader without Money's guards could hand over."""

    amount: Decimal | str
    currency: str


def test_a_line_in_an_unknown_currency_is_caught_by_line_currency() -> None:
    lines = (line("50.00", "E1"), StatementLine(RawAmount(Decimal("5.00"), "XYZ"),  # type: ignore[arg-type]
                                                DAY, DAY, entry_ref="E2"))
    report = check_statement(statement(lines, closing="150.00"))
    messages = [f.message for f in report.failures if f.check == "line_currency"]
    assert report.failed_checks() == ["line_currency"], report.failures
    assert "line 2 (E2): currency 'XYZ' is not an ISO 4217 code Yinqi knows" in messages


def test_a_line_booked_outside_the_period_is_caught_by_line_dates() -> None:
    lines = (line("50.00", "E1"), line("-10.00", "E2", booked=date(2024, 3, 4)),
             line("1.00", "E3", booked=date(2024, 2, 29)))
    report = check_statement(statement(lines))
    assert only_failing(report, "line_dates") == [
        "line 3 (E3): booked 2024-02-29, before the statement period starts (2024-03-01)",
        "line 2 (E2): booked 2024-03-04, after the statement period ends (2024-03-01)",
    ]


def test_value_dates_and_pending_bookings_outside_the_period_are_normal() -> None:
    lines = (line("50.00", "E1", value=date(2024, 2, 20)),
             line("7.00", "E2", booked=date(2024, 3, 4), status="PDNG"))
    report = check_statement(statement(lines))
    assert report.passed, report.failures


def test_without_a_period_booking_dates_are_not_checked() -> None:
    lines = (line("50.00", "E1", booked=date(2023, 1, 1)),)
    report = check_statement(statement(lines, from_date=None, to_date=None))
    assert report.passed, report.failures


def test_a_zero_amount_is_caught_by_line_amount_nonzero() -> None:
    lines = (line("50.00", "E1"), line("0.00", "E2"), line("-1.00"))
    report = check_statement(statement(lines))
    assert only_failing(report, "line_amount_nonzero") == ["line 2 (E2): amount 0.00 CNY is zero"]


def test_too_many_decimals_on_a_hand_built_currency_are_caught() -> None:
    # Money refuses 1.234 CNY, but a hand-built Currency can claim three minor units for CNY;
    # the check measures the amount against the ISO table, not against that object.
    forged = Money(Decimal("1.234"), Currency("CNY", 3, "Yuan with a forged precision"))
    lines = (line("50.00", "E1"), StatementLine(forged, DAY, DAY, entry_ref="E2"))
    report = check_statement(statement(lines, closing="150.00"))
    assert only_failing(report, "line_amount_decimals") == [
        "line 2 (E2): amount 1.234 CNY has 3 decimals but CNY has 2"]
    # A line that cannot be counted in minor units leaves the balance unchecked, and says so.
    assert report.check_results()["balance"] == "skipped"
    assert any("cannot be counted" in s for s in report.skipped)


def test_too_many_decimals_on_a_raw_amount_are_caught() -> None:
    lines = (line("50.00", "E1"),
             StatementLine(RawAmount("12.345", "CNY"), DAY, DAY),  # type: ignore[arg-type]
             StatementLine(RawAmount("12.300", "CNY"), DAY, DAY))  # type: ignore[arg-type]
    report = check_statement(statement(lines, closing="150.00"))
    # Trailing zeros carry no value: 12.300 CNY is exact.
    assert only_failing(report, "line_amount_decimals") == [
        "line 2: amount 12.345 CNY has 3 decimals but CNY has 2"]


def test_the_parsers_refuse_such_amounts_before_a_statement_exists() -> None:
    from connectors.iso20022 import FormatError, parse_camt

    with pytest.raises(FormatError, match="has 3 decimals but CNY has 2"):
        parse_camt((EDGE / "camt053_cny_three_decimals.xml").read_bytes(), "edge")


def test_an_opening_not_equal_to_the_previous_closing_is_caught_by_continuity() -> None:
    report = check_statement(statement(), previous_closing=cny("99.50"))
    assert only_failing(report, "continuity") == [
        "opening 100.00 CNY is not the previous statement's closing 99.50 CNY"]


def test_continuity_is_checked_between_statements_of_a_batch() -> None:
    first = statement(sequence="1", statement_id="S1")
    second = statement(sequence="2", statement_id="S2", opening="999.00",
                       from_date=date(2024, 3, 2), to_date=date(2024, 3, 2),
                       lines=(line("1.00", "E1", booked=date(2024, 3, 2)),))
    reports = check_statements([second, first])  # given out of order: checked in order
    assert reports[1].passed
    assert only_failing(reports[0], "continuity") == [
        (f"opening 999.00 CNY is not the previous statement's closing "
         f"{closing_of(first)} CNY (statement S1, sequence 1)")]


def test_the_previous_statement_can_be_given_per_account() -> None:
    s = statement()
    previous = {(s.account, "CNY"): PreviousStatement(cny("100.00"), "4", "STMT-4", "camt.053")}
    assert check_statements([s], previous)[0].passed
    wrong = {(s.account, "CNY"): PreviousStatement(cny("1.00"), "4", "STMT-4", "camt.053")}
    assert check_statements([s], wrong)[0].failed_checks() == ["continuity"]
    # An intraday report does not continue an end-of-day statement.
    report = replace(s, kind="camt.052")
    assert check_statements([report], wrong)[0].passed


def test_a_missing_account_is_caught_by_required_fields() -> None:
    report = check_statement(statement(account="  "))
    assert only_failing(report, "required_fields") == ["the statement names no account"]


def test_a_statement_without_balances_is_caught_by_required_fields() -> None:
    report = check_statement(statement(closing_balance=None))
    assert only_failing(report, "required_fields") == [
        "no closing balance: a camt.053 statement must give one"]
    # A notification carries no balances by design.
    notification = statement(kind="camt.054", opening_balance=None, closing_balance=None)
    assert check_statement(notification).passed


def test_a_line_without_any_date_is_caught_by_line_required_fields() -> None:
    lines = (line("50.00", "E1"), line("1.00", "E2", booked=None, value=None))
    report = check_statement(statement(lines))
    assert only_failing(report, "line_required_fields") == [
        "line 2 (E2): neither a booking date nor a value date"]


def test_an_unknown_status_is_caught_by_line_status() -> None:
    lines = (line("50.00", "E1"), line("1.00", "E2", status="BOOKED"))
    report = check_statement(statement(lines, closing="150.00"))
    assert only_failing(report, "line_status") == [
        "line 2 (E2): status 'BOOKED' is not one of BOOK, PDNG, INFO, FUTR"]


def test_a_period_that_ends_before_it_starts_is_caught_by_period() -> None:
    report = check_statement(statement((), from_date=date(2024, 3, 2), to_date=date(2024, 3, 1)))
    assert only_failing(report, "period") == [
        "the period ends 2024-03-01, before it starts 2024-03-02"]


# --- batches and volume --------------------------------------------------------------------------


def test_many_bad_lines_are_counted_not_all_listed() -> None:
    lines = tuple(line("0.00", f"Z{i}") for i in range(MAX_LINES_PER_CHECK + 10))
    report = check_statement(statement(lines, closing="100.00"))
    messages = only_failing(report, "line_amount_nonzero")
    assert len(messages) == MAX_LINES_PER_CHECK + 1
    assert messages[-1] == "... and 10 more like these"
    outcome = next(e for e in report.expectations if e.check == "line_amount_nonzero")
    assert outcome.unexpected_count == MAX_LINES_PER_CHECK + 10
    assert len(outcome.examples) == 3
    assert len(json.dumps(report.as_json())) < 20_000


def test_a_batch_reports_each_statement_on_its_own() -> None:
    good = [statement(account=f"ACC{i}", statement_id=f"S{i}") for i in range(30)]
    bad = statement(account="ACC-BAD", statement_id="BAD", closing="1.00")
    batch = [*good[:10], bad, *good[10:]]
    random.Random(7).shuffle(batch)
    reports = check_statements(batch)
    assert [r.statement_id for r in reports] == [s.statement_id for s in batch]
    verdicts = {r.statement_id: r.failed_checks() for r in reports}
    assert verdicts.pop("BAD") == ["balance"]
    assert set(map(tuple, verdicts.values())) == {()}


def test_kinds_of_report_chain_separately() -> None:
    end_of_day = statement(sequence="1", statement_id="S1")
    notification = statement(sequence="77", statement_id="N77", kind="camt.054",
                             opening_balance=None, closing_balance=None)
    next_day = statement((line("1.00", "E1", booked=date(2024, 3, 2)),), sequence="2",
                         statement_id="S2", opening=closing_of(end_of_day),
                         from_date=date(2024, 3, 2), to_date=date(2024, 3, 2))
    reports = check_statements([end_of_day, notification, next_day])
    assert all(r.passed for r in reports), [r.failures for r in reports]


def test_amounts_beyond_64_bits_are_still_exact() -> None:
    huge = "123456789012345678901234.56"
    lines = (line(huge, "E1"), line("-" + huge, "E2"), line("0.01", "E3"))
    report = check_statement(statement(lines, closing="100.02"))
    assert only_failing(report, "balance") == [
        "opening 100.00 + entries 0.01 = 100.01 but closing says 100.02 CNY (difference 0.01)"]
