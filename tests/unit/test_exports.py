"""Exports: text from a bank can never become a spreadsheet formula."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from yinqi.exports import safe_cell, safe_text, write_csv, write_xlsx

EVIL = ["=HYPERLINK(\"http://x\",\"click\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)",
        "\t=1+1", "\r=1+1", "＝1+1", "=1+1"]


@pytest.mark.parametrize("text", EVIL)
def test_formula_looking_text_is_made_literal(text: str) -> None:
    assert safe_text(text) == "'" + text


@pytest.mark.parametrize("text", ["苏州工业园区精密制造有限公司", "Acme (GmbH)", "a=b", "1,234.50",
                                  "'already quoted", ""])
def test_ordinary_text_is_untouched(text: str) -> None:
    assert safe_text(text) == text


def test_numbers_stay_numbers_and_floats_are_refused() -> None:
    assert safe_cell(Decimal("-12.50")) == Decimal("-12.50")
    assert safe_cell(-1250) == -1250
    with pytest.raises(TypeError, match="never a float"):
        safe_cell(12.5)


def test_csv_cells_are_literal() -> None:
    import csv
    import io

    data = write_csv([{"name": t, "amount": Decimal("1.00")} for t in EVIL], ["name", "amount"])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["name", "amount"]
    assert [r[0] for r in rows[1:]] == ["'" + t for t in EVIL]
    assert {r[1] for r in rows[1:]} == {"1.00"}


def test_xlsx_has_no_formula_cell(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "r.xlsx", {"=evil": (["name", "amount"],
                                                     [{"name": t, "amount": Decimal("-5.00")}
                                                      for t in EVIL])})
    book = load_workbook(path)
    sheet = book.worksheets[0]
    assert sheet.title == "'=evil"
    cells = [c for row in sheet.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    names = [sheet.cell(row=r, column=1).value for r in range(2, len(EVIL) + 2)]
    assert names == ["'" + t for t in EVIL]
    assert sheet.cell(row=2, column=2).value == -5


def test_xlsx_titles_replace_the_column_names_only(tmp_path: Path) -> None:
    rows = [{"payee": "=1+1", "amount": Decimal("7.10")}]
    path = write_xlsx(tmp_path / "t.xlsx", {"付款": (["payee", "amount"], rows)},
                      titles={"payee": "收款人", "amount": "=金额"})
    sheet = load_workbook(path)["付款"]
    assert [c.value for c in sheet[1]] == ["收款人", "'=金额"]  # titles are guarded too
    assert [c.value for c in sheet[2]] == ["'=1+1", 7.1]
