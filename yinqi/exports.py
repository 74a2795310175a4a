"""Spreadsheet and CSV exports that bank text cannot turn into formulas.

A payee name or remittance line like ``=HYPERLINK(...)`` or ``+cmd|' /C calc'!A0`` is data.
Every text cell that a spreadsheet would read as a formula (or as a DDE call) is written
with a leading apostrophe, which Excel and LibreOffice show as the literal text (OWASP's
advice for CSV injection); in XLSX the cell is also typed as a string, never a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

#: First characters that make a spreadsheet treat text as a formula or command.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_text(value: str) -> str:
    """``value`` as literal text: a leading apostrophe when it could start a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


def safe_cell(value: Any) -> Any:
    """A cell value for export: numbers and dates stay typed, everything else is safe text."""
    if value is None or isinstance(value, bool | int | Decimal | date | datetime):
        return value
    if isinstance(value, float):
        raise TypeError("money is never a float: export Decimal or integer minor units")
    return safe_text(str(value))


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_text(c) for c in columns])
    for row in rows:
        writer.writerow(["" if (v := safe_cell(row.get(c))) is None else v for c in columns])
    # UTF-8 with BOM: Excel in a Chinese locale opens it as UTF-8, not GBK.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def write_xlsx(path: Path, sheets: Mapping[str, tuple[Sequence[str], Iterable[Mapping[str, Any]]]],
               titles: Mapping[str, str] | None = None) -> Path:
    """One sheet per entry: (columns, rows), each row a mapping by column. The first row
    titles each column by ``titles`` (e.g. in the reader's language), else by its name. Text
    cells are strings, never formulas."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import TYPE_STRING

    book = Workbook()
    book.remove(book.active)
    for title, (columns, rows) in sheets.items():
        sheet = book.create_sheet(title=safe_text(title)[:31])
        sheet.append([safe_text((titles or {}).get(c, c)) for c in columns])
        for row in rows:
            sheet.append([safe_cell(row.get(c)) for c in columns])
        for cells in sheet.iter_rows(min_row=1):
            for cell in cells:
                if isinstance(cell.value, str):
                    cell.data_type = TYPE_STRING  # never "f" (formula), whatever it starts with
        sheet.freeze_panes = "A2"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path
