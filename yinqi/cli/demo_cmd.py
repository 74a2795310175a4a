"""``yinqi demo``: run the whole pipeline against the sandbox bank and summarise it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json


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
        console.print(f"demo home: {folder}")
    summary = run_demo(DemoOptions(home=folder, payments=payments, seed=seed,
                                   prefect=not no_prefect))
    if json_out:
        print_json(summary)
    else:
        _print(summary)
    if not summary["ok"]:
        raise typer.Exit(1)


def _print(s: dict) -> None:  # type: ignore[type-arg]
    v = s["vouchers"]
    console.print(f"vouchers: {v['rows']} rows, {v['accepted']} accepted, "
                  f"{len(v['quarantined'])} quarantined, {v['duplicates']} duplicates")
    for q in v["quarantined"]:
        console.print(f"  row {q['row']}: {q['reason']}", markup=False)
    console.print("approvals: " + ", ".join(f"{u} {n}" for u, n in s["approvals"].items()))
    table = Table("state", "payments", "amount", title=f"{s['payments']} payments")
    for state, t in sorted(s["states"].items()):
        table.add_row(state, str(t["count"]),
                      ", ".join(f"{a} {c}" for c, a in sorted(t["amounts"].items())))
    console.print(table)
    if s["alerts"]:
        console.print("alerts: " + ", ".join(f"{k} {n}" for k, n in s["alerts"].items()))
    r = s.get("reconciliation")
    if r:
        console.print(f"reconciliation {r['day']}: {r['matched_lines']} of {r['lines']} "
                      f"statement lines matched ({r['match_rate']:.1%}), {r['reconciled']} "
                      f"payments reconciled, {r['exceptions']} exception(s), "
                      f"{r['written_off']} written off, {r['open_exceptions']} still open")
        for a in r["accounts"]:
            console.print(f"  {a['account']}: bank closing {a['bank_closing']}, explained "
                          f"{a['ledger_balance']}, difference {a['difference']}")
    console.print(f"audit chain: {'intact' if s['audit']['ok'] else 'BROKEN'} "
                  f"({s['audit']['events']} events)")
    console.print("stages (s): " + ", ".join(f"{k} {v}" for k, v in s["stage_seconds"].items()))
    if s["prefect"]:
        console.print(f"Prefect overhead share: {s['prefect']['prefect_overhead_share']:.1%}")
    console.print("demo OK" if s["ok"] else
                  f"demo NOT OK: {s['unfinished']} payment(s) unfinished or statement lines "
                  "unexplained")
