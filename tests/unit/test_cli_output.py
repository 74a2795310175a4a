"""How wide the commands' tables are: COLUMNS when set (read at each print, not at import),
the terminal's width on a terminal, and wide enough in a file or a pipe that no row wraps."""

from __future__ import annotations

import io

import pytest
from rich.table import Table

from yinqi.cli.output import FILE_WIDTH, console

HEADERS = ("id", "end-to-end id", "amount", "category", "maker", "levels", "next",
           "waiting since", "li.approver may approve")
ROW = ("17", "YQ30CA35E2E0000000000017", "1,500,000.00 CNY", "supplier", "zhang.maker",
       "approver, finance_manager, cfo", "finance_manager", "2026-11-26 09:30 UTC", "yes")


def _printed(**options: object) -> str:
    out = io.StringIO()
    table = Table()
    for header in HEADERS:
        table.add_column(header)
    table.add_row(*ROW)
    # A console made as the module's are, writing where the test says (not a terminal).
    type(console)(file=out, highlight=False, **options).print(table)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_terminal_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def test_a_file_gets_whole_rows() -> None:
    text = _printed()
    assert all(header in text for header in HEADERS), text
    assert all(cell in text for cell in ROW), text
    assert len(text.splitlines()) == 5  # top rule, header, rule, the row, bottom rule
    assert max(len(line) for line in text.splitlines()) < FILE_WIDTH


def test_columns_is_read_when_printing_not_when_the_console_is_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Made while COLUMNS says 80 (an import under a parent that exported it), printing later.
    monkeypatch.setenv("COLUMNS", "80")
    made = type(console)(file=io.StringIO(), highlight=False)
    monkeypatch.setenv("COLUMNS", "60")
    assert made.width == 60
    monkeypatch.setenv("COLUMNS", "200")
    assert made.width == 200
    monkeypatch.delenv("COLUMNS")
    assert made.width == FILE_WIDTH


def test_columns_narrower_than_a_row_wraps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = _printed()
    assert "li.approver may approve" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
