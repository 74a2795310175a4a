"""Data-quality checks on bank statements before anything uses them.

A statement is accepted whole or quarantined whole: ``check_statements`` returns one
``CheckReport`` per statement, and a report that did not pass lists every failure as the check's
name and one line saying what is wrong and where ("line 17: amount 0.00 CNY is zero").

Every check runs as a great-expectations (GX) expectation, so the operator sees one validation
result per statement. Lines are validated as one pandas DataFrame (one row per line, every
statement of the batch in it, keyed by its position in the batch); statement-level facts that
need arithmetic (opening + booked entries - closing, opening - previous closing, the step from the
previous statement number) are computed here exactly, in integer minor units, and fed to GX as a
second DataFrame with one row per statement. GX decides what fails; this module only turns GX's
unexpected rows into readable lines.

The checks, by name (``CHECKS``):

- ``required_fields``: account, statement id and currency present; statements that must balance
  (camt.053, MT940, the direct-connect 对账单) give an opening and a closing balance.
- ``statement_currency``: the statement currency is an ISO 4217 code Yinqi knows, and both
  balances are in it.
- ``period``: the statement period does not end before it starts.
- ``balance``: opening + booked entries (BOOK, in the statement currency) == closing.
- ``continuity``: the opening balance equals the previous statement's closing balance.
- ``sequence``: the statement number is a number and follows the previous one with no gap
  (``5`` after ``4``, ``00005/002`` after ``00005/001``, ``00006/001`` after ``00005/002``).
- ``line_required_fields``: every line has an amount, a currency, a status and a date (booking or
  value).
- ``line_currency``: every line is in a known currency, the statement's own.
- ``line_status``: BOOK, PDNG, INFO or FUTR (ISO ExternalEntryStatus1Code).
- ``line_dates``: a booked (BOOK) line's booking date lies inside [from_date, to_date] when the
  statement has a period. A pending line's booking date is when it is expected to book, and
  value dates may lie outside the period (back-valued entries): neither is checked.
- ``line_amount_nonzero``: no line moves zero.
- ``line_amount_decimals``: the amount needs no more decimals than its currency has, that is, it
  converts exactly to minor units (checked against the ISO table, not the amount's own
  ``Currency`` object, which could be hand-built with other minor units).
- ``entry_ref_unique``: entry references (camt NtryRef), where given, are unique in a statement.

Sequence numbers and balances chain per account, currency and kind of report: end-of-day
statements (camt.053, MT940, 对账单) with each other, intraday reports (camt.052, MT942) with each
other, notifications (camt.054) with each other. A statement number of 0 means "not numbered"
(Rabobank writes 0 on every statement): the gap check is then skipped, with a note.

GX is imported on first use (it takes seconds), and its context, suites and validation
definitions are built once per process.
"""

from __future__ import annotations

import importlib
import itertools
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any, NamedTuple

from yinqi.bankdata import Statement
from yinqi.currency import CURRENCIES, Currency
from yinqi.money import Money
from yinqi.security.masking import mask_account

if TYPE_CHECKING:
    import pandas as pd

CHECKS: Mapping[str, str] = {
    "required_fields": "account, statement id, currency and (for statements) both balances given",
    "statement_currency": "statement currency is a known ISO 4217 code; balances are in it",
    "period": "the statement period does not end before it starts",
    "balance": "opening + booked entries = closing",
    "continuity": "opening = the previous statement's closing",
    "sequence": "statement number follows the previous one without a gap",
    "line_required_fields": "every line has amount, currency, status and a booking or value date",
    "line_currency": "every line is in the statement's (known) currency",
    "line_status": "every line's status is BOOK, PDNG, INFO or FUTR",
    "line_dates": "booked lines' booking dates lie inside the statement period",
    "line_amount_nonzero": "no line amount is zero",
    "line_amount_decimals": "no amount has more decimals than its currency",
    "entry_ref_unique": "entry references are unique within the statement",
}

LINE_STATUSES: tuple[str, ...] = ("BOOK", "PDNG", "INFO", "FUTR")
# Kinds that are end-of-day statements and so must carry both balances.
BALANCED_KINDS: frozenset[str] = frozenset({"camt.053", "mt940", "cn-h2h"})
_FAMILIES = {"camt.053": "statement", "mt940": "statement", "cn-h2h": "statement", "": "statement",
             "camt.052": "report", "mt942": "report", "camt.054": "notification"}

# Readable lines per check and statement; the rest is counted, not listed.
MAX_LINES_PER_CHECK = 20
_EXAMPLES = 3

_SEQUENCE = re.compile(r"\s*([0-9]+)(?:/([0-9]+))?\s*", re.ASCII)
_MINOR_UNITS: Mapping[str, int] = {code: c.minor_units for code, c in CURRENCIES.items()}
_GENUINE_UNITS: Mapping[int, int] = {id(c): c.minor_units for c in CURRENCIES.values()}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NAT = -(2**63)  # numpy's NaT as int64
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PreviousStatement:
    """What the last accepted statement of an account said, for continuity and numbering.

    ``kind`` says which chain it continues (see the module doc); None means an end-of-day
    statement.
    """

    closing_balance: Money | None
    sequence: str | None = None
    statement_id: str | None = None
    kind: str | None = None


class Failure(NamedTuple):
    """A failed check (one of ``CHECKS``) and one readable line saying what and where."""

    check: str
    message: str


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    """One GX expectation's verdict on one statement's rows."""

    check: str
    expectation: str  # GX's type, e.g. "expect_column_values_to_not_be_in_set"
    columns: tuple[str, ...]
    success: bool
    rows: int  # rows of this statement it looked at (lines, or 1 for statement facts)
    unexpected_count: int
    examples: tuple[str, ...] = ()  # up to three unexpected values, as text
    error: str | None = None  # the expectation itself raised

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check, "expectation": self.expectation, "columns": list(self.columns),
            "success": self.success, "rows": self.rows, "unexpected_count": self.unexpected_count,
        }
        if self.examples:
            out["unexpected_examples"] = list(self.examples)
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class CheckReport:
    """One statement's verdict: who it is, whether it passed, and every failure in one line."""

    account: str
    currency: str
    statement_id: str
    sequence: str | None
    from_date: date | None
    to_date: date | None
    kind: str
    line_count: int
    passed: bool
    failures: tuple[Failure, ...]
    expectations: tuple[ExpectationOutcome, ...]
    # Checks that could not apply, with the reason ("continuity: no previous statement").
    skipped: tuple[str, ...] = ()
    # What the parser noted (read leniently, did not add up...), for the operator; not failures.
    warnings: tuple[str, ...] = ()
    validator: str = "great_expectations"

    @property
    def period(self) -> tuple[date | None, date | None]:
        return self.from_date, self.to_date

    def check_results(self) -> dict[str, str]:
        """Every check's verdict for this statement: "passed", "failed" or "skipped"."""
        failed = {f.check for f in self.failures}
        skipped = {s.split(":", 1)[0] for s in self.skipped}
        return {name: "failed" if name in failed else "skipped" if name in skipped else "passed"
                for name in CHECKS}

    def failed_checks(self) -> list[str]:
        return [name for name, verdict in self.check_results().items() if verdict == "failed"]

    def as_json(self) -> dict[str, Any]:
        """A compact, JSON-serialisable summary (no per-row dumps beyond a few examples)."""
        return {
            "statement": {
                "account": self.account, "currency": self.currency,
                "statement_id": self.statement_id, "sequence": self.sequence, "kind": self.kind,
                "from_date": _iso(self.from_date), "to_date": _iso(self.to_date),
                "lines": self.line_count,
            },
            "passed": self.passed,
            "verdict": "accepted" if self.passed else "quarantined",
            "checks": self.check_results(),
            "failures": [{"check": f.check, "message": f.message} for f in self.failures],
            "skipped": list(self.skipped),
            "warnings": list(self.warnings),
            "validator": self.validator,
            "expectations": [e.as_json() for e in self.expectations],
        }

    def as_markdown(self) -> str:
        """The report as a Prefect markdown artifact."""
        verdict = "accepted" if self.passed else "QUARANTINED"
        period = (f"{_iso(self.from_date) or '?'} to {_iso(self.to_date) or '?'}"
                  if self.from_date or self.to_date else "not given")
        out = [
            f"## Statement {_md(self.statement_id)}: {verdict}",
            "",
            "| account | currency | kind | sequence | period | lines |",
            "|---|---|---|---|---|---|",
            (f"| {_md(mask_account(self.account))} | {_md(self.currency)} | "
             f"{_md(self.kind or '?')} | "
             f"{_md(self.sequence or '—')} | {period} | {self.line_count} |"),
            "",
        ]
        if self.failures:
            out += ["### Failures", ""]
            out += [f"- **{f.check}**: {_md(f.message)}" for f in self.failures]
            out.append("")
        out += ["### Checks", "", "| check | result | expectation | columns | unexpected |",
                "|---|---|---|---|---|"]
        for e in self.expectations:
            result = "error" if e.error else "pass" if e.success else "FAIL"
            unexpected = f"{e.unexpected_count} of {e.rows}"
            if e.examples:
                unexpected += " (e.g. " + ", ".join(_md(x) for x in e.examples) + ")"
            out.append(f"| {e.check} | {result} | {e.expectation} | {', '.join(e.columns)} | "
                       f"{unexpected} |")
        out.append("")
        if self.skipped:
            out += ["### Not checked", ""] + [f"- {_md(s)}" for s in self.skipped] + [""]
        if self.warnings:
            out += ["### Parser warnings", ""] + [f"- {_md(w)}" for w in self.warnings] + [""]
        return "\n".join(out)


def check_statement(statement: Statement, *, previous_closing: Money | None = None,
                    previous_sequence: str | None = None) -> CheckReport:
    """Check one statement, optionally against what the previous one closed with and was
    numbered."""
    previous: dict[tuple[str, str], PreviousStatement] = {}
    if previous_closing is not None or previous_sequence is not None:
        previous[(statement.account, statement.currency)] = PreviousStatement(
            closing_balance=previous_closing, sequence=previous_sequence, kind=statement.kind)
    return check_statements([statement], previous)[0]


def check_statements(
    statements: Iterable[Statement],
    previous: Mapping[tuple[str, str], PreviousStatement] | None = None,
) -> list[CheckReport]:
    """One report per statement, in the order given.

    Statements of one account, currency and kind of report are also checked against each other,
    ordered by date and then statement number: each opening against the closing before it and
    each number against the one before it. ``previous`` gives, per (account, currency), the
    statement before the first of the batch.
    """
    batch = list(statements)
    if not batch:
        return []
    import numpy as np

    facts = [_Facts(s) for s in batch]
    _chain(batch, facts, previous or {})
    lines = _line_frame(batch)
    _movements(batch, facts, lines)
    header = _header_frame(facts)
    validators = _validators()
    with validators.lock:
        line_result = validators.lines.run(batch_parameters={"dataframe": lines},
                                           result_format=_RESULT_FORMAT)
        header_result = validators.header.run(batch_parameters={"dataframe": header},
                                              result_format=_RESULT_FORMAT)
    stmt_of_line = lines["stmt"].to_numpy(dtype=np.int64)
    outcomes: list[list[ExpectationOutcome]] = [[] for _ in batch]
    failures = [_Messages() for _ in batch]
    for res in header_result.results:
        _collect(res, batch, facts, header, np.arange(len(batch)), outcomes, failures,
                 line_level=False)
    for res in line_result.results:
        _collect(res, batch, facts, lines, stmt_of_line, outcomes, failures, line_level=True)
    version = validators.version
    reports = []
    for i, (s, f) in enumerate(zip(batch, facts, strict=True)):
        flat = tuple(Failure(check, message) for check in CHECKS
                     for message in failures[i].shown(check))
        reports.append(CheckReport(
            account=s.account, currency=s.currency, statement_id=s.statement_id,
            sequence=s.sequence, from_date=s.from_date, to_date=s.to_date, kind=s.kind,
            line_count=len(s.lines), passed=not flat, failures=flat,
            expectations=tuple(sorted(outcomes[i], key=lambda e: _CHECK_ORDER[e.check])),
            skipped=tuple(f.skipped), warnings=tuple(s.warnings),
            validator=f"great_expectations {version}",
        ))
    return reports


# --- statement facts ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Facts:
    """What is known about one statement before GX sees it."""

    statement: Statement
    previous: PreviousStatement | None = None
    previous_label: str = ""
    movement_minor: int | None = None
    balance_gap: int | None = None
    continuity_gap: int | None = None
    sequence_number: int | None = None
    sequence_gap: int | None = None
    skipped: list[str] = field(default_factory=list)


def _family(kind: str | None) -> str:
    return _FAMILIES.get(kind or "", kind or "statement")


def _parse_sequence(text: str | None) -> tuple[int, int | None] | None:
    if text is None or not text.strip():
        return None
    match = _SEQUENCE.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), None if match.group(2) is None else int(match.group(2))


def _day(s: Statement) -> date | None:
    return s.from_date or s.to_date or (s.created_at.date() if s.created_at else None)


def _chain(batch: Sequence[Statement], facts: Sequence[_Facts],
           previous: Mapping[tuple[str, str], PreviousStatement]) -> None:
    """Give every statement the one before it, and work out the numbering step."""
    chains: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(batch):
        chains[(s.account, s.currency, _family(s.kind))].append(i)
    for (account, currency, family), members in chains.items():
        def order(i: int) -> tuple[Any, ...]:
            day = _day(batch[i])
            seq = _parse_sequence(batch[i].sequence)
            return (day is None, day or date.min, seq is None, seq[0] if seq else 0,
                    (seq[1] or 0) if seq else 0, i)
        members.sort(key=order)
        given = previous.get((account, currency))
        if given is not None and _family(given.kind) == family:
            facts[members[0]].previous = given
            facts[members[0]].previous_label = _label(given.statement_id, given.sequence)
        for before, after in itertools.pairwise(members):
            p = batch[before]
            facts[after].previous = PreviousStatement(p.closing_balance, p.sequence,
                                                      p.statement_id, p.kind)
            facts[after].previous_label = _label(p.statement_id, p.sequence)
    for f in facts:
        _sequence_facts(f)
        _continuity_facts(f)


def _label(statement_id: str | None, sequence: str | None) -> str:
    parts = [f"statement {statement_id}" if statement_id else "",
             f"sequence {sequence}" if sequence else ""]
    return ", ".join(p for p in parts if p)


def _sequence_facts(f: _Facts) -> None:
    s = f.statement
    mine = _parse_sequence(s.sequence)
    f.sequence_number = None if mine is None else mine[0]
    if s.sequence is None or not s.sequence.strip():
        f.skipped.append("sequence: the statement has no sequence number")
        return
    if mine is None:
        return  # not a number: the "number" expectation fails it
    prev = f.previous
    if prev is None or prev.sequence is None:
        f.skipped.append("sequence: no numbered previous statement to follow")
        return
    theirs = _parse_sequence(prev.sequence)
    if theirs is None:
        f.skipped.append(f"sequence: the previous statement's number {prev.sequence!r} is not a "
                         "number")
        return
    if mine[0] == 0 or theirs[0] == 0:
        f.skipped.append("sequence: statement number 0 means the bank does not number statements")
        return
    (n0, p0), (n1, p1) = theirs, mine
    if n1 == n0:
        f.sequence_gap = p1 - p0 - 1 if p0 is not None and p1 is not None else -1
    elif n1 > n0:
        f.sequence_gap = (n1 - n0 - 1) + (p1 - 1 if p1 is not None and p1 > 1 else 0)
    else:
        f.sequence_gap = n1 - n0


def _continuity_facts(f: _Facts) -> None:
    s, prev = f.statement, f.previous
    if prev is None or prev.closing_balance is None:
        f.skipped.append("continuity: no previous statement's closing balance to compare with")
        return
    if s.opening_balance is None:
        f.skipped.append("continuity: the statement has no opening balance")
        return
    if s.opening_balance.currency != prev.closing_balance.currency:
        f.skipped.append(f"continuity: the previous closing balance is in "
                         f"{prev.closing_balance.currency.code}, the opening in "
                         f"{s.opening_balance.currency.code}")
        return
    f.continuity_gap = s.opening_balance.minor - prev.closing_balance.minor


def _movements(batch: Sequence[Statement], facts: Sequence[_Facts], lines: pd.DataFrame) -> None:
    """Booked movement per statement from the line frame, and the balance gap."""
    booked = lines[(lines["status"] == "BOOK") & (lines["currency"] == lines["statement_currency"])]
    inexact = booked["amount_minor"].isna()
    sums = booked[~inexact].groupby("stmt")["amount_minor"].sum()
    uncounted = booked[inexact].groupby("stmt").size()
    for i, (s, f) in enumerate(zip(batch, facts, strict=True)):
        opening, closing = s.opening_balance, s.closing_balance
        if opening is None or closing is None:
            f.skipped.append("balance: the statement gives no opening and closing balance")
            continue
        if not (opening.currency.code == closing.currency.code == s.currency):
            f.skipped.append("balance: the balances are not both in the statement currency")
            continue
        if i in uncounted.index:
            f.skipped.append(f"balance: {int(uncounted[i])} booked line(s) cannot be counted in "
                             f"{s.currency} minor units")
            continue
        f.movement_minor = int(sums[i]) if i in sums.index else 0
        f.balance_gap = opening.minor + f.movement_minor - closing.minor


# --- the data frames ----------------------------------------------------------------------------


def _text_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _header_frame(facts: Sequence[_Facts]) -> pd.DataFrame:
    """One row of facts per statement; GX's header suite reads it."""
    import pandas as pd

    statements = [f.statement for f in facts]
    opening = [s.opening_balance for s in statements]
    closing = [s.closing_balance for s in statements]

    def objects(values: Iterable[object]) -> pd.Series:
        # Python ints and texts in an object column: exact at any size, and None stays null.
        return pd.Series(list(values), dtype=object)

    return pd.DataFrame({
        "stmt": range(len(facts)),
        "account": objects(_text_or_none(s.account) for s in statements),
        "statement_id": objects(_text_or_none(s.statement_id) for s in statements),
        "currency": objects(_text_or_none(s.currency) for s in statements),
        "kind": objects(s.kind or "" for s in statements),
        "opening_minor": objects(None if m is None else m.minor for m in opening),
        "closing_minor": objects(None if m is None else m.minor for m in closing),
        "opening_currency": objects(None if m is None else m.currency.code for m in opening),
        "closing_currency": objects(None if m is None else m.currency.code for m in closing),
        "period_from": _datetimes([s.from_date for s in statements]),
        "period_to": _datetimes([s.to_date for s in statements]),
        "balance_gap_minor": objects(f.balance_gap for f in facts),
        "continuity_gap_minor": objects(f.continuity_gap for f in facts),
        "sequence": objects(_text_or_none(s.sequence) for s in statements),
        "sequence_number": objects(f.sequence_number for f in facts),
        "sequence_gap": objects(f.sequence_gap for f in facts),
    })


def _datetimes(days: Sequence[date | None]) -> Any:
    import numpy as np

    return np.fromiter(
        (_NAT if d is None else d.toordinal() - _EPOCH_ORDINAL for d in days),
        dtype=np.int64, count=len(days),
    ).view("datetime64[D]")


def _amount_facts(amount: object) -> tuple[str | None, int | None, int, str | None, int | None]:
    """(text, minor units or None when not exact, decimals, currency code, its minor units) for
    anything shaped like Money: ``.amount`` (Decimal or text) and ``.currency`` (Currency or
    code)."""
    raw = getattr(amount, "amount", None)
    currency = getattr(amount, "currency", None)
    code = currency.code if isinstance(currency, Currency) else _text_or_none(currency)
    units = _MINOR_UNITS.get(code) if code is not None else None
    if raw is None:
        return None, None, 0, code, units
    try:
        number = raw if isinstance(raw, Decimal) else Decimal(str(raw).strip())
    except InvalidOperation:
        return str(raw), None, 0, code, units
    if not number.is_finite():
        return str(raw), None, 0, code, units
    text = f"{number:f}"
    decimals = _decimals(number)
    if units is None or decimals > units:
        return text, None, decimals, code, units
    return text, int(number.scaleb(units)), decimals, code, units


def _decimals(number: Decimal) -> int:
    """Decimals needed to write ``number`` exactly (trailing zeros carry no value)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0 or not any(digits):
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    return max(0, -exponent - trailing)


def _line_frame(batch: Sequence[Statement]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    counts = np.fromiter((len(s.lines) for s in batch), dtype=np.int64, count=len(batch))
    total = int(counts.sum())
    stmt = np.repeat(np.arange(len(batch), dtype=np.int64), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    line_no = np.arange(total, dtype=np.int64) - starts + 1
    nan = float("nan")

    # Column by column: comprehensions run several times faster than one loop of appends.
    flat = [line for s in batch for line in s.lines]
    objects = [line.amount for line in flat]
    # Money built on the ISO table's own Currency holds exactly its minor units (Money refuses
    # more), so it converts exactly. A Money on a hand-built Currency, or anything else shaped
    # like Money, is measured by _amount_facts instead.
    known = [_GENUINE_UNITS.get(id(a.currency)) if type(a) is Money else None for a in objects]
    with localcontext(Context(prec=80)):  # wide enough that scaleb never rounds
        minors: list[int | None] = [None if u is None else int(a.amount.scaleb(u))
                                    for a, u in zip(objects, known, strict=True)]
    amounts: list[str | None] = [None if u is None else str(a.amount)
                                 for a, u in zip(objects, known, strict=True)]
    codes: list[str | None] = [None if u is None else a.currency.code
                               for a, u in zip(objects, known, strict=True)]
    decimals: list[int] = [0 if u is None else u for u in known]
    units: list[float | int] = [nan if u is None else u for u in known]
    for row in [i for i, u in enumerate(known) if u is None]:
        text, minor, places, code, unit = _amount_facts(objects[row])
        amounts[row], minors[row], decimals[row], codes[row] = text, minor, places, code
        units[row] = nan if unit is None else unit
    statuses = [line.status for line in flat]
    bookings = [line.booking_date for line in flat]
    values = [line.value_date for line in flat]
    days: dict[date | None, int] = {d: d.toordinal() - _EPOCH_ORDINAL
                                    for d in {*bookings, *values} if d is not None}
    days[None] = _NAT
    booked = [days[d] for d in bookings]
    dated = [days[b if b is not None else v] for b, v in zip(bookings, values, strict=True)]
    refs: list[str | None] = [line.entry_ref or None for line in flat]
    keys: list[str | None] = (
        [None if r is None else f"{i}\x1f{r}" for i, r in zip(stmt.tolist(), refs, strict=True)]
        if any(refs) else refs)

    exact = [m for m in minors if m is not None]
    if len(exact) == total and (not exact or -_INT64_MAX <= min(exact) and max(exact) <= _INT64_MAX):
        minor_column: Any = np.array(exact, dtype=np.int64)
    else:
        # Nulls (amounts that are not exact) or amounts beyond int64: exact Python ints.
        minor_column = pd.Series(minors, dtype=object)
    currencies = [s.currency for s in batch]
    periods_from = _datetimes([s.from_date for s in batch])
    periods_to = _datetimes([s.to_date for s in batch])
    return pd.DataFrame({
        "stmt": stmt,
        "line_no": line_no,
        "amount": pd.Series(amounts, dtype=object),
        "amount_minor": minor_column,
        "amount_decimals": np.array(decimals, dtype=np.int64),
        "currency": pd.Series(codes, dtype=object),
        "currency_minor_units": np.array(units, dtype=np.float64),
        "statement_currency": pd.Series(np.array(currencies, dtype=object)[stmt] if total
                                        else [], dtype=object),
        "status": pd.Series(statuses, dtype=object),
        "booking_date": np.array(booked, dtype=np.int64).view("datetime64[D]"),
        "entry_date": np.array(dated, dtype=np.int64).view("datetime64[D]"),
        "period_from": periods_from[stmt] if total else periods_from[:0],
        "period_to": periods_to[stmt] if total else periods_to[:0],
        "entry_ref": pd.Series(refs, dtype=object),
        "entry_key": pd.Series(keys, dtype=object),
    })


# --- GX -----------------------------------------------------------------------------------------

_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": _EXAMPLES,
    "return_unexpected_index_query": False,
}


@dataclass
class _Validators:
    lines: Any
    header: Any
    version: str
    lock: threading.Lock


_BUILD_LOCK = threading.Lock()
_VALIDATORS: _Validators | None = None


def _validators() -> _Validators:
    global _VALIDATORS
    with _BUILD_LOCK:
        if _VALIDATORS is None:
            _VALIDATORS = _build()
        return _VALIDATORS


def _expectations() -> Any:
    """GX's expectation classes (its package re-exports them without marking them so)."""
    return importlib.import_module("great_expectations.expectations")


def _header_expectations() -> list[Any]:
    gxe = _expectations()
    from great_expectations.expectations.row_conditions import Column

    def meta(check: str, rule: str) -> dict[str, str]:
        return {"check": check, "rule": rule}

    balanced = Column("kind").is_in(sorted(BALANCED_KINDS))
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="account", meta=meta("required_fields",
                                                                      "account")),
        gxe.ExpectColumnValuesToNotBeNull(column="statement_id",
                                          meta=meta("required_fields", "statement_id")),
        gxe.ExpectColumnValuesToNotBeNull(column="currency", meta=meta("required_fields",
                                                                       "currency")),
        gxe.ExpectColumnValuesToNotBeNull(column="opening_minor", row_condition=balanced,
                                          meta=meta("required_fields", "opening")),
        gxe.ExpectColumnValuesToNotBeNull(column="closing_minor", row_condition=balanced,
                                          meta=meta("required_fields", "closing")),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(CURRENCIES),
                                        meta=meta("statement_currency", "known")),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="opening_currency", column_B="currency",
                                            ignore_row_if="either_value_is_missing",
                                            meta=meta("statement_currency", "opening")),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="closing_currency", column_B="currency",
                                            ignore_row_if="either_value_is_missing",
                                            meta=meta("statement_currency", "closing")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="period_to", column_B="period_from",
                                                    or_equal=True,
                                                    ignore_row_if="either_value_is_missing",
                                                    meta=meta("period", "order")),
        gxe.ExpectColumnValuesToBeInSet(column="balance_gap_minor", value_set=[0],
                                        meta=meta("balance", "gap")),
        gxe.ExpectColumnValuesToBeInSet(column="continuity_gap_minor", value_set=[0],
                                        meta=meta("continuity", "gap")),
        gxe.ExpectColumnValuesToNotBeNull(column="sequence_number",
                                          row_condition=Column("sequence").is_not_null(),
                                          meta=meta("sequence", "number")),
        gxe.ExpectColumnValuesToBeInSet(column="sequence_gap", value_set=[0],
                                        meta=meta("sequence", "gap")),
    ]


def _line_expectations() -> list[Any]:
    from great_expectations.expectations.row_conditions import Column

    gxe = _expectations()
    booked = Column("status") == "BOOK"

    def meta(check: str, rule: str) -> dict[str, str]:
        return {"check": check, "rule": rule}

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="amount", meta=meta("line_required_fields",
                                                                     "amount")),
        gxe.ExpectColumnValuesToNotBeNull(column="currency", meta=meta("line_required_fields",
                                                                       "currency")),
        gxe.ExpectColumnValuesToNotBeNull(column="status", meta=meta("line_required_fields",
                                                                     "status")),
        gxe.ExpectColumnValuesToNotBeNull(column="entry_date", meta=meta("line_required_fields",
                                                                         "date")),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(CURRENCIES),
                                        meta=meta("line_currency", "known")),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="currency", column_B="statement_currency",
                                            ignore_row_if="either_value_is_missing",
                                            meta=meta("line_currency", "statement")),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(LINE_STATUSES),
                                        meta=meta("line_status", "known")),
        # A pending entry's booking date is when it is expected to book: often after the period.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="booking_date",
                                                    column_B="period_from", or_equal=True,
                                                    ignore_row_if="either_value_is_missing",
                                                    row_condition=booked,
                                                    meta=meta("line_dates", "from")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="period_to",
                                                    column_B="booking_date", or_equal=True,
                                                    ignore_row_if="either_value_is_missing",
                                                    row_condition=booked,
                                                    meta=meta("line_dates", "to")),
        gxe.ExpectColumnValuesToNotBeInSet(column="amount_minor", value_set=[0],
                                           meta=meta("line_amount_nonzero", "zero")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="currency_minor_units",
                                                    column_B="amount_decimals", or_equal=True,
                                                    ignore_row_if="either_value_is_missing",
                                                    meta=meta("line_amount_decimals",
                                                              "decimals")),
        gxe.ExpectColumnValuesToBeUnique(column="entry_key", meta=meta("entry_ref_unique",
                                                                       "unique")),
    ]


def _build() -> _Validators:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("yinqi_statement_checks")
    definitions = {}
    for name, expectations in (("lines", _line_expectations()),
                               ("header", _header_expectations())):
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=f"statement_{name}",
                                                       expectations=expectations))
        definitions[name] = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"statement_{name}", data=batch, suite=suite))
    return _Validators(lines=definitions["lines"], header=definitions["header"],
                       version=gx.__version__, lock=threading.Lock())


# --- GX results to reports ----------------------------------------------------------------------

_CHECK_ORDER = {name: i for i, name in enumerate(CHECKS)}


class _Messages:
    """One statement's failure lines per check, at most MAX_LINES_PER_CHECK shown each."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = defaultdict(list)
        self.hidden: dict[str, int] = defaultdict(int)

    def add(self, check: str, messages: Iterable[str], total: int | None = None) -> None:
        """``total``: how many problems ``messages`` stand for, when only some were written."""
        kept = self.lines[check]
        written = 0
        for message in messages:
            written += 1
            if len(kept) < MAX_LINES_PER_CHECK:
                kept.append(message)
            else:
                self.hidden[check] += 1
        if total is not None and total > written:
            self.hidden[check] += total - written

    def shown(self, check: str) -> list[str]:
        lines = list(self.lines.get(check, []))
        more = self.hidden.get(check, 0)
        if more:
            lines.append(f"... and {more} more like these")
        return lines


def _exception(info: Any) -> str | None:
    """GX's exception_info is one dict, or one per metric; the first raised message."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        if not info.get("raised_exception"):
            return None
        return " ".join(str(info.get("exception_message") or "raised an exception").split())
    for value in info.values():
        message = _exception(value)
        if message:
            return message
    return None


def _collect(res: Any, batch: Sequence[Statement], facts: Sequence[_Facts], frame: pd.DataFrame,
             stmt_of_row: Any, outcomes: list[list[ExpectationOutcome]],
             failures: list[_Messages], *, line_level: bool) -> None:
    import numpy as np

    config = res.expectation_config
    check, rule = config.meta["check"], config.meta["rule"]
    kwargs = config.kwargs
    columns = tuple(kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs)
    rows_per_stmt = (np.bincount(stmt_of_row, minlength=len(batch)) if line_level
                     else np.ones(len(batch), dtype=np.int64))
    error = _exception(res.exception_info)
    if error is not None:
        for i in range(len(batch)):
            outcomes[i].append(ExpectationOutcome(check, config.type, columns, False,
                                                  int(rows_per_stmt[i]), 0, (), error))
            failures[i].add(check, [f"{check} could not be checked: {error}"])
        return
    result = res.result or {}
    index = np.asarray(result.get("unexpected_index_list") or [], dtype=np.int64)
    positions = frame.index.get_indexer(index) if len(index) else index
    stmts = stmt_of_row[positions] if len(positions) else positions
    per_stmt: dict[int, list[int]] = defaultdict(list)
    for position, stmt in zip(positions.tolist(), stmts.tolist(), strict=True):
        per_stmt[stmt].append(position)
    for i in range(len(batch)):
        bad = per_stmt.get(i, [])
        examples = tuple(_example(frame, columns, p) for p in bad[:_EXAMPLES])
        outcomes[i].append(ExpectationOutcome(check, config.type, columns, not bad,
                                              int(rows_per_stmt[i]), len(bad), examples))
        if bad:
            failures[i].add(check, _messages(check, rule, batch[i], facts[i], frame, bad),
                            total=None if check == "entry_ref_unique" else len(bad))
    if not res.success and not per_stmt:
        # GX failed it but named no row (should not happen): never let a statement through.
        for i in range(len(batch)):
            failures[i].add(check, [f"{check}: the validator failed without naming a row"])


# The column GX checks is not always the one a person reads: show the reference, not its key.
_SHOWN_AS = {"entry_key": "entry_ref"}


def _example(frame: pd.DataFrame, columns: Sequence[str], position: int) -> str:
    values = [_shown(frame[_SHOWN_AS.get(c, c)].iat[position]) for c in columns]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _shown(value: object) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return "null"
    if isinstance(value, pd.Timestamp):
        return str(value.date())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _money(minor: int, currency: str) -> str:
    units = _MINOR_UNITS.get(currency, 2)
    return f"{Decimal(minor).scaleb(-units, Context(prec=80)):f}"


def _messages(check: str, rule: str, s: Statement, f: _Facts, frame: pd.DataFrame,
              positions: list[int]) -> list[str]:
    if check.startswith("line_") or check == "entry_ref_unique":
        return _line_messages(check, rule, s, frame, positions)
    return [_statement_message(check, rule, s, f)]


def _statement_message(check: str, rule: str, s: Statement, f: _Facts) -> str:
    kind = s.kind or "statement"
    if check == "required_fields":
        return {
            "account": "the statement names no account",
            "statement_id": "the statement has no statement id",
            "currency": "the statement has no currency",
            "opening": f"no opening balance: a {kind} statement must give one",
            "closing": f"no closing balance: a {kind} statement must give one",
        }[rule]
    if check == "statement_currency":
        if rule == "known":
            return f"statement currency {s.currency!r} is not an ISO 4217 code Yinqi knows"
        balance = s.opening_balance if rule == "opening" else s.closing_balance
        code = balance.currency.code if balance is not None else "?"
        return f"the {rule} balance is in {code} but the statement is in {s.currency}"
    if check == "period":
        return f"the period ends {_iso(s.to_date)}, before it starts {_iso(s.from_date)}"
    if check == "balance":
        assert s.opening_balance is not None and s.closing_balance is not None
        movement = f.movement_minor or 0
        added = s.opening_balance.minor + movement
        return (f"opening {s.opening_balance.amount:f} + entries {_money(movement, s.currency)} "
                f"= {_money(added, s.currency)} but closing says {s.closing_balance.amount:f} "
                f"{s.currency} (difference {_money(s.closing_balance.minor - added, s.currency)})")
    if check == "continuity":
        assert s.opening_balance is not None and f.previous is not None
        assert f.previous.closing_balance is not None
        return (f"opening {s.opening_balance.amount:f} {s.currency} is not the previous "
                f"statement's closing {f.previous.closing_balance.amount:f} "
                f"{f.previous.closing_balance.currency.code}"
                + (f" ({f.previous_label})" if f.previous_label else ""))
    if check == "sequence":
        if rule == "number":
            return f"sequence {s.sequence!r} is not a statement number like 5 or 00005/001"
        gap = f.sequence_gap or 0
        previous = f.previous.sequence if f.previous is not None else "?"
        named = (f" (statement {f.previous.statement_id})"
                 if f.previous is not None and f.previous.statement_id else "")
        if gap > 0:
            return (f"sequence {s.sequence} follows {previous}{named}: "
                    f"{gap} statement{'s' if gap != 1 else ''} or page{'s' if gap != 1 else ''} "
                    "missing in between")
        if _parse_sequence(s.sequence) == _parse_sequence(previous):
            return f"sequence {s.sequence} repeats the previous statement's number{named}"
        return f"sequence {s.sequence} comes after {previous}{named}: it goes back"
    return f"{check} failed"


def _line_messages(check: str, rule: str, s: Statement, frame: pd.DataFrame,
                   positions: list[int]) -> list[str]:
    line_no = frame["line_no"].to_numpy()
    if check == "entry_ref_unique":
        by_ref: dict[str, list[int]] = defaultdict(list)
        for p in positions:
            by_ref[str(frame["entry_ref"].iat[p])].append(int(line_no[p]))
        return [f"entry reference {ref!r} is on lines {_and(sorted(nos))}"
                for ref, nos in by_ref.items()]
    out = []
    # Only the lines that will be shown are written; the caller counts the rest.
    for p in positions[:MAX_LINES_PER_CHECK]:
        n = int(line_no[p])
        line = s.lines[n - 1]
        where = _where(n, line)
        amount = frame["amount"].iat[p]
        code = frame["currency"].iat[p]
        shown = f"{amount} {code}" if amount is not None else "(none)"
        out.append(_line_message(check, rule, s, line, where, shown, code, frame, p))
    return out


def _line_message(check: str, rule: str, s: Statement, line: Any, where: str, shown: str,
                  code: str | None, frame: pd.DataFrame, p: int) -> str:
    if check == "line_required_fields":
        return {
            "amount": f"{where}: no amount",
            "currency": f"{where}: amount {shown} names no currency",
            "status": f"{where}: no status (BOOK, PDNG, INFO or FUTR)",
            "date": f"{where}: neither a booking date nor a value date",
        }[rule]
    if check == "line_currency":
        if rule == "known":
            return f"{where}: currency {code!r} is not an ISO 4217 code Yinqi knows"
        return f"{where}: amount {shown} is not in the statement currency {s.currency}"
    if check == "line_status":
        return f"{where}: status {line.status!r} is not one of {', '.join(LINE_STATUSES)}"
    if check == "line_dates":
        if rule == "from":
            return (f"{where}: booked {_iso(line.booking_date)}, before the statement period "
                    f"starts ({_iso(s.from_date)})")
        return (f"{where}: booked {_iso(line.booking_date)}, after the statement period ends "
                f"({_iso(s.to_date)})")
    if check == "line_amount_nonzero":
        return f"{where}: amount {shown} is zero"
    if check == "line_amount_decimals":
        places = int(frame["amount_decimals"].iat[p])
        units = int(frame["currency_minor_units"].iat[p])
        return (f"{where}: amount {shown} has {places} decimal{'s' if places != 1 else ''} "
                f"but {code} has {units}")
    return f"{where}: {check} failed"


def _where(n: int, line: Any) -> str:
    ref = getattr(line, "entry_ref", None) or getattr(line, "bank_reference", None)
    return f"line {n} ({ref})" if ref else f"line {n}"


def _and(numbers: Sequence[int]) -> str:
    shown = [str(n) for n in numbers]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _md(text: str) -> str:
    # Bank text in a Prefect artifact: account numbers masked, markdown and HTML inert.
    from yinqi.security.masking import escape_markdown, redact

    return escape_markdown(redact(str(text)))


__all__ = [
    "BALANCED_KINDS",
    "CHECKS",
    "LINE_STATUSES",
    "CheckReport",
    "ExpectationOutcome",
    "Failure",
    "PreviousStatement",
    "check_statement",
    "check_statements",
]
