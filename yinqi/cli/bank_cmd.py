"""``yinqi bank test``, ``yinqi balances``, ``yinqi transactions``: the bank channels."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import typer
from rich.markup import escape
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.errors import ConfigError, KeyStoreError
from yinqi.i18n import _, pgettext
from yinqi.identifiers import mask
from yinqi.security.masking import mask_account, redact

app = typer.Typer(help="Bank channels: connectivity test.", no_args_is_help=True)

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def _outcome(value: str) -> str:
    """A step's outcome as a person reads it (``--json`` keeps the value)."""
    return {"ok": _("ok"), "warn": _("warn"), "fail": _("fail"), "skipped": _("skipped")
            }.get(value, value)


def _step(name: str) -> str:
    """A step of :mod:`connectors.diagnose` as a person reads it (``--json`` keeps the name)."""
    return {"config": _("config"), "dns": "DNS", "tcp": "TCP", "tls": "TLS",
            "certificates": _("certificates"), "authentication": _("authentication"),
            "echo": _("echo"), "balance": _("balance")}.get(name, name)


def signer_of(yinqi: App):  # type: ignore[no-untyped-def]
    """Our current signing key (see :func:`yinqi.pipeline.banks.signer_of`)."""
    from yinqi.pipeline.banks import signer_of as current

    return current(yinqi)


def _bank(yinqi: App, code: str):  # type: ignore[no-untyped-def]
    try:
        return yinqi.config.banks[code]
    except KeyError:
        known = ", ".join(sorted(yinqi.config.banks))
        raise ConfigError(f"banks.toml: no bank {code!r} (known: {known})") from None


@app.command("test")
def test(
    ctx: typer.Context,
    bank: str = typer.Argument(..., help="The bank's id in banks.toml."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Step-by-step connectivity test: DNS, TCP, TLS, certificates, signed echo, balance."""
    from connectors.diagnose import run

    yinqi: App = ctx.obj
    cfg = _bank(yinqi, bank)
    try:
        signer = signer_of(yinqi)
        files = yinqi.files
    except KeyStoreError:
        signer, files = None, None
    account = next(((a.number, a.currency) for a in yinqi.config.accounts if a.bank == bank),
                   None)
    report = run(bank, cfg, yinqi.settings.home, signer, account, files=files)
    if json_out:
        print_json(report.as_json())
    else:
        table = Table(title=f"yinqi bank test {bank} ({report.endpoint})")
        for col in (_("step"), _("result"), _("detail")):
            table.add_column(col, overflow="fold")
        for s in report.steps:
            detail = s.detail + (f"\n→ {s.hint}" if s.hint else "")
            table.add_row(_step(s.name),
                          f"[{_STYLE[s.outcome.value]}]{_outcome(s.outcome.value)}[/]",
                          escape(detail))  # the bank's words, not console markup
        console.print(table)
        console.print(_("all steps passed") if report.ok else _("FAILED at step: {step}").format(
            step=_step(report.failed_step or "")))
    if not report.ok:
        raise typer.Exit(1)


def balances(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Cash position: every configured account at every bank, queried concurrently."""
    from connectors.errors import BankError
    from connectors.registry import connect

    yinqi: App = ctx.obj
    signer = signer_of(yinqi)
    accounts = list(yinqi.config.accounts)

    def one(acct):  # type: ignore[no-untyped-def]
        try:
            connector = connect(acct.bank, yinqi.config.banks[acct.bank], yinqi.settings.home,
                                signer, files=yinqi.files)
            try:
                return acct, connector.balance(acct.number, acct.currency), None
            finally:
                connector.close()
        except (BankError, ValueError) as exc:
            return acct, None, redact(str(exc))

    with ThreadPoolExecutor(max_workers=min(16, len(accounts) or 1)) as pool:
        results = list(pool.map(one, accounts))
    totals: dict[str, Decimal] = defaultdict(Decimal)
    rows = []
    for acct, bal, error in results:
        if bal is not None:
            totals[acct.currency] += bal.booked.amount
        rows.append({"bank": acct.bank, "account": mask(acct.number), "name": acct.name,
                     "currency": acct.currency,
                     "balance": str(bal.booked.amount) if bal else None,
                     "available": str(bal.available.amount) if bal and bal.available else None,
                     "as_of": bal.at.isoformat() if bal else None,
                     "status": "ok" if bal else "FAILED", "error": error})
    failed = [r for r in rows if r["status"] != "ok"]
    if json_out:
        print_json({"accounts": rows, "totals": {c: str(v) for c, v in sorted(totals.items())},
                    "failed": len(failed), "as_of": datetime.now(UTC).isoformat()})
    else:
        table = Table(title=_("cash position"))
        for col, right in ((_("bank"), False), (_("account"), False),
                           (pgettext("account", "name"), False), (_("currency"), False),
                           (_("balance"), True), (_("available"), True), (_("status"), False)):
            table.add_column(col, justify="right" if right else "left")
        for r in rows:
            table.add_row(r["bank"], r["account"], r["name"], r["currency"],
                          f"{Decimal(r['balance']):,}" if r["balance"] else "—",
                          f"{Decimal(r['available']):,}" if r["available"] else "—",
                          _("ok") if r["status"] == "ok" else
                          f"[bold red]{_('FAILED')}[/]: {escape(r['error'] or '')}")
        for cur, total in sorted(totals.items()):
            table.add_row("", "", f"[bold]{pgettext('sum', 'total')}[/]", cur,
                          f"[bold]{total:,}[/]", "", "")
        console.print(table)
        if failed:
            console.print("[bold red]" + _("{count} account(s) could not be queried: totals "
                                           "leave them out").format(count=len(failed)) + "[/]")
    if failed:
        raise typer.Exit(1)


def transactions(
    ctx: typer.Context,
    account: str = typer.Option(..., "--account",
                                help="One of our accounts: its number, ****1234 or "
                                     "<bank>:****1234."),
    first: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD."),
    last: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The bank's transaction details of one account for a date range."""
    from connectors.registry import connect
    from yinqi.errors import InvalidValue

    yinqi: App = ctx.obj
    try:
        day_from, day_to = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        raise InvalidValue(f"--from/--to must be YYYY-MM-DD ({exc})") from None
    from yinqi.recon.accounts import resolve_accounts

    numbers = resolve_accounts(yinqi.config, [account]) or []
    acct = next((a for a in yinqi.config.accounts if numbers == [a.number]), None)
    if acct is None:
        raise InvalidValue(f"account {mask(account)} is not in accounts.toml")
    connector = connect(acct.bank, yinqi.config.banks[acct.bank], yinqi.settings.home,
                        signer_of(yinqi), files=yinqi.files)
    try:
        stmts = connector.statements(acct.number, day_from, day_to)
    finally:
        connector.close()
    from yinqi.cli.statements_cmd import statement_json

    # What the bank said, with account numbers (ours and the counterparties') masked.
    data = [_masked_statement(statement_json(s)) for s in stmts]
    if json_out:
        print_json({"account": mask(acct.number), "bank": acct.bank, "from": first, "to": last,
                    "statements": data})
        return
    table = Table(title=f"{acct.bank} {mask(acct.number)} {first}..{last}")
    for col in (pgettext("date", "booked"), pgettext("date", "value"), _("amount"),
                _("counterparty"), _("reference"), _("remittance")):
        table.add_column(col, overflow="fold")
    for s in data:
        for e in s["entries"]:
            table.add_row(e["booking_date"] or "", e["value_date"] or "", e["amount"],
                          e["counterparty_name"] or "", e["end_to_end_id"] or e["bank_reference"]
                          or "", (e["remittance"] or "")[:40])
    console.print(table, markup=False)


def _masked_statement(data: dict) -> dict:  # type: ignore[type-arg]
    entries = [{**e, "counterparty_account": mask_account(e["counterparty_account"]) or None,
                "remittance": redact(e["remittance"]) if e["remittance"] else e["remittance"]}
               for e in data["entries"]]
    return {**data, "account": mask_account(data["account"]),
            "statement_id": redact(data["statement_id"]), "entries": entries,
            "warnings": [redact(w) for w in data["warnings"]]}
