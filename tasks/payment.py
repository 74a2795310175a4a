"""The payment run's tasks. Each works on chunks (a file, a set of batches), never on one
payment, and each is a thin wrapper over a plain function that tests call without Prefect."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy import func, select

from tasks.context import RETRYING, app, timed
from yinqi.money import Money
from yinqi.security.masking import escape_markdown, markdown_table
from yinqi.pipeline import BankPool, Pacing, worker_name as pipeline_worker
from yinqi.states import FINAL
from yinqi.store.models import Batch, Payment


@task(name="Import vouchers", **RETRYING)
@timed
def import_vouchers(path: str, mapping: str, source: str, imported_by: str) -> dict[str, Any]:
    from yinqi.cli.vouchers_cmd import run_import, summary_json

    summary = run_import(app(), Path(path), mapping_name=mapping, source=source,
                         imported_by=imported_by)
    result = summary_json(Path(path), summary)
    result["already_imported"] = summary.already_imported
    if summary.quarantined:
        create_table_artifact(
            key="quarantined-vouchers",
            # Reasons quote the file's cells: masked and escaped like every artifact text.
            table=markdown_table({"row": row, "reason": reason}
                                 for row, reason in summary.quarantined),
            description=f"Rows of {escape_markdown(Path(path).name)} quarantined at intake, "
                        "with the reason")
    get_run_logger().info("%s: %d accepted, %d quarantined, %d duplicates", Path(path).name,
                          summary.accepted, len(summary.quarantined), len(summary.duplicates))
    return result


@task(name="Check approvals", **RETRYING)
@timed
def pending_approvals() -> dict[str, Any]:
    """What waits for approvers, with the description their form in the UI shows."""
    from yinqi.approvals import approval_form_description
    from yinqi.states import PaymentState
    from yinqi.store import approvals
    from yinqi.store.models import BankAccount

    yinqi = app()
    with yinqi.sessions() as s:
        rows = approvals.pending(s, yinqi.config.approval_policy, now=datetime.now(UTC))
        waiting = select(Payment.debtor_account_id).where(
            Payment.state == PaymentState.PENDING_APPROVAL.value)
        payers = [(bank, number, currency) for bank, number, currency in s.execute(
            select(BankAccount.bank, BankAccount.number, BankAccount.currency)
            .where(BankAccount.id.in_(waiting)))] if rows else []
    by_role: dict[str, int] = {}
    for r in rows:
        by_role[r.next_role or "?"] = by_role.get(r.next_role or "?", 0) + 1
    return {"pending": len(rows), "next_roles": by_role,
            "payment_ids": [r.payment_id for r in rows],
            "form": approval_form_description(rows, payers)}


@task(name="Escalate overdue approvals", **RETRYING)
@timed
def escalate_overdue() -> int:
    from yinqi.store import approvals

    yinqi = app()
    with yinqi.sessions.begin() as s:
        named = approvals.escalate_overdue(s, yinqi.audit, yinqi.config.approval_policy,
                                           datetime.now(UTC))
    if named:
        get_run_logger().warning("%d payment(s) waited too long for approval: escalated",
                                 len(named))
    return len(named)


@task(name="Record approval decision")
@timed
def decide(approver: str, decision: str, code: str, reason: str | None,
           payment_ids: list[int]) -> dict[str, Any]:
    """One approver's answer from the paused run's form, judged by the same rules as the CLI."""
    from yinqi.store import approvals

    yinqi = app()
    now = datetime.now(UTC)
    with yinqi.sessions.begin() as s:
        if decision == "approve":
            out = approvals.approve(s, yinqi.audit, yinqi.field_cipher,
                                    yinqi.config.approval_policy, username=approver, code=code,
                                    payment_ids=payment_ids, now=now, reason=reason,
                                    risk_rules=yinqi.config.risk_rules)
            decided, refused = len(out.approved_levels), out.refused
        else:
            out = approvals.reject(s, yinqi.audit, yinqi.field_cipher,  # type: ignore[assignment]
                                   yinqi.config.approval_policy, username=approver, code=code,
                                   payment_ids=payment_ids, reason=reason or "rejected",
                                   now=now)
            decided, refused = len(out.rejected), out.refused  # type: ignore[attr-defined]
    logger = get_run_logger()
    if out.attempt is not None:
        logger.warning("%s: %s", approver, out.attempt.message)
    return {"approver": approver, "decision": decision, "decided": decided,
            "refused": len(refused),
            "refusals": [{"payment_id": pid, "code": code_, "reason": why}
                         for pid, code_, why in refused[:50]],
            "refused_attempt": out.attempt.message if out.attempt is not None else None}


@task(name="Form batches", **RETRYING)
@timed
def form_batches() -> dict[str, Any]:
    from yinqi.pipeline import form_batches as form

    result = form(app())
    if result.held:
        get_run_logger().warning("%d payment(s) held before batching: %s", len(result.held),
                                 "; ".join(sorted(set(result.held.values())))[:500])
    return {"batches": result.batch_ids, "payments": result.batched, "held": len(result.held)}


@task(name="Sign batches", **RETRYING)
@timed
def sign_batches(limit: int = 50, lease_seconds: float = 600.0) -> dict[str, Any]:
    from yinqi.pipeline import SigningResult, sign_batches as sign

    yinqi, total = app(), SigningResult()
    with BankPool(yinqi) as banks:
        while True:
            result = sign(yinqi, banks, pipeline_worker(), limit=limit,
                          lease=timedelta(seconds=lease_seconds))
            total.merge(result)
            if not result.batches:
                break
    # A bank that cannot sign (or a batch that cannot be built) is one warning, and the
    # other banks' batches are signed all the same.
    problems = list(dict.fromkeys(total.errors))
    for problem in problems[:10]:
        get_run_logger().warning("%s", problem)
    return {"batches": total.signed, "payments": total.payments,
            "set_aside": total.set_aside, "waiting": sorted(set(total.blocked)),
            "errors": problems[:20]}


@task(name="Send to the bank", **RETRYING)
@timed
def send_batches(poll_seconds: float = 1.0, lease_seconds: float = 600.0) -> dict[str, Any]:
    from yinqi.pipeline.sending import send_all

    yinqi = app()
    with BankPool(yinqi) as banks:
        result = send_all(yinqi, banks, pipeline_worker(),
                          pacing=Pacing(base=poll_seconds,
                                        lease=timedelta(seconds=lease_seconds)))
    for error in list(dict.fromkeys(result.errors))[:10]:
        get_run_logger().warning("%s", error)
    return {"sends": result.sends, "queries": result.queries, "moved": dict(result.outcomes),
            "errors": len(result.errors)}


@task(name="Follow bank statuses", **RETRYING)
@timed
def follow_statuses(batch_ids: list[int], max_seconds: float, poll_seconds: float = 1.0,
                    progress_artifact: Any = None, lease_seconds: float = 600.0
                    ) -> dict[str, Any]:
    """Ask the bank (backing off) until every payment of ``batch_ids`` has its last word, or
    ``max_seconds`` passed; unknown sends are settled by status queries on the way."""
    from yinqi.pipeline.sending import poll_all, send_all

    yinqi, worker = app(), pipeline_worker()
    pacing = Pacing(base=poll_seconds, lease=timedelta(seconds=lease_seconds))
    rng = random.Random()
    deadline = time.monotonic() + max_seconds
    queries, moved = 0, {}
    waiting: set[int] = set()
    told: set[str] = set()
    with BankPool(yinqi) as banks:
        while True:
            for result in (send_all(yinqi, banks, worker, pacing=pacing, rng=rng),
                           poll_all(yinqi, banks, worker, pacing=pacing, rng=rng)):
                queries += result.queries
                for k, v in result.outcomes.items():
                    moved[k] = moved.get(k, 0) + v
                # Batches that wait for a person (a bank's certificate, a tampered file) are
                # not followed until the time runs out; each reason is logged once.
                waiting.update(result.blocked)
                for error in dict.fromkeys(result.errors):
                    if error not in told:
                        told.add(error)
                        get_run_logger().warning("%s", error)
            done, total = _final_share([b for b in batch_ids if b not in waiting])
            if progress_artifact:
                update_progress_artifact(progress_artifact, 100.0 * done / max(total, 1),
                                         description=f"{done} of {total} payments have the "
                                                     "bank's final word")
            if done >= total or time.monotonic() > deadline:
                return {"final": done, "total": total, "queries": queries, "moved": moved,
                        "waiting": sorted(waiting & set(batch_ids))}
            time.sleep(_pause(poll_seconds))


def _final_share(batch_ids: list[int]) -> tuple[int, int]:
    with app().sessions() as s:
        rows = s.execute(select(Payment.state, func.count()).where(Payment.batch_id.in_(
            batch_ids)).group_by(Payment.state)).all()
    total = sum(n for _, n in rows)
    return sum(n for st, n in rows if st in {f.value for f in FINAL}), total


def _pause(poll_seconds: float) -> float:
    from yinqi.pipeline.sending import due_at
    from yinqi.store.types import utcnow

    due = due_at(app())
    wait = poll_seconds if due is None else (due - utcnow()).total_seconds()
    return min(max(wait, 0.05), max(poll_seconds, 0.05) * 2)


@task(name="Collect receipts", **RETRYING)
@timed
def collect_receipts(limit: int = 5000, lease_seconds: float = 600.0) -> dict[str, Any]:
    from yinqi.pipeline import collect_receipts as collect

    yinqi, worker = app(), pipeline_worker()
    collected, bad, not_ready, files = 0, 0, 0, []
    with BankPool(yinqi) as banks:
        while True:
            result = collect(yinqi, banks, limit=limit, actor=worker,
                             lease=timedelta(seconds=lease_seconds))
            collected += result.collected
            bad += result.bad_signature
            not_ready = result.not_ready
            files += result.files
            if not result.collected:
                break
    if collected:
        home = yinqi.settings.home.resolve()
        create_markdown_artifact(
            key="receipts",
            markdown="## 电子回单 (bank receipts)\n\n"
                     f"{collected} receipt(s) downloaded, signatures verified, stored with "
                     f"their SHA-256.\n\n" + "\n".join(
                         f"- [{escape_markdown(Path(f).name)}]({(home / f).as_uri()})"
                         for f in files[:50]),
            description="Links to the receipts collected in this run")
    return {"collected": collected, "bad_signature": bad, "not_ready": not_ready}


@task(name="Summarise batches", **RETRYING)
@timed
def summarise(batch_ids: list[int]) -> list[dict[str, Any]]:
    yinqi = app()
    with yinqi.sessions() as s:
        batches = list(s.execute(select(Batch).where(Batch.id.in_(batch_ids))
                                 .order_by(Batch.id)).scalars())
        states: dict[int, dict[str, int]] = {}
        for bid, st, n in s.execute(select(Payment.batch_id, Payment.state, func.count())
                                    .where(Payment.batch_id.in_(batch_ids))
                                    .group_by(Payment.batch_id, Payment.state)):
            states.setdefault(bid, {})[st] = n
    rows = [{"batch": b.id, "message id": b.msg_id, "bank": b.bank, "state": b.state,
             "payments": b.payment_count,
             "total": f"{Money.from_minor(b.total_minor, b.currency).amount} {b.currency}",
             "sends": b.send_attempts,
             "by state": ", ".join(f"{n} {st}" for st, n in sorted(states.get(b.id, {}).items())),
             "file sha256": (b.file_sha256 or "")[:16]} for b in batches]
    if rows:
        create_table_artifact(key="batch-summary", table=markdown_table(rows),
                              description="Bank messages of this payment run")
    return rows


@task(name="Reopen rejected payments")
@timed
def reopen_rejected(batch: str, requested_by: str, reason: str | None) -> dict[str, Any]:
    from yinqi.pipeline.reruns import rerun_batch

    result = rerun_batch(app(), batch, actor=requested_by, reason=reason)
    return {"batch_id": result.batch_id, "msg_id": result.msg_id, "to_send": result.to_send,
            "to_reapprove": result.to_reapprove, "untouched": result.untouched}


@task(name="Close stale runs")
@timed
def close_stale_runs(batch: str | None = None) -> list[dict[str, Any]]:
    """Record this run's worker, then mark Crashed the earlier runs (those of ``batch`` only,
    when given) whose process is gone. Only what the Prefect UI shows changes: the batch
    claims in the database decide who sends, so a failure here is logged and the run goes on."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    from yinqi.ops.stale_runs import close_stale_runs as close, record_worker

    logger = get_run_logger()
    try:
        run_id = UUID(str(flow_run.id))
        with get_client(sync_client=True) as client:
            record_worker(client, run_id, pipeline_worker())
            closed = close(client, app().sessions, current_run_id=run_id, batch=batch)
    except Exception as exc:  # noqa: BLE001 - the UI's view of old runs never stops a payment
        logger.warning("earlier runs not checked for a dead process: %s", exc)
        return []
    for run in closed:
        logger.warning("run '%s' of %s marked Crashed: %s", run.name, run.flow, run.reason)
    return [run.as_json() for run in closed]


def new_progress() -> Any:
    return create_progress_artifact(0.0, key="payment-run-progress",
                                    description="Share of this run's payments with the "
                                                "bank's final word")
