"""``yinqi risk ...``: what the risk rules caught, holds to release or reject, freezes.

Every decision needs the person's current one-time code. A refusal prints one line and
exits 1 after the refusal (and a wrong code's count) is committed and audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json, report_decision
from yinqi.i18n import _, pgettext
from yinqi.store import risk_decisions
from yinqi.store.migrate import ensure_current

app = typer.Typer(help="Risk rules: hits, holds to release or reject, freezes (two people "
                       "lift one).", no_args_is_help=True)

_AS = typer.Option(..., "--as", help="Your user name.")
_CODE = typer.Option(..., "--code", help="Your current one-time code (6 digits).")
_JSON = typer.Option(False, "--json", help="Print one JSON object.")


@app.command("hits")
def hits(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only hits nobody has dealt with."),
    payment: int | None = typer.Option(None, "--payment", help="Only this payment's hits."),
    limit: int = typer.Option(200, "--limit", min=1, max=100_000, help="At most this many, "
                                                                        "newest first."),
    json_out: bool = _JSON,
) -> None:
    """Rules that fired: on which payment, what they did, and whether it is dealt with."""
    yinqi = _app(ctx)
    with yinqi.sessions() as session:
        rows = risk_decisions.list_hits(session, open_only=open_only, payment_id=payment,
                                        limit=limit)
    if json_out:
        print_json({"count": len(rows), "hits": rows})
        return
    if not rows:
        console.print(_("no risk hits open") if open_only else _("no risk hits"))
        return
    table = Table(title=_("{count} risk hit(s), newest first").format(count=len(rows)))
    for column in (_("id"), _("rule"), _("action"), _("status"), _("payment"), _("what"),
                   _("when")):
        table.add_column(column)
    for h in rows:
        table.add_row(str(h["id"]), h["rule"], h["action"], _status(h),
                      str(h["payment_id"] or f"{h['subject_type']} {h['subject_id']}"),
                      h["message"], h["created_at"][:19].replace("T", " "))
    console.print(table, markup=False)


@app.command("freezes")
def freezes(
    ctx: typer.Context,
    active: bool = typer.Option(False, "--active", help="Only freezes not lifted yet."),
    json_out: bool = _JSON,
) -> None:
    """Frozen payments, batches, accounts and users, and who asked to lift each."""
    yinqi = _app(ctx)
    with yinqi.sessions() as session:
        rows = risk_decisions.list_freezes(session, active_only=active)
    if json_out:
        print_json({"count": len(rows), "freezes": rows})
        return
    if not rows:
        console.print(_("no freezes active") if active else _("no freezes"))
        return
    table = Table(title=_("{count} freeze(s), newest first").format(count=len(rows)))
    for column in (_("id"), pgettext("freeze", "subject"), _("rule"), _("status"),
                   _("frozen by"), _("lifting"), _("reason")):
        table.add_column(column)
    for f in rows:
        lifting = ""
        if f["lifted_by"]:
            lifting = _("lifted by {first} + {second}").format(
                first=f["unfreeze_requested_by"], second=f["lifted_by"])
        elif f["unfreeze_requested_by"]:
            lifting = _("asked by {user}, needs a second person").format(
                user=f["unfreeze_requested_by"])
        table.add_row(str(f["id"]), f["subject"] or f"{f['subject_type']} {f['subject_id']}",
                      f["rule"], f["status"], f["frozen_by"], lifting, f["reason"])
    console.print(table, markup=False)


@app.command("release")
def release(
    ctx: typer.Context,
    payment: str = typer.Argument(..., help="The held payment: its id or end-to-end ID."),
    username: str = _AS,
    code: str = _CODE,
    reason: str | None = typer.Option(None, "--reason", help="Why it may go on."),
    json_out: bool = _JSON,
) -> None:
    """Release a held payment back into approval.

    Treasurer, finance manager or CFO; never the payment's maker. A frozen payment cannot be
    released: two people lift a freeze (`yinqi risk unfreeze`).
    """
    yinqi = _app(ctx)
    username = acting_as(ctx, username)
    with yinqi.sessions.begin() as session:
        outcome = risk_decisions.release(session, yinqi.audit, yinqi.field_cipher,
                                         payment=payment, username=username, code=code,
                                         reason=reason, now=datetime.now(UTC))
    report_decision(outcome, json_out)


@app.command("reject")
def reject(
    ctx: typer.Context,
    payment: str = typer.Argument(..., help="The held payment: its id or end-to-end ID."),
    username: str = _AS,
    code: str = _CODE,
    reason: str = typer.Option(..., "--reason", help="Why it must not be paid."),
    json_out: bool = _JSON,
) -> None:
    """Reject a held payment: it is never paid.

    Treasurer, finance manager or CFO; never the payment's maker.
    """
    yinqi = _app(ctx)
    username = acting_as(ctx, username)
    with yinqi.sessions.begin() as session:
        outcome = risk_decisions.reject(session, yinqi.audit, yinqi.field_cipher,
                                        payment=payment, username=username, code=code,
                                        reason=reason, now=datetime.now(UTC))
    report_decision(outcome, json_out)


@app.command("freeze")
def freeze(
    ctx: typer.Context,
    subject_type: str = typer.Argument(..., metavar="payment|batch|account",
                                       help="What to freeze."),
    subject: str = typer.Argument(..., metavar="ID",
                                  help="Payment id or end-to-end ID; batch id or message ID; "
                                       "company account number or id."),
    username: str = _AS,
    code: str = _CODE,
    reason: str = typer.Option(..., "--reason", help="What is wrong."),
    json_out: bool = _JSON,
) -> None:
    """Freeze a payment, a batch or a company account.

    Treasurer or admin. Nothing frozen moves until two different people lift the freeze
    with `yinqi risk unfreeze`.
    """
    yinqi = _app(ctx)
    username = acting_as(ctx, username)
    with yinqi.sessions.begin() as session:
        outcome = risk_decisions.freeze(session, yinqi.audit, yinqi.field_cipher,
                                        subject_type=subject_type.strip().lower(),
                                        subject=subject, username=username, code=code,
                                        reason=reason, now=datetime.now(UTC))
    report_decision(outcome, json_out)


@app.command("unfreeze")
def unfreeze(
    ctx: typer.Context,
    freeze_id: int = typer.Argument(..., metavar="FREEZE_ID", help="From `yinqi risk freezes`."),
    username: str = _AS,
    code: str = _CODE,
    reason: str = typer.Option(..., "--reason", help="Why it is safe again."),
    json_out: bool = _JSON,
) -> None:
    """Lift a freeze: one person asks, a second, different person confirms.

    Treasurer or admin. The same person asking and confirming is refused (and audited).
    """
    yinqi = _app(ctx)
    username = acting_as(ctx, username)
    with yinqi.sessions.begin() as session:
        outcome = risk_decisions.unfreeze(session, yinqi.audit, yinqi.field_cipher,
                                          freeze_id=freeze_id, username=username, code=code,
                                          reason=reason, now=datetime.now(UTC))
    report_decision(outcome, json_out)


def _status(hit: dict[str, Any]) -> str:
    if hit["status"] == "open" or not hit["resolved_by"]:
        return hit["status"]
    return _("{status} by {user}").format(status=hit["status"], user=hit["resolved_by"])


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi
