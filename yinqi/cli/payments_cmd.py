"""``yinqi payments ...`` and ``yinqi batches ...``: carry payments to the bank, look, rerun."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table
from sqlalchemy import func, select

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue
from yinqi.i18n import _
from yinqi.identifiers import mask
from yinqi.money import Money
from yinqi.security.masking import redact
from yinqi.store.migrate import ensure_current

payments_app = typer.Typer(help="Payments after approval: send, follow, correct.",
                           no_args_is_help=True)
batches_app = typer.Typer(help="Bank messages (batches): list, rerun, dissolve.",
                          no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object.")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


@payments_app.command("run")
def run(
    ctx: typer.Context,
    seconds: float = typer.Option(600.0, "--max-seconds",
                                  help="Stop after this long even if payments are still at "
                                       "the bank (rerun to continue)."),
    poll: float = typer.Option(1.0, "--poll-seconds", help="First pause between status "
                                                           "queries (it backs off from there)."),
    lease: float = typer.Option(600.0, "--lease-seconds",
                                help="How long this worker's claim on a batch lasts."),
    no_receipts: bool = typer.Option(False, "--no-receipts", help="Do not collect receipts."),
    prefect: bool = typer.Option(False, "--prefect",
                                 help="Run the stages as the Prefect flow \"Payment run\" "
                                      "(against PREFECT_API_URL) instead of a plain loop."),
    json_out: bool = _JSON,
) -> None:
    """Batch, sign, send, follow and collect receipts for every approved payment, without
    Prefect (the payment flow runs the same stages as tasks). Safe to kill and rerun."""
    from datetime import timedelta

    from yinqi.pipeline import Pacing, Progress, drive, open_work, totals_by_state

    yinqi = _app(ctx)
    if prefect:
        from flows.payment import payment_run
        from tasks.context import use_app
        from yinqi.ops.urls import configured_run_url

        use_app(yinqi)
        state = payment_run(wait_for_approval=False, poll_seconds=poll,
                            max_follow_seconds=seconds, collect_receipts=not no_receipts,
                            lease_seconds=lease, return_state=True)
        link = configured_run_url(state.state_details.flow_run_id)
        if link and not json_out:
            console.print(_("Prefect UI: {url}").format(url=link), markup=False, soft_wrap=True)
        state.result()  # a failed run fails the command with its own error, link shown first
        progress = Progress()
    else:
        progress = drive(yinqi, pacing=Pacing(base=poll, lease=timedelta(seconds=lease)),
                         deadline=time.monotonic() + seconds, receipts=not no_receipts)
    batches, settled = open_work(yinqi)
    states = {t.state: {"count": t.count, "amounts": t.amounts} for t in totals_by_state(yinqi)}
    if json_out:
        print_json({"rounds": progress.rounds, "open_batches": batches,
                    "awaiting_receipts": settled, "sends": progress.sent.sends,
                    "status_queries": progress.sent.queries + progress.polled.queries,
                    "receipts": progress.receipts, "states": states,
                    "stage_seconds": {k: round(v, 3) for k, v in
                                      progress.stage_seconds.items()},
                    "set_aside": progress.signed.set_aside,
                    "errors": progress.problems()[:20]})
    else:
        console.print(_("{rounds} round(s): {sends} send(s), {receipts} receipt(s); {batches} "
                        "batch(es) still open").format(
            rounds=progress.rounds, sends=progress.sent.sends, receipts=progress.receipts,
            batches=batches))
        _print_states(states)
    if batches or progress.signed.set_aside:
        if not json_out:
            # What held batches back, one line each (a bank's expired certificate is one
            # line, not one per batch); `yinqi batches list` shows each batch's last error.
            for problem in progress.problems()[:20]:
                console.print(_("not done: {problem}").format(problem=redact(problem)),
                              markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_states(states: dict[str, Any]) -> None:
    table = Table(_("state"), _("payments"), _("amounts"), title=_("Payments by state"))
    for state, v in sorted(states.items()):
        table.add_row(state, str(v["count"]),
                      ", ".join(f"{a} {c}" for c, a in sorted(v["amounts"].items())))
    console.print(table)


@payments_app.command("list")
def list_payments(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="Only payments in this state."),
    batch: str | None = typer.Option(None, "--batch", help="Only this batch (id or msg ID)."),
    limit: int = typer.Option(50, "--limit"),
    json_out: bool = _JSON,
) -> None:
    """Payments with their state and the bank's reason; account numbers masked."""
    from yinqi.pipeline.reruns import find_batch
    from yinqi.store.models import Payment

    yinqi = _app(ctx)
    query = select(Payment).order_by(Payment.id).limit(limit)
    if state:
        query = query.where(Payment.state == state.upper())
    if batch:
        query = query.where(Payment.batch_id == find_batch(yinqi, batch).id)
    with yinqi.sessions() as s:
        rows = [{"id": p.id, "end_to_end_id": p.end_to_end_id, "state": p.state,
                 "amount": str(Money.from_minor(p.amount_minor, p.currency).amount),
                 "currency": p.currency, "creditor_name": p.creditor_name,
                 "creditor_account": mask(p.creditor_account), "batch_id": p.batch_id,
                 "bank_reference": p.bank_reference, "reason": p.state_reason,
                 "send_round": p.send_round} for p in s.execute(query).scalars()]
    if json_out:
        print_json(rows)
        return
    table = Table(_("id"), _("end-to-end id"), _("state"), _("amount"), _("payee"),
                  _("account"), _("batch"), _("reason"),
                  title=_("{count} payment(s)").format(count=len(rows)))
    for r in rows:
        table.add_row(str(r["id"]), r["end_to_end_id"], r["state"],
                      f"{r['amount']} {r['currency']}", r["creditor_name"],
                      r["creditor_account"], str(r["batch_id"] or "—"), r["reason"] or "")
    console.print(table, markup=False)


@payments_app.command("fix")
def fix(
    ctx: typer.Context,
    payment_id: int = typer.Argument(..., help="The payment's id."),
    user: str | None = typer.Option(None, "--as", help="Who corrects: you (default: the "
                                                       "logged-in user)."),
    creditor_name: str | None = typer.Option(None, "--creditor-name"),
    creditor_account: str | None = typer.Option(None, "--creditor-account"),
    creditor_bank_name: str | None = typer.Option(None, "--creditor-bank-name"),
    creditor_cnaps: str | None = typer.Option(None, "--creditor-cnaps"),
    creditor_bic: str | None = typer.Option(None, "--creditor-bic"),
    amount: str | None = typer.Option(None, "--amount"),
    purpose: str | None = typer.Option(None, "--purpose"),
    json_out: bool = _JSON,
) -> None:
    """Correct a payment the bank rejected, before `yinqi batches rerun`. A changed amount
    or payee is approved again before it is sent."""
    from yinqi.pipeline.reruns import correct_payment

    changes = {k: v for k, v in {
        "creditor_name": creditor_name, "creditor_account": creditor_account,
        "creditor_bank_name": creditor_bank_name, "creditor_cnaps": creditor_cnaps,
        "creditor_bic": creditor_bic, "amount": amount, "purpose": purpose}.items() if v is not None}
    if not changes:
        raise InvalidValue("nothing to correct: give at least one --creditor-... / --amount / "
                           "--purpose option")
    diff = correct_payment(_app(ctx), payment_id, changes, actor=acting_as(ctx, user))
    if json_out:
        print_json({"payment_id": payment_id,
                    "changes": {k: {"from": a, "to": b} for k, (a, b) in diff.items()}})
    else:
        console.print(_("payment {id}: {changes}").format(id=payment_id, changes="; ".join(
            f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()) or _("nothing changed")),
            markup=False)


@batches_app.command("list")
def list_batches(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state"),
    limit: int = typer.Option(50, "--limit"),
    json_out: bool = _JSON,
) -> None:
    """Bank messages, newest first, with their payments' states."""
    from yinqi.store.models import Batch, Payment

    yinqi = _app(ctx)
    query = select(Batch).order_by(Batch.id.desc()).limit(limit)
    if state:
        query = query.where(Batch.state == state.upper())
    with yinqi.sessions() as s:
        batches = list(s.execute(query).scalars())
        counts: dict[int, dict[str, int]] = {}
        for bid, st, n in s.execute(select(Payment.batch_id, Payment.state, func.count())
                                    .where(Payment.batch_id.in_([b.id for b in batches]))
                                    .group_by(Payment.batch_id, Payment.state)):
            counts.setdefault(bid, {})[st] = n
        rows = [_batch_json(b, counts.get(b.id, {})) for b in batches]
    if json_out:
        print_json(rows)
        return
    table = Table(_("id"), _("msg id"), _("bank"), _("state"), _("payments"), _("total"),
                  _("sends"), _("by state"), _("last error"),
                  title=_("{count} batch(es)").format(count=len(rows)))
    for r in rows:
        table.add_row(str(r["id"]), r["msg_id"], r["bank"], r["state"], str(r["payments"]),
                      f"{r['total']} {r['currency']}", str(r["send_attempts"]),
                      ", ".join(f"{n} {st}" for st, n in sorted(r["payment_states"].items())),
                      _short_error(r["last_error"]))
    console.print(table, markup=False)


#: Enough of an error to tell a timeout from a refusal; `--json` has all of it.
_ERROR_CHARS = 120


def _short_error(error: str | None) -> str:
    if not error:
        return "—"
    # A bank's text may quote an account number.
    text = redact(" ".join(error.split()))
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 1] + "…"


def _batch_json(b: Any, states: dict[str, int]) -> dict[str, Any]:
    return {"id": b.id, "msg_id": b.msg_id, "bank": b.bank, "dialect": b.dialect,
            "state": b.state, "payments": b.payment_count,
            "total": str(Money.from_minor(b.total_minor, b.currency).amount),
            "currency": b.currency, "execution_date": b.execution_date,
            "file": b.file_path, "sha256": b.file_sha256, "send_attempts": b.send_attempts,
            "last_error": b.last_error, "payment_states": states}


@batches_app.command("rerun")
def rerun(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch's id or message ID."),
    user: str | None = typer.Option(None, "--as", help="Who reruns: you (default: the "
                                                       "logged-in user)."),
    reason: str | None = typer.Option(None, "--reason"),
    json_out: bool = _JSON,
) -> None:
    """Send again only what the bank definitively rejected (after correcting it with `yinqi
    payments fix`); settled and unknown payments are never re-sent. Run `yinqi payments run`
    (or the payment flow) afterwards."""
    from yinqi.pipeline.reruns import rerun_batch

    result = rerun_batch(_app(ctx), batch, actor=acting_as(ctx, user), reason=reason)
    if json_out:
        print_json({"batch_id": result.batch_id, "msg_id": result.msg_id,
                    "to_send": result.to_send, "to_reapprove": result.to_reapprove,
                    "untouched": result.untouched})
        return
    console.print(_("batch {msg_id}: {send} payment(s) will be sent again, {reapprove} need "
                    "approval again (amount or payee changed); untouched: {untouched}").format(
        msg_id=result.msg_id, send=len(result.to_send), reapprove=len(result.to_reapprove),
        untouched=", ".join(f"{n} {st}" for st, n in sorted(result.untouched.items()))
        or _("none")))


@batches_app.command("dissolve")
def dissolve(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch's id or message ID."),
    user: str | None = typer.Option(None, "--as", help="Who dissolves: you (default: the "
                                                       "logged-in user)."),
    reason: str = typer.Option(..., "--reason", help="Why it is taken apart (audited)."),
    json_out: bool = _JSON,
) -> None:
    """Take apart a batch that was never signed (BUILT, or INVALID: set aside because its
    file cannot be built): its payments go back to APPROVED for the next run, except those
    whose own order cannot be built, which are HELD with the reason."""
    from yinqi.pipeline.dissolve import dissolve_batch

    result = dissolve_batch(_app(ctx), batch, actor=acting_as(ctx, user), reason=reason)
    if json_out:
        print_json({"batch_id": result.batch_id, "msg_id": result.msg_id,
                    "returned": result.returned,
                    "held": {str(k): v for k, v in result.held.items()}})
        return
    console.print(_("batch {msg_id} dissolved: {returned} payment(s) back to APPROVED (the next "
                    "payment run batches them again), {held} held").format(
        msg_id=result.msg_id, returned=len(result.returned), held=len(result.held)),
        markup=False, soft_wrap=True)
    for pid, why in result.held.items():
        console.print(_("payment {id} held: {reason}").format(id=pid, reason=redact(why)),
                      markup=False, soft_wrap=True)
