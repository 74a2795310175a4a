"""``yinqi doctor``: is this installation able to pay?"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.doctor import Status, run_checks

_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def doctor(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check the database, migrations, keys, certificates, Prefect API and every bank."""
    app: App = ctx.obj
    checks = run_checks(app)
    failed = [c for c in checks if c.status is Status.FAIL]
    if json_out:
        print_json({"ok": not failed,
                    "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail}
                               for c in checks]})
    else:
        table = Table(title="yinqi doctor", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status.value}[/]", escape(c.detail))
        console.print(table)
        console.print(f"{len(failed)} failed, "
                      f"{sum(c.status is Status.WARN for c in checks)} warnings")
    if failed:
        raise typer.Exit(1)
