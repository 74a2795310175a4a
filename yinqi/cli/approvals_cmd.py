"""``yinqi approvals ...``: list, approve and reject payments waiting for approval.

Every decision needs the approver's current one-time code; one code decides many payments.
A refusal prints one line per payment and makes the command exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from yinqi.approval import Refusal
from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, err_console, print_json
from yinqi.errors import InvalidValue
from yinqi.i18n import _
from yinqi.store import approvals
from yinqi.store.migrate import ensure_current
from yinqi.store.models import Payment

app = typer.Typer(help="The approval gate: list, approve and reject payments.",
                  no_args_is_help=True)

_IDS = typer.Argument(None, help="Payment ids or end-to-end ids.", show_default=False)
_AS = typer.Option(..., "--as", help="The approver's user name.")
_CODE = typer.Option(..., "--code", help="The approver's current one-time code (6 digits).")
_JSON = typer.Option(False, "--json", help="Print one JSON object.")


@app.command("list")
def list_pending(
    ctx: typer.Context,
    username: str | None = typer.Option(None, "--as", help="Show what this user may approve."),
    json_out: bool = _JSON,
) -> None:
    """Payments waiting for approval: levels needed, filled, and who is next."""
    yinqi = _app(ctx)
    with yinqi.sessions() as session:
        rows = approvals.pending(session, yinqi.config.approval_policy, username=username,
                                 now=datetime.now(UTC))
    if json_out:
        print_json([_row_json(r) for r in rows])
        return
    if not rows:
        console.print(_("no payments are waiting for approval"))
        return
    table = Table(title=_("{count} payment(s) waiting for approval").format(count=len(rows)))
    for column in (_("id"), _("end-to-end id")):
        table.add_column(column)
    table.add_column(_("amount"), justify="right")
    for column in (_("category"), _("maker"), _("levels"), _("next"), _("waiting since")):
        table.add_column(column)
    if username is not None:
        table.add_column(_("{user} may approve").format(user=username))
    for r in rows:
        cells = [str(r.payment_id), r.end_to_end_id, r.amount.format(), r.category, r.maker,
                 _levels_text(r), r.next_role or "—",
                 r.waiting_since.strftime("%Y-%m-%d %H:%M UTC")]
        if username is not None:
            cells.append(_("yes") if r.can_approve else _("no: {why}").format(
                why=r.why_not.code if r.why_not else ""))
        table.add_row(*cells)
    console.print(table, markup=False)  # makers and categories come from voucher files
    _print_paused_runs()


def _print_paused_runs() -> None:
    """A link to each payment run paused for these approvals: its form takes the decision
    too. Only a shared server is asked (PREFECT_API_URL); a temporary one has no UI."""
    import os

    import httpx

    from yinqi.ops.prefect_api import paused_runs
    from yinqi.ops.urls import ui_base

    api = os.environ.get("PREFECT_API_URL", "").strip()
    if not api:
        return
    try:
        runs = paused_runs(api, ui_url=ui_base())
    except httpx.HTTPError as exc:
        err_console.print(_("Prefect server {api} did not answer ({error}): paused runs not "
                            "shown").format(api=api, error=type(exc).__name__),
                          markup=False, soft_wrap=True)
        return
    for run in runs:
        console.print(_("Prefect UI: {url}").format(url=run.url), markup=False, soft_wrap=True)


@app.command("approve")
def approve(
    ctx: typer.Context,
    ids: list[str] | None = _IDS,
    username: str = _AS,
    code: str = _CODE,
    all_pending: bool = typer.Option(False, "--all-pending",
                                     help="Also approve everything this user may approve now."),
    reason: str | None = typer.Option(None, "--reason", help="A note kept with the approval."),
    json_out: bool = _JSON,
) -> None:
    """Approve the next level of the given payments with one one-time code."""
    yinqi = _app(ctx)
    username = acting_as(ctx, username)  # the logged-in approver, and no one else
    policy = yinqi.config.approval_policy
    now = datetime.now(UTC)
    with yinqi.sessions.begin() as session:
        payment_ids = _resolve(session, ids or [])
        if all_pending:
            payment_ids += [r.payment_id for r in approvals.pending(
                session, policy, username=username, now=now) if r.can_approve]
        if not payment_ids:
            raise InvalidValue("nothing to approve: give payment ids or --all-pending")
        outcome = approvals.approve(session, yinqi.audit, yinqi.field_cipher, policy,
                                    username=username, code=code, payment_ids=payment_ids,
                                    now=now, reason=reason,
                                    risk_rules=yinqi.config.risk_rules)
        labels = _labels(session, payment_ids)
    # The transaction is committed before any exit code: refusals and their audit events stay.
    if json_out:
        print_json({"approved": {str(k): v for k, v in outcome.approved_levels.items()},
                    "completed": outcome.completed, "refused": _refused_json(outcome.refused)})
    else:
        _print_decided(_("{count} payment(s) approved"), [
            (labels[pid], _("level {level}").format(level=level),
             "APPROVED" if pid in outcome.completed else _("awaiting next level"))
            for pid, level in outcome.approved_levels.items()
        ])
        _print_refused(outcome.refused, outcome.attempt, labels)
    if outcome.refused:
        raise typer.Exit(1)


@app.command("reject")
def reject(
    ctx: typer.Context,
    ids: list[str] | None = _IDS,
    username: str = _AS,
    code: str = _CODE,
    reason: str = typer.Option(..., "--reason", help="Why the payment must not be paid."),
    json_out: bool = _JSON,
) -> None:
    """Reject payments with a reason; they are never paid."""
    yinqi = _app(ctx)
    username = acting_as(ctx, username)  # the logged-in approver, and no one else
    with yinqi.sessions.begin() as session:
        payment_ids = _resolve(session, ids or [])
        if not payment_ids:
            raise InvalidValue("nothing to reject: give payment ids")
        outcome = approvals.reject(session, yinqi.audit, yinqi.field_cipher,
                                   yinqi.config.approval_policy, username=username, code=code,
                                   payment_ids=payment_ids, reason=reason,
                                   now=datetime.now(UTC))
        labels = _labels(session, payment_ids)
    if json_out:
        print_json({"rejected": outcome.rejected, "refused": _refused_json(outcome.refused)})
    else:
        _print_decided(_("{count} payment(s) rejected"),
                       [(labels[pid], "REJECTED", reason) for pid in outcome.rejected])
        _print_refused(outcome.refused, outcome.attempt, labels)
    if outcome.refused:
        raise typer.Exit(1)


@app.command("check")
def check(ctx: typer.Context, json_out: bool = _JSON) -> None:
    """Find payments whose state differs from the audit trail (edited in the database)."""
    yinqi = _app(ctx)
    with yinqi.sessions.begin() as session:
        mismatches = approvals.audit_state_check(session)
        approvals.record_mismatches(session, yinqi.audit, mismatches,
                                    actor=acting_as(ctx, default="cli:approvals check"),
                                    now=datetime.now(UTC))
    if json_out:
        print_json({"ok": not mismatches, "mismatches": [
            {"payment_id": m.payment_id, "end_to_end_id": m.end_to_end_id, "state": m.state,
             "audited": m.audited} for m in mismatches]})
    elif not mismatches:
        console.print(_("every payment's state matches the audit trail"))
    else:
        for m in mismatches:
            err_console.print(
                _("mismatch: payment {id} ({end_to_end_id}) is {state} but the audit trail says "
                  "{audited}").format(id=m.payment_id, end_to_end_id=m.end_to_end_id,
                                      state=m.state,
                                      audited=m.audited or _("nothing (no transition)")),
                markup=False, soft_wrap=True)
    if mismatches:
        raise typer.Exit(1)


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


def _resolve(session: Session, given: Sequence[str]) -> list[int]:
    """Payment ids from end-to-end ids or database ids (an end-to-end id wins a tie)."""
    wanted = [g.strip() for g in given if g.strip()]
    if not wanted:
        return []
    by_e2e = dict(session.execute(
        select(Payment.end_to_end_id, Payment.id).where(Payment.end_to_end_id.in_(wanted))
    ).all())
    numbers = [int(w) for w in wanted if w not in by_e2e and w.isdigit()]
    known = set(session.execute(select(Payment.id).where(Payment.id.in_(numbers))).scalars())
    unknown = [w for w in wanted if w not in by_e2e and not (w.isdigit() and int(w) in known)]
    if unknown:
        raise InvalidValue(f"no such payment: {', '.join(unknown[:10])}")
    return [by_e2e[w] if w in by_e2e else int(w) for w in wanted]


def _labels(session: Session, ids: Sequence[int]) -> dict[int, str]:
    rows = session.execute(
        select(Payment.id, Payment.end_to_end_id).where(Payment.id.in_(set(ids)))
    )
    return {pid: f"{pid} ({e2e})" for pid, e2e in rows}


def _print_decided(title: str, rows: list[tuple[str, str, str]]) -> None:
    """``title``: a translated message with a ``{count}``."""
    if not rows:
        return
    table = Table(title=title.format(count=len(rows)))
    for column in (_("payment"), _("decision"), _("state")):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_refused(refused: list[approvals.RefusedRow], attempt: Refusal | None,
                   labels: dict[int, str]) -> None:
    if attempt is not None:
        # The person or the code was refused: one line, not one per payment.
        err_console.print(_("refused ({count} payment(s)): {reason}").format(
            count=len(refused), reason=attempt), markup=False, soft_wrap=True)
        return
    for pid, code, message in refused:
        err_console.print(_("refused: payment {payment}: {code}: {message}").format(
            payment=labels.get(pid, pid), code=code, message=message),
            markup=False, soft_wrap=True)


def _refused_json(refused: list[approvals.RefusedRow]) -> list[dict[str, object]]:
    return [{"payment_id": pid, "code": code, "message": message}
            for pid, code, message in refused]


def _levels_text(row: approvals.PendingRow) -> str:
    if not row.levels:
        return _("none (policy cannot say)")
    return " > ".join(f"{role} ({row.filled[n]})" if n in row.filled else role
                      for n, role in enumerate(row.levels, start=1))


def _row_json(r: approvals.PendingRow) -> dict[str, object]:
    return {
        "payment_id": r.payment_id, "end_to_end_id": r.end_to_end_id,
        "amount": str(r.amount.amount), "currency": r.amount.currency.code,
        "category": r.category, "maker": r.maker, "levels": list(r.levels),
        "filled": {str(k): v for k, v in r.filled.items()}, "next_role": r.next_role,
        "can_approve": r.can_approve,
        "why_not": None if r.why_not is None else {"code": r.why_not.code.value,
                                                   "message": r.why_not.message},
        "waiting_since": r.waiting_since.isoformat(),
    }
