"""``yinqi reconcile ...`` and ``yinqi statements import|fetch``: the morning's work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.i18n import _, pgettext
from yinqi.identifiers import mask
from yinqi.security.masking import redact, redact_deep
from yinqi.store.migrate import ensure_current

app = typer.Typer(help="Reconciliation: match statements against payments, report, "
                       "exceptions.", no_args_is_help=True)
exceptions_app = typer.Typer(help="The exceptions queue.", no_args_is_help=True)
app.add_typer(exceptions_app, name="exceptions")

_JSON = typer.Option(False, "--json", help="Print one JSON object.")
_ACCOUNT = typer.Option(None, "--account",
                        help="Only this account (repeatable): its number, ****1234, "
                             "<bank>:****1234 or group:<name> of reconciliation.toml.")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


def yesterday() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)


def _intake_json(result) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"accepted": result.accepted,
            "quarantined": [{"statement": pk, "reason": why} for pk, why in result.quarantined],
            "duplicates": [{"statement_id": sid, "already_as": pk}
                           for sid, pk in result.duplicates]}


def import_statements(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A camt.052/053/054 or MT940/MT942 file."),
    json_out: bool = _JSON,
) -> None:
    """Take a statement file in: checked (great-expectations), stored whole or quarantined
    whole with the reasons; a file taken in before creates nothing."""
    from yinqi.recon import import_statement_file

    result = import_statement_file(_app(ctx), file, actor=acting_as(ctx))
    if json_out:
        print_json({"file": str(file), **_intake_json(result)})
        if result.quarantined:
            raise typer.Exit(1)
        return
    console.print(_("{file}: {accepted} accepted, {quarantined} quarantined, {duplicates} "
                    "already received").format(file=file, accepted=len(result.accepted),
                                               quarantined=len(result.quarantined),
                                               duplicates=len(result.duplicates)))
    for pk, why in result.quarantined:
        console.print("  " + _("statement #{id} quarantined: {reason}").format(id=pk, reason=why),
                      markup=False)
    if result.quarantined:
        raise typer.Exit(1)


def fetch(
    ctx: typer.Context,
    first: datetime = typer.Option(None, "--from", formats=["%Y-%m-%d"],
                                   help="First day (default: yesterday)."),
    last: datetime = typer.Option(None, "--to", formats=["%Y-%m-%d"],
                                  help="Last day (default: --from)."),
    account: list[str] = _ACCOUNT,
    json_out: bool = _JSON,
) -> None:
    """Download end-of-day statements from the banks and take them in."""
    from yinqi.recon import fetch_statements

    day0 = first.date() if first else yesterday()
    day1 = last.date() if last else day0
    result = fetch_statements(_app(ctx), account or None, day0, day1, actor=acting_as(ctx))
    if json_out:
        print_json({**_intake_json(result.intake), "errors": result.errors})
    else:
        console.print(_("{accepted} statement(s) accepted, {quarantined} quarantined, "
                        "{duplicates} already received").format(
            accepted=len(result.intake.accepted), quarantined=len(result.intake.quarantined),
            duplicates=len(result.intake.duplicates)))
        for e in result.errors:
            console.print(f"  {e}", markup=False)
    if result.errors or result.intake.quarantined:
        raise typer.Exit(1)


@app.command("run")
def run(
    ctx: typer.Context,
    first: datetime = typer.Option(None, "--from", formats=["%Y-%m-%d"]),
    last: datetime = typer.Option(None, "--to", formats=["%Y-%m-%d"]),
    account: list[str] = _ACCOUNT,
    json_out: bool = _JSON,
) -> None:
    """Match the statement lines of [--from, --to] (default yesterday) against payments."""
    from yinqi.recon import reconcile

    day0 = first.date() if first else yesterday()
    day1 = last.date() if last else day0
    summary = reconcile(_app(ctx), first=day0, last=day1, accounts=account or None,
                        actor=acting_as(ctx))
    if json_out:
        print_json(summary.as_json())
        return
    console.print(_("{first}..{last}: {lines} line(s), {payments} payment(s); matched "
                    "{matched} line(s) ({rate:.1%}), reconciled {reconciled}, returned "
                    "{returned}, {exceptions} new exception(s)").format(
        first=day0, last=day1, lines=summary.lines, payments=summary.payments,
        matched=summary.matched_lines, rate=summary.match_rate, reconciled=summary.reconciled,
        returned=summary.returned, exceptions=summary.new_exceptions))
    console.print(_("by rule: {rules}").format(
        rules=", ".join(f"{k} {v}" for k, v in summary.matches.items())))


@app.command("report")
def report(
    ctx: typer.Context,
    day: datetime = typer.Option(None, "--date", formats=["%Y-%m-%d"],
                                 help="The day (default: yesterday)."),
    account: list[str] = _ACCOUNT,
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Also write an Excel workbook."),
    json_out: bool = _JSON,
) -> None:
    """Per account: bank closing balance against what Yinqi explains, matched and unmatched
    entries, payments and open exceptions."""
    from yinqi.recon import daily_report, export_xlsx
    from yinqi.recon.accounts import labels

    yinqi = _app(ctx)
    the_day = day.date() if day else yesterday()
    rows = daily_report(yinqi, the_day, account or None)
    if xlsx is not None:
        export_xlsx(yinqi, rows, xlsx)
    # Bank and account name tell our accounts apart; the number shows its last four only.
    named = labels(yinqi.config)
    if json_out:
        print_json([{**r.as_json(), **named.get(r.account, {}), "account": mask(r.account)}
                    for r in rows])
        return
    table = Table(_("bank"), pgettext("account", "name"), _("account"), _("ccy"), _("opening"),
                  _("closing"), _("ledger"), _("difference"), _("lines"), _("matched"),
                  _("unmatched"), _("payments"), _("reconciled"), _("exceptions"),
                  title=_("Reconciliation {day}").format(day=the_day))
    for r in rows:
        label = named.get(r.account, {})
        table.add_row(label.get("bank", ""), label.get("account_name", ""), mask(r.account),
                      r.currency, r.bank_opening or "—", r.bank_closing or "—",
                      r.ledger_balance or "—", r.difference or "—", str(r.lines),
                      str(r.matched_lines), f"{r.unmatched_lines} ({r.unmatched_amount})",
                      str(r.payments), str(r.payments_reconciled), str(r.open_exceptions))
    console.print(table, markup=False)
    if xlsx is not None:
        console.print(_("written: {path}").format(path=xlsx))


@exceptions_app.command("list")
def exceptions_list(
    ctx: typer.Context,
    status: str = typer.Option("open", "--status", help="open, matched or written_off."),
    json_out: bool = _JSON,
) -> None:
    """What matching could not explain, with suggested candidates."""
    from yinqi.recon import list_exceptions

    rows = list_exceptions(_app(ctx), status)
    if json_out:
        print_json([{**r, "account": mask(r["account"])} for r in rows])
        return
    table = Table(_("id"), _("side"), _("account"), _("day"), _("amount"), _("counterparty"),
                  _("reference"), _("suggestions"),
                  title=_("{count} {status} exception(s)").format(count=len(rows), status=status))
    for r in rows:
        table.add_row(str(r["id"]), r["side"], mask(r["account"]), str(r["day"]),
                      f"{r['amount']} {r['currency']}", r["counterparty"] or "",
                      r["reference"] or "", r["candidates"] or "—")
    console.print(table, markup=False)


@exceptions_app.command("confirm")
def exceptions_confirm(
    ctx: typer.Context,
    exception_id: int = typer.Argument(...),
    candidate: int | None = typer.Option(None, "--candidate",
                                         help="Which suggestion (default: the best)."),
    user: str | None = typer.Option(None, "--as", help="You (default: the logged-in user)."),
    note: str = typer.Option("", "--note"),
) -> None:
    """Accept a suggested match for an exception (audited)."""
    from yinqi.recon import confirm

    match_id = confirm(_app(ctx), exception_id, candidate=candidate, actor=acting_as(ctx, user),
                       note=note)
    console.print(_("exception #{id}: matched (match #{match})").format(id=exception_id,
                                                                         match=match_id))


@exceptions_app.command("rematch")
def exceptions_rematch(
    ctx: typer.Context,
    payment: list[int] = typer.Option(..., "--payment", help="Payment id (repeatable)."),
    line: list[int] = typer.Option(..., "--line", help="Statement line id (repeatable)."),
    user: str | None = typer.Option(None, "--as", help="You (default: the logged-in user)."),
    note: str = typer.Option(..., "--note", help="Why these belong together."),
) -> None:
    """Match payments and statement lines by hand (audited, with the reason)."""
    from yinqi.recon import match_by_hand

    match_id = match_by_hand(_app(ctx), payment_ids=payment, line_ids=line,
                             actor=acting_as(ctx, user),
                             note=note)
    console.print(_("matched by hand (match #{match})").format(match=match_id))


@exceptions_app.command("write-off")
def exceptions_write_off(
    ctx: typer.Context,
    exception_id: int = typer.Argument(...),
    user: str | None = typer.Option(None, "--as", help="You (default: the logged-in user)."),
    reason: str = typer.Option(..., "--reason"),
) -> None:
    """Close an exception without a match, with the reason on record (audited)."""
    from yinqi.recon import write_off

    write_off(_app(ctx), exception_id, actor=acting_as(ctx, user), reason=reason)
    console.print(_("exception #{id}: written off").format(id=exception_id))


def show_statement(
    ctx: typer.Context,
    statement: int = typer.Argument(..., help="The statement's number (#id)."),
    json_out: bool = _JSON,
) -> None:
    """A stored statement's data-quality verdict: every check, and why it was quarantined."""
    from yinqi.errors import InvalidValue
    from yinqi.store.models import Statement as StatementRow

    yinqi = _app(ctx)
    with yinqi.sessions() as s:
        row = s.get(StatementRow, statement)
        if row is None:
            raise InvalidValue(f"no statement #{statement}")
        # Rows stored before IDs and check results were kept masked are masked here.
        checks = redact_deep(row.checks or {})
        head = {"statement": row.id, "account": mask(row.account), "currency": row.currency,
                "statement_id": redact(row.statement_id), "sequence": row.sequence,
                "kind": row.kind, "lines": row.line_count, "status": row.status,
                "reason": redact(row.reason) if row.reason else row.reason,
                "source": row.source}
    if json_out:
        print_json({**head, "checks": checks})
        return
    console.print(_("statement #{id} {statement_id} ({kind}) of {account} {currency}: {lines} "
                    "line(s), {status}").format(
        id=head["statement"], statement_id=head["statement_id"], kind=head["kind"],
        account=head["account"], currency=head["currency"], lines=head["lines"],
        status=head["status"].upper()), markup=False)
    for name, verdict in (checks.get("checks") or {}).items():
        console.print(f"  {name}: {verdict}", markup=False)
    for f in checks.get("failures", []):
        console.print("  " + _("FAILED {check}: {message}").format(check=f["check"],
                                                                    message=f["message"]),
                      markup=False)
    if head["status"] != "accepted":
        raise typer.Exit(1)
