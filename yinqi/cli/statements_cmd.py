"""``yinqi statements parse FILE``: read a bank statement file the way Yinqi will use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from yinqi.bankdata import Statement
from yinqi.cli.output import console, print_json
from yinqi.i18n import _
from yinqi.security.masking import mask_account, redact
from connectors.statement_files import parse_file

app = typer.Typer(help="Bank statement files.", no_args_is_help=True)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def statement_json(s: Statement) -> dict[str, Any]:
    """The normalised form of the design brief's `statements parse --json` contract."""
    return {
        "account": s.account, "currency": s.currency, "statement_id": s.statement_id,
        "sequence": s.sequence,
        "opening_balance": _text(s.opening_balance.amount) if s.opening_balance else None,
        "closing_balance": _text(s.closing_balance.amount) if s.closing_balance else None,
        "entries": [{
            "amount": str(line.amount.amount),
            "booking_date": _text(line.booking_date), "value_date": _text(line.value_date),
            "end_to_end_id": line.end_to_end_id, "bank_reference": line.bank_reference,
            "counterparty_name": line.counterparty_name,
            "counterparty_account": line.counterparty_account,
            "remittance": line.remittance, "is_reversal": line.is_reversal,
        } for line in s.lines],
        "warnings": list(s.warnings),
    }


@app.command("parse")
def parse(
    file: Path = typer.Argument(..., help="A camt.052/053/054 or MT940/MT942 file."),
    json_out: bool = typer.Option(False, "--json", help="Print the statements as JSON."),
) -> None:
    """Print the normalised statement(s) of a file; a bad file exits 2 with one line."""
    statements = parse_file(file)
    if json_out:
        print_json([statement_json(s) for s in statements])
        return
    for s in statements:
        opening = s.opening_balance.amount if s.opening_balance else "—"
        closing = s.closing_balance.amount if s.closing_balance else "—"
        console.print(_("{kind} {statement_id} account {account} {currency}: {entries} entries, "
                        "opening {opening}, closing {closing}").format(
            kind=s.kind, statement_id=redact(s.statement_id or ""),
            account=mask_account(s.account), currency=s.currency, entries=len(s.lines),
            opening=opening, closing=closing), markup=False)
        for w in s.warnings:
            # The file's own text: shown as it is, never read as console markup.
            console.print(f"  [yellow]{escape(_('warning:'))}[/] {escape(w)}", markup=True)
