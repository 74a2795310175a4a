"""``yinqi demo``: run the whole pipeline against the sandbox bank and summarise it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.i18n import _


def demo(
    ctx: typer.Context,
    payments: int | None = typer.Option(None, "--payments", min=1,
                                        help="Generate this many vouchers (default: the "
                                             "shipped demo file)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the generated vouchers."),
    home: Path | None = typer.Option(None, "--home",
                                     help="Folder for this demo (default: a new folder under "
                                          "$YINQI_HOME/demo/)."),
    no_prefect: bool = typer.Option(False, "--no-prefect",
                                    help="Run the stages without Prefect."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Start the sandbox bank, import vouchers (with bad rows), approve them with the demo
    users' one-time codes, run the payment flow to receipts and print a summary."""
    from yinqi.demo.run import DemoOptions, default_home, run_demo

    yinqi: App = ctx.obj
    folder = (home or default_home(yinqi.settings.home)).resolve()
    if not json_out:
        console.print(_("demo home: {folder}").format(folder=folder))
    options = DemoOptions(home=folder, payments=payments, seed=seed, prefect=not no_prefect)
    summary = run_demo(options)
    if json_out:
        print_json(summary)
    else:
        _print(summary)
        _print_run_link(options.flow_run_id)
    if not summary["ok"]:
        raise typer.Exit(1)


def _print_run_link(flow_run_id: str | None) -> None:
    """The payment run in the Prefect UI, when the demo ran against a server that stays."""
    from yinqi.ops.urls import configured_run_url

    link = configured_run_url(flow_run_id) if flow_run_id else None
    if link:
        console.print(_("Prefect UI: {url}").format(url=link), markup=False, soft_wrap=True)


def _print(s: dict) -> None:  # type: ignore[type-arg]
    v = s["vouchers"]
    console.print(_("vouchers: {rows} rows, {accepted} accepted, {quarantined} quarantined, "
                    "{duplicates} duplicates").format(rows=v["rows"], accepted=v["accepted"],
                                                      quarantined=len(v["quarantined"]),
                                                      duplicates=v["duplicates"]))
    for q in v["quarantined"]:
        # The reason is the voucher check's own words, as the import reports them.
        console.print("  " + _("row {row}: {reason}").format(row=q["row"], reason=q["reason"]),
                      markup=False)
    console.print(_("approvals: ") + ", ".join(f"{u} {n}" for u, n in s["approvals"].items()))
    table = Table(_("state"), _("payments"), _("amount"),
                  title=_("{count} payments").format(count=s["payments"]))
    for state, t in sorted(s["states"].items()):
        table.add_row(state, str(t["count"]),
                      ", ".join(f"{a} {c}" for c, a in sorted(t["amounts"].items())))
    console.print(table)
    if s["alerts"]:
        console.print(_("alerts: ") + ", ".join(f"{k} {n}" for k, n in s["alerts"].items()))
    r = s.get("reconciliation")
    if r:
        console.print(_("reconciliation {day}: {matched} of {lines} statement lines matched "
                        "({rate}), {reconciled} payments reconciled, {exceptions} "
                        "exception(s), {written_off} written off, {open} still open").format(
            day=r["day"], matched=r["matched_lines"], lines=r["lines"],
            rate=f"{r['match_rate']:.1%}", reconciled=r["reconciled"],
            exceptions=r["exceptions"], written_off=r["written_off"],
            open=r["open_exceptions"]))
        for a in r["accounts"]:
            console.print("  " + _("{account}: bank closing {closing}, explained {explained}, "
                                   "difference {difference}").format(
                account=a["account"], closing=a["bank_closing"], explained=a["ledger_balance"],
                difference=a["difference"]))
    audit = (_("audit chain: intact ({count} events)") if s["audit"]["ok"] else
             _("audit chain: BROKEN ({count} events)"))
    console.print(audit.format(count=s["audit"]["events"]))
    console.print(_("stages (s): ")
                  + ", ".join(f"{k} {v}" for k, v in s["stage_seconds"].items()))
    if s["prefect"]:
        console.print(_("Prefect overhead share: {share}").format(
            share=f"{s['prefect']['prefect_overhead_share']:.1%}"))
    console.print(_("demo OK") if s["ok"] else
                  _("demo NOT OK: {count} payment(s) unfinished or statement lines "
                    "unexplained").format(count=s["unfinished"]))
