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
from yinqi.identifiers import mask
from yinqi.money import Money
from yinqi.store.migrate import ensure_current

payments_app = typer.Typer(help="Payments after approval: send, follow, correct.",
                           no_args_is_help=True)
batches_app = typer.Typer(help="Bank messages (batches): list, rerun.",
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

        use_app(yinqi)
        payment_run(wait_for_approval=False, poll_seconds=poll, max_follow_seconds=seconds,
                    collect_receipts=not no_receipts, lease_seconds=lease)
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
                    "errors": (progress.sent.errors + progress.polled.errors)[:20]})
    else:
        console.print(f"{progress.rounds} round(s): {progress.sent.sends} send(s), "
                      f"{progress.receipts} receipt(s); {batches} batch(es) still open")
        _print_states(states)
    if batches:
        raise typer.Exit(1)


def _print_states(states: dict[str, Any]) -> None:
    table = Table("state", "payments", "amounts", title="Payments by state")
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
    table = Table("id", "end-to-end id", "state", "amount", "payee", "account", "batch",
                  "reason", title=f"{len(rows)} payment(s)")
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
        console.print(f"payment {payment_id}: " + ("; ".join(
            f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()) or "nothing changed"),
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
    table = Table("id", "msg id", "bank", "state", "payments", "total", "sends", "by state",
                  title=f"{len(rows)} batch(es)")
    for r in rows:
        table.add_row(str(r["id"]), r["msg_id"], r["bank"], r["state"], str(r["payments"]),
                      f"{r['total']} {r['currency']}", str(r["send_attempts"]),
                      ", ".join(f"{n} {st}" for st, n in sorted(r["payment_states"].items())))
    console.print(table, markup=False)


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
    console.print(f"batch {result.msg_id}: {len(result.to_send)} payment(s) will be sent "
                  f"again, {len(result.to_reapprove)} need approval again (amount or payee "
                  "changed); untouched: " + (", ".join(
                      f"{n} {st}" for st, n in sorted(result.untouched.items())) or "none"))
