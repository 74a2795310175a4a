"""``yinqi vouchers import FILE``: take an ERP payment export in as payments awaiting approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue
from yinqi.i18n import _
from yinqi.store.intake import ImportSummary, import_vouchers, own_accounts
from yinqi.store.migrate import ensure_current
from yinqi.vouchers import DEFAULT_MAPPING, ColumnMapping, load_mappings, read_rows, validate_rows

app = typer.Typer(help="Payment vouchers from the ERP.", no_args_is_help=True)

CLI_USER = "cli"
_MAX_NAME = 64  # import_files.source, import_files.imported_by


def _mapping(app: App, name: str) -> ColumnMapping:
    mappings = load_mappings(app.settings.config_dir)
    if name not in mappings:
        raise InvalidValue(f"unknown voucher mapping {name!r} (known: {', '.join(mappings)})")
    return mappings[name]


def _short_name(option: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_NAME:
        raise InvalidValue(f"{option} must be 1 to {_MAX_NAME} characters (got {value!r})")
    return value


def run_import(app: App, path: Path, *, mapping_name: str = DEFAULT_MAPPING,
               source: str = "erp", imported_by: str = CLI_USER) -> ImportSummary:
    """Read, check and store one voucher file in one transaction."""
    source = _short_name("--source", source)
    imported_by = _short_name("--as", imported_by)
    mapping = _mapping(app, mapping_name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidValue(f"{path}: cannot read ({exc.strerror})") from None
    rows = read_rows(data, str(path))
    ensure_current(app.engine)
    with app.sessions.begin() as session:
        try:
            checked = validate_rows(rows, mapping, own_accounts=own_accounts(session),
                                    source=source)
        except InvalidValue as exc:
            raise InvalidValue(f"{path}: {exc}") from None
        return import_vouchers(session, app.audit, source=source, file_name=str(path),
                               data=data, rows_result=checked, imported_by=imported_by,
                               risk_rules=app.config.risk_rules)


def summary_json(path: Path, summary: ImportSummary) -> dict[str, Any]:
    """The design brief's `vouchers import --json` contract."""
    return {
        "file": str(path),
        "sha256": summary.sha256,
        "accepted": summary.accepted,
        "quarantined": [{"row": row, "reason": reason} for row, reason in summary.quarantined],
        "duplicates": [{"row": row, "external_ref": ref} for row, ref in summary.duplicates],
        "payments": len(summary.payment_ids),
    }


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A voucher file: CSV (UTF-8 or GBK), XLSX or JSON."),
    mapping: str = typer.Option(DEFAULT_MAPPING, "--mapping",
                                help="Column layout: erp-cn, erp-en or one of "
                                     "voucher_mappings.toml."),
    source: str = typer.Option("erp", "--source",
                               help="Where the vouchers come from; voucher numbers are unique "
                                    "per source."),
    user: str | None = typer.Option(None, "--as", help="Who imports (recorded in the audit "
                                                       "log): you when logged in; the service "
                                                       "may name the maker."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Import a voucher file: valid rows become payments pending approval, the rest is kept
    in quarantine with its reasons; importing the same file again creates nothing."""
    summary = run_import(ctx.obj, file, mapping_name=mapping, source=source,
                         imported_by=acting_as(ctx, user, default=CLI_USER))
    if json_out:
        print_json(summary_json(file, summary))
        return
    if summary.already_imported:
        console.print(_("{file}: already imported (import #{id}); nothing new, {duplicates} "
                        "rows are duplicates").format(file=file, id=summary.import_file_id,
                                                      duplicates=len(summary.duplicates)))
        return
    console.print(_("{file}: {accepted} accepted ({payments} payments pending approval), "
                    "{quarantined} quarantined, {duplicates} duplicates").format(
        file=file, accepted=summary.accepted, payments=len(summary.payment_ids),
        quarantined=len(summary.quarantined), duplicates=len(summary.duplicates)))
    if summary.quarantined:
        table = Table(_("row"), _("reason"), title=_("Quarantined rows"))
        for row, reason in summary.quarantined:
            table.add_row(str(row), reason)
        console.print(table, markup=False)
    if summary.duplicates:
        listed = ", ".join(_("row {row} {ref}").format(row=row, ref=ref)
                           for row, ref in summary.duplicates[:20])
        console.print(_("duplicates (already received): {rows}").format(rows=listed)
                      + (" ..." if len(summary.duplicates) > 20 else ""), markup=False)
