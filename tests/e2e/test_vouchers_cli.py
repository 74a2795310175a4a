"""`yinqi vouchers import FILE --json`: the contract of the design brief, as an operator runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_support import yinqi

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers"
CONTRACT_KEYS = {"file", "sha256", "accepted", "quarantined", "duplicates", "payments"}



@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    base.update(YINQI_HOME=str(tmp_path / "home"), YINQI_DATABASE_URL=db_url, COLUMNS="200")
    yinqi("init", env=base)
    return base


def test_import_prints_the_contract_and_a_second_import_accepts_nothing(
    env: dict[str, str]
) -> None:
    gbk = SAMPLES / "erp-payments-gbk.csv"
    first = json.loads(yinqi("vouchers", "import", str(gbk), "--json", env=env).stdout)
    assert set(first) == CONTRACT_KEYS
    assert (first["accepted"], first["payments"], first["duplicates"]) == (40, 40, [])
    assert first["quarantined"][0] == {"row": 42, "reason": "金额 '-100.00': amount must be positive"}
    assert [q["row"] for q in first["quarantined"]] == [42, 43, 44, 45, 46, 47]
    assert first["file"] == str(gbk) and len(first["sha256"]) == 64

    again = json.loads(yinqi("vouchers", "import", str(gbk), "--json", env=env).stdout)
    assert (again["accepted"], again["payments"], again["quarantined"]) == (0, 0, [])
    assert len(again["duplicates"]) == 46
    assert again["duplicates"][0] == {"row": 2, "external_ref": "FK2026000001"}

    as_json = json.loads(yinqi("vouchers", "import", str(SAMPLES / "erp-payments.json"),
                               "--mapping", "erp-cn", "--as", "zhou.maker", "--json",
                               env=env).stdout)
    assert as_json["accepted"] == 0 and len(as_json["duplicates"]) == 10
    assert "audit chain intact" in yinqi("audit", "verify", env=env).stdout


def test_the_readable_output_lists_the_quarantined_rows(env: dict[str, str]) -> None:
    out = yinqi("vouchers", "import", str(SAMPLES / "erp-payments-utf8.csv"), "--source", "oa",
                env=env).stdout
    assert "40 accepted" in out and "6 quarantined" in out
    assert "联行号 '10210009999': has 11 digits, a CNAPS code has 12" in out


@pytest.mark.parametrize("content", [None, b"\x80\x81\xff\xfe\x00", b"a,b\r\n1,2\r\n"])
def test_a_bad_file_exits_2_with_one_line(tmp_path: Path, env: dict[str, str],
                                          content: bytes | None) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    proc = yinqi("vouchers", "import", str(path), "--json", env=env, check=2)
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_an_unknown_mapping_exits_2_naming_the_known_ones(env: dict[str, str]) -> None:
    proc = yinqi("vouchers", "import", str(SAMPLES / "erp-payments.json"), "--mapping", "sap",
                 env=env, check=2)
    assert "unknown voucher mapping 'sap'" in proc.stderr and "erp-cn" in proc.stderr
