"""``yinqi doctor``: is this installation able to pay?"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.doctor import Status, run_checks
from yinqi.i18n import _

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
        table.add_column(_("check"))
        table.add_column(_("status"))
        table.add_column(_("detail"), overflow="fold")
        for c in checks:
            # The detail is the check's own words (English), as --json gives it.
            table.add_row(_check_name(c.name), f"[{_STYLE[c.status]}]{_verdict(c.status)}[/]",
                          escape(c.detail))
        console.print(table)
        console.print(_("{failed} failed, {warnings} warnings").format(
            failed=len(failed), warnings=sum(c.status is Status.WARN for c in checks)))
        _print_ui()
    if failed:
        raise typer.Exit(1)


def _verdict(status: Status) -> str:
    return {Status.OK: _("ok"), Status.WARN: _("warn"), Status.FAIL: _("fail")}[status]


def _check_name(name: str) -> str:
    """A check's name (yinqi.doctor's, which --json keeps) as a person reads it."""
    fixed = {"config": _("config"), "database": _("database"), "migrations": _("migrations"),
             "master secret": _("master secret"), "signing key": _("signing key"),
             "audit chain": _("audit chain"), "backups": _("backups"),
             "restore drill": _("restore drill"),
             "sending after restore": _("sending after restore"),
             "prefect api": _("prefect api")}
    if name in fixed:
        return fixed[name]
    # "key <key id>", "bank <code>" and "bank <code> <what>": ids and codes have no spaces.
    parts = name.split(" ", 2)
    if parts[0] == "key" and len(parts) == 2:
        return _("key {key_id}").format(key_id=parts[1])
    if parts[0] == "bank" and len(parts) == 2:
        return _("bank {bank}").format(bank=parts[1])
    if parts[0] == "bank" and len(parts) == 3:
        about = {"client key": _("bank {bank} client key"), "CA": _("bank {bank} CA"),
                 "client certificate": _("bank {bank} client certificate"),
                 "signing certificate": _("bank {bank} signing certificate")}.get(parts[2])
        if about is not None:
            return about.format(bank=parts[1])
    return name


def _print_ui() -> None:
    """Where operators watch runs and answer approvals, when a shared server is set."""
    import os

    from yinqi.ops.urls import ui_base

    if os.environ.get("PREFECT_API_URL", "").strip():
        console.print(_("Prefect UI: {url}").format(url=ui_base()), markup=False,
                      soft_wrap=True)
