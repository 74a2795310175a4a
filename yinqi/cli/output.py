"""Console output shared by the commands."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, ConsoleDimensions

from yinqi.i18n import _

if TYPE_CHECKING:
    from yinqi.store.risk_decisions import Outcome

#: Columns of output that goes to a file or a pipe when COLUMNS does not say: operators keep
#: listings in files and grep them, where a table row wrapped at 80 columns is a broken row.
FILE_WIDTH = 500


class _Console(Console):
    """Rich fixes a console's width from COLUMNS once, when it is made (here: at import);
    this one decides at each print: COLUMNS if set, else the terminal's width, else
    :data:`FILE_WIDTH`."""

    @property
    def size(self) -> ConsoleDimensions:
        measured = super().size
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return ConsoleDimensions(int(columns), measured.height)
        if self.is_terminal:
            return measured
        return ConsoleDimensions(FILE_WIDTH, measured.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)


def fail_line(message: str) -> None:
    # One line, even if a message from below carries a newline: operators grep these. A
    # message from below may quote a bank's text or a file's cell: account numbers masked.
    # Only the word "error" is translated: the message itself is the domain's English.
    from yinqi.security.masking import redact

    err_console.print(f"yinqi: {_('error')}: {redact(' '.join(message.split()))}",
                      markup=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def report_decision(outcome: Outcome, json_out: bool) -> None:
    """A person's decision (release, freeze, unfreeze ...): its message, or why it was refused
    and exit 1. The transaction has committed: a refusal and its audit event stay whatever the
    exit code."""
    if json_out:
        print_json(outcome.as_json())
    elif outcome.ok:
        console.print(outcome.message, markup=False, soft_wrap=True)
    else:
        err_console.print(_("refused: {reason}").format(reason=outcome.refused), markup=False,
                          soft_wrap=True)
    if not outcome.ok:
        raise typer.Exit(1)
