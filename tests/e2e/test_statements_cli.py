"""`yinqi statements parse FILE --json`: the contract of the design brief, on every sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "samples"
STATEMENT_KEYS = {"account", "currency", "statement_id", "sequence", "opening_balance",
                  "closing_balance", "entries", "warnings"}
ENTRY_KEYS = {"amount", "booking_date", "value_date", "end_to_end_id", "bank_reference",
              "counterparty_name", "counterparty_account", "remittance", "is_reversal"}


def corpus() -> list[Path]:
    files = sorted((FIXTURES / "mt940").glob("*")) + sorted(
        p for p in (FIXTURES / "iso20022" / "samples").glob("*.xml")
        if "camt" in p.name.lower() or p.name.startswith("statement"))
    if SHARED.exists():
        files += sorted((SHARED / "mt940").glob("*")) + sorted((SHARED / "iso20022").glob("*"))
    return [f for f in files if f.is_file()]


def parse(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    return subprocess.run([sys.executable, "-m", "yinqi", "statements", "parse", str(path),
                           "--json"], env=env, capture_output=True, text=True, timeout=60)


def test_every_sample_parses_or_is_refused_in_one_line() -> None:
    # In process (a subprocess per file would take a minute); the CLI's own exit code and
    # stderr line are checked on a few files below.
    from yinqi.cli.statements_cmd import parse_file, statement_json
    from yinqi.errors import InvalidValue

    files = corpus()
    assert len(files) > 30
    parsed = refused = 0
    for path in files:
        try:
            statements = [statement_json(s) for s in parse_file(path)]
        except InvalidValue as exc:
            refused += 1
            assert "\n" not in str(exc) and str(path) in str(exc), exc
            continue
        parsed += 1
        assert statements, path
        json.dumps(statements)
        for s in statements:
            assert set(s) == STATEMENT_KEYS, path
            for e in s["entries"]:
                assert set(e) == ENTRY_KEYS, path
                assert isinstance(e["amount"], str) and isinstance(e["is_reversal"], bool)
    assert parsed > 20 and refused > 3


@pytest.mark.parametrize("name", ["mt940/sepa_mt9401.sta", "iso20022/samples/FI_camt_053_sample.xml.xml"])
def test_the_command_prints_the_contract(name: str) -> None:
    proc = parse(FIXTURES / name)
    assert proc.returncode == 0, proc.stderr
    for s in json.loads(proc.stdout):
        assert set(s) == STATEMENT_KEYS


def test_a_statement_that_does_not_add_up_is_reported_as_written(tmp_path: Path) -> None:
    triodos = FIXTURES / "mt940" / "triodos.sta"
    [stmt] = json.loads(parse(triodos).stdout)
    assert (stmt["opening_balance"], stmt["closing_balance"]) == ("4975.09", "4370.79")
    from decimal import Decimal

    moved = sum(Decimal(e["amount"]) for e in stmt["entries"])
    assert Decimal("4975.09") + moved != Decimal("4370.79")
    assert any("does not add up" in w for w in stmt["warnings"])


@pytest.mark.parametrize("content", [b"", b"<Document", b"hello world\n"])
def test_garbage_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(content)
    proc = parse(bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and str(bad) in proc.stderr
    assert parse(tmp_path / "missing.sta").returncode == 2
