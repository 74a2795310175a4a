"""``yinqi alerts list|ack|deliver|test``: the alert log, acknowledgements and delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue
from yinqi.i18n import _, ngettext
from yinqi.store.migrate import ensure_current
from yinqi.store.types import utcnow

app = typer.Typer(help="Alerts: the log with each channel's delivery, acknowledgements, "
                       "sending what is due, testing a channel.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object.")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


def _local(yinqi: App, moment: datetime | None) -> str:
    if moment is None:
        return ""
    return f"{moment.astimezone(ZoneInfo(yinqi.settings.timezone)):%Y-%m-%d %H:%M}"


def _deliveries(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return _("no channel")
    parts = []
    for d in rows:
        text = f"{d['channel']}: {d['status']}"
        if d["status"] != "sent" or d["attempts"] > 1:
            text += " (" + ngettext("{n} attempt", "{n} attempts", d["attempts"]).format(
                n=d["attempts"]) + ")"
        if d["status"] != "sent" and d["last_error"]:
            text += f" {d['last_error'][:80]}"
        parts.append(text)
    return "\n".join(parts)


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only alerts nobody acknowledged."),
    kind: str | None = typer.Option(None, "--kind", help="Only this kind, e.g. payment.returned."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="Newest first, this many."),
    json_out: bool = _JSON,
) -> None:
    """The newest alerts, each with its delivery on every channel (sent, pending, failed)."""
    from yinqi.store.alert_delivery import alert_log

    yinqi = _app(ctx)
    with yinqi.sessions() as s:
        entries = [e.as_json() for e in alert_log(s, open_only=open_only, limit=limit,
                                                   kind=kind)]
    if json_out:
        print_json({"count": len(entries), "alerts": entries})
        return
    failed = sum(d["status"] == "failed" for e in entries for d in e["deliveries"])
    title = (_("{count} open alert(s)") if open_only else _("{count} alert(s)")).format(
        count=len(entries))
    if failed:
        title += _(", {count} delivery(ies) FAILED").format(count=failed)
    table = Table(_("id"), _("raised"), _("severity"), _("kind"), _("subject"), _("delivery"),
                  _("acknowledged"), title=title)
    for e in entries:
        ack = (f"{e['acknowledged_by']} {_local(yinqi, datetime.fromisoformat(e['acknowledged_at']))}"
               if e["acknowledged_at"] else "")
        table.add_row(str(e["id"]), _local(yinqi, datetime.fromisoformat(e["created_at"])),
                      e["severity"], Text(e["kind"]), Text(e["subject"]),
                      Text(_deliveries(e["deliveries"])), Text(ack))
    console.print(table)


@app.command("ack")
def ack(
    ctx: typer.Context,
    alert_ids: list[int] = typer.Argument(..., help="Alert ids (see `yinqi alerts list`)."),
    user: str | None = typer.Option(None, "--as", help="Who acknowledges: you (default: the "
                                                       "logged-in user)."),
    note: str | None = typer.Option(None, "--note", help="What was done about it."),
) -> None:
    """Mark alerts as seen and dealt with (audited). Deliveries still due are still sent."""
    from yinqi.store.alert_delivery import acknowledge

    yinqi = _app(ctx)
    user = acting_as(ctx, user)
    with yinqi.sessions.begin() as s:
        out = acknowledge(s, yinqi.audit, alert_ids, actor=user, note=note, now=utcnow())
    for aid in out.done:
        console.print(_("alert #{id}: acknowledged by {user}").format(id=aid, user=user),
                      markup=False)
    for aid, by, at in out.already:
        console.print(_("alert #{id}: already acknowledged by {user} at {at}").format(
            id=aid, user=by, at=_local(yinqi, at)), markup=False)


@app.command("deliver")
def deliver(
    ctx: typer.Context,
    limit: int = typer.Option(200, "--limit", min=1, help="Send at most this many."),
    json_out: bool = _JSON,
) -> None:
    """Route new alerts to their channels and send every delivery that is due now.
    Exit 1 when a delivery failed for the last time (see `yinqi alerts list`)."""
    from yinqi.store.alert_delivery import deliver_due

    report = deliver_due(_app(ctx), utcnow(), limit)
    if json_out:
        print_json(report.as_json())
    else:
        console.print(_("{routed} new delivery(ies), {sent} sent, {retrying} to retry, {failed} "
                        "failed for good").format(routed=report.routed, sent=report.sent,
                                                  retrying=report.retrying,
                                                  failed=report.failed), markup=False)
        for error in report.errors[:20]:
            console.print(f"  {error}", markup=False)
    if report.failed:
        raise typer.Exit(1)


@app.command("test")
def test(
    ctx: typer.Context,
    channel: list[str] = typer.Option(
        [], "--channel", help="Channel name from alerts.toml (repeatable; a disabled channel "
                              "may be named). Default: every enabled channel."),
    user: str | None = typer.Option(None, "--as", help="Who asks: you (default: the "
                                                       "logged-in user)."),
    json_out: bool = _JSON,
) -> None:
    """Send a test alert (severity info) once to each channel now; exit 1 if one failed."""
    from yinqi.store.alert_delivery import send_test

    yinqi = _app(ctx)
    names = list(dict.fromkeys(channel)) or [
        c.name for c in yinqi.config.alerts.channels if c.enabled]
    if not names:
        raise InvalidValue(f"no channel is enabled in {yinqi.config.sources['alerts']}; "
                           "name one with --channel")
    results = send_test(yinqi, names, actor=acting_as(ctx, user))
    if json_out:
        print_json({"channels": {n: {"sent": e is None, "error": e}
                                 for n, e in results.items()}})
    else:
        for name, error in results.items():
            console.print(f"{name}: " + (_("sent") if error is None else
                                         _("FAILED: {error}").format(error=error)),
                          markup=False)
    if any(e is not None for e in results.values()):
        raise typer.Exit(1)
