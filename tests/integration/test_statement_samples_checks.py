"""Real bank files through the parser and the data-quality checks, without a crash.

Every statement file (camt.052/053/054, MT940/MT942) in the shared real-world corpus
(../shared/samples, absent on a fresh clone: those tests skip and say so) and in the shipped
fixtures ends one of three ways, never with an exception escaping:

- refused by the parser with one line naming the file (nothing to check),
- accepted: every check passed,
- quarantined: at least one check failed, each failure one readable line.

Several real files do not add up (they were cut down from real statements); those must be
quarantined by the ``balance`` check exactly when the parser says they do not add up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from yinqi.bankdata import Statement
from yinqi.errors import InvalidValue
from yinqi.statement_checks import CHECKS, CheckReport, check_statements

try:
    from connectors.statement_files import parse_file
except ImportError:  # before the file reader moved out of the CLI
    from yinqi.cli.statements_cmd import parse_file  # type: ignore[attr-defined,no-redef,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "samples"
FIXTURES = ROOT / "tests" / "fixtures"

_CAMT = re.compile(rb"camt\.05[234]\.001")


def is_statement_file(path: Path) -> bool:
    """camt.052/053/054 by namespace; any non-XML file in an MT940 folder is meant as one."""
    data = path.read_bytes()
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return bool(_CAMT.search(data[:4096]))
    return True


def statement_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*")
                  if p.is_file() and p.name != "README.md" and is_statement_file(p))


def params(*folders: Path) -> list[object]:
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        return [pytest.param(None, id="absent", marks=pytest.mark.skip(
            reason=f"real-world samples not present at {missing[0]} (fresh clone)"))]
    root = folders[0].parent
    return [pytest.param(p, id=str(p.relative_to(root))) for p in statement_files(*folders)]


@dataclass
class Outcome:
    path: Path
    refused: str | None = None
    statements: list[Statement] = field(default_factory=list)
    reports: list[CheckReport] = field(default_factory=list)

    def verdicts(self) -> list[list[str]] | str:
        """"refused", or per statement the checks that failed ([] when accepted)."""
        if self.refused is not None:
            return "refused"
        return [r.failed_checks() for r in self.reports]


def run(path: Path) -> Outcome:
    """One file as it would arrive: parsed, then its statements checked as one batch."""
    try:
        statements = parse_file(path)
    except InvalidValue as exc:  # the parser's FormatError: the file is unreadable
        return Outcome(path, refused=str(exc))
    return Outcome(path, statements=statements, reports=check_statements(statements))


def assert_sound(outcome: Outcome) -> None:
    if outcome.refused is not None:
        assert "\n" not in outcome.refused
        assert outcome.refused.startswith(str(outcome.path))
        return
    assert len(outcome.reports) == len(outcome.statements) >= 1
    for statement, report in zip(outcome.statements, outcome.reports, strict=True):
        assert report.statement_id == statement.statement_id
        assert report.passed == (not report.failures)
        for failure in report.failures:
            assert failure.check in CHECKS
            assert failure.message and "\n" not in failure.message
        adds_up = statement.balances_add_up()
        if adds_up is False:
            assert "balance" in report.failed_checks(), (statement.warnings, report.failures)
        elif adds_up is True:
            assert "balance" not in report.failed_checks(), report.failures
        data = json.loads(json.dumps(report.as_json()))
        assert data["passed"] is report.passed
        assert data["verdict"] == ("accepted" if report.passed else "quarantined")
        markdown = report.as_markdown()
        assert ("accepted" if report.passed else "QUARANTINED") in markdown


@pytest.mark.parametrize("path", params(SHARED / "iso20022", SHARED / "mt940"))
def test_every_real_statement_file_is_accepted_quarantined_or_refused(path: Path) -> None:
    assert_sound(run(path))


@pytest.mark.parametrize("path", params(FIXTURES / "iso20022", FIXTURES / "mt940"))
def test_every_shipped_statement_fixture_is_accepted_quarantined_or_refused(path: Path) -> None:
    assert_sound(run(path))


# What the shipped fixtures come to, per statement in file order: the checks that fail.
# Read off the files: balances from :60F:/:62F: (or Bal) against the sum of the entries, periods
# from the balance dates (or FrToDt) against the entry dates.
EXPECTED = {
    "mt940/generic.sta": [[], []],
    "mt940/sns.sta": [[], []],
    "mt940/test-rabo.swi": [[], [], [], []],
    "mt940/rabobank-iban.sta": [[], []],
    "mt940/knab.sta": [[], ["balance", "continuity"]],
    "mt940/triodos.sta": [["balance"]],
    "mt940/ing.sta": [["balance"]],
    # Entry 1 is booked on 24 May, the day after the closing balance's date.
    "mt940/abnamro.sta": [["balance", "line_dates"], ["balance", "continuity"]],
    # Statement 2 opens with 1000.89 where statement 1 closed with 395.82.
    "mt940/rabobank.sta": [["balance"], ["continuity"], ["balance", "continuity"], []],
    # Page 2 (:60M: dated 2014-04-07) holds entries booked in December 2013.
    "mt940/postfinance.sta": [[], ["balance", "line_dates"]],
    # Entry dates 0220 against value dates 140120 and a closing balance dated 2014-01-20.
    "mt940/test-ing-old.940": [["line_dates"]],
    "mt940/test-wrong-file.940": "refused",
    "mt940/test-sns.940": "refused",
    "iso20022/samples/FI_camt_053_sample.xml.xml": [[]],
    "iso20022/samples/FI_camt_052_sample.xml.xml": [[], []],
    "iso20022/samples/FI_camt_054_sample.xml.xml": [[]],
    "iso20022/samples/statement_1.xml": [[]],
    "iso20022/samples/test-camt053.xml": [["balance"]],
    # BookgDt 2014-01-04 in a statement whose period is 2014-01-05.
    "iso20022/samples/test-camt053-bookgdt-dttm.xml": [["balance", "line_dates"]],
    # A camt.053 without any balance cannot be reconciled.
    "iso20022/samples/test-sepa-camt-053-unpaid.xml": [["required_fields"]],
    # The pending entry's booking date (2024-03-02) lies after the period: it has not booked.
    "iso20022/edge/camt053_v08_dbit_opening.xml": [[]],
    "iso20022/edge/camt053_v02_no_entries.xml": [[]],
    "iso20022/edge/camt053_cny_three_decimals.xml": "refused",
    "iso20022/edge/camt053_unknown_currency.xml": "refused",
}


@pytest.mark.parametrize(("name", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_what_the_shipped_fixtures_come_to(name: str, expected: list[list[str]] | str) -> None:
    outcome = run(FIXTURES / name)
    assert outcome.verdicts() == expected, [r.failures for r in outcome.reports]


def test_a_quarantined_fixture_says_what_and_where() -> None:
    outcome = run(FIXTURES / "mt940" / "abnamro.sta")
    first, second = outcome.reports
    assert [f.message for f in first.failures] == [
        ("opening 3236.28 + entries -321.44 = 2914.84 but closing says 876.84 EUR "
         "(difference -2038.00)"),
        "line 1: booked 2011-05-24, after the statement period ends (2011-05-23)",
    ]
    assert ("continuity", ("opening 2876.84 EUR is not the previous statement's closing "
                           "876.84 EUR (statement ABN AMRO BANK NV, sequence 19321/1)")
            ) in second.failures
