"""The payment run and its companions, as operators see them in the Prefect UI.

Every flow continues from what the database says: killed at any line and started again, it
picks up the batches where they are, never signs or sends anything twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import select

from tasks import alerts as alert_tasks
from tasks import payment as t
from tasks.context import Timed, app
from yinqi.security.masking import escape_markdown

VOUCHER_SUFFIXES = (".csv", ".xlsx", ".json")


class ApprovalDecision(RunInput):
    """The form a paused payment run shows: one approver, one decision, one one-time code."""

    approver: str = Field(description="Your Yinqi user name, e.g. li.approver")
    decision: Literal["approve", "reject"] = Field(
        default="approve", description="Approve or reject the payments waiting for you")
    code: str = Field(pattern=r"^\d{6}$", description="Your current 6-digit one-time code")
    reason: str | None = Field(default=None, description="Why (required to reject)")
    payment_ids: list[int] = Field(
        default_factory=list,
        description="Payments to decide; empty decides every payment waiting for your level")


def _open_batches() -> list[int]:
    """Batches this run follows: open ones, except those a freeze keeps from the bank (they
    wait for two people, not for this run's time limit)."""
    from yinqi.pipeline.run import OPEN_BATCHES
    from yinqi.store.models import Batch
    from yinqi.store.risk import frozen_unsent_batches

    with app().sessions() as s:
        frozen = set(frozen_unsent_batches(s))
        return [b for b in s.execute(select(Batch.id).where(
            Batch.state.in_([b.value for b in OPEN_BATCHES])).order_by(Batch.id)).scalars()
            if b not in frozen]


def _approval_gate(timeout: int, poll_interval: int, rounds: int) -> dict[str, Any]:
    """Wait in the UI for approvers until nothing is pending (or ``rounds`` answers came)."""
    gate = t.pending_approvals()
    answers = []
    while gate["pending"] and len(answers) < rounds:
        create_markdown_artifact(
            key="approval-request",
            markdown="## Payments waiting for approval\n\n"
                     f"{gate['pending']} payment(s). Next level needed: "
                     + ", ".join(f"**{escape_markdown(role)}** ({n})"
                                 for role, n in gate["next_roles"].items())
                     + "\n\nResume this run with your user name, decision and one-time code. "
                       "The same rules as `yinqi approvals approve` apply: maker-checker, one "
                       "level per person, each code works once.",
            description="What this run is waiting for")
        # The form's description is what the approver reads in the UI before deciding.
        form = ApprovalDecision.with_initial_data(description=gate["form"])
        answer = pause_flow_run(wait_for_input=form, timeout=timeout,
                                poll_interval=poll_interval, key=f"approval-{len(answers)}")
        answers.append(t.decide(answer.approver, answer.decision, answer.code, answer.reason,
                                answer.payment_ids or gate["payment_ids"]))
        gate = t.pending_approvals()
    return {"pending": gate["pending"], "answers": answers}


def _to_the_bank(max_follow_seconds: float, poll_seconds: float, collect: bool,
                 lease_seconds: float) -> dict[str, Any]:
    formed = t.form_batches()
    signed = t.sign_batches(lease_seconds=lease_seconds)
    batch_ids = _open_batches()
    progress = t.new_progress() if batch_ids else None
    sent = t.send_batches(poll_seconds, lease_seconds)
    followed = t.follow_statuses(batch_ids, max_follow_seconds, poll_seconds, progress,
                                 lease_seconds) if batch_ids else {}
    receipts = t.collect_receipts(lease_seconds=lease_seconds) if collect else {}
    summary = t.summarise(batch_ids) if batch_ids else []
    return {"formed": formed, "signed": signed, "sent": sent, "followed": followed,
            "receipts": receipts, "batches": summary}


@flow(name="Payment run", log_prints=False)
def payment_run(
    voucher_file: str | None = None,
    mapping: str = "erp-cn",
    source: str = "erp",
    imported_by: str = "prefect",
    wait_for_approval: bool = True,
    approval_timeout_seconds: int = 3600,
    approval_poll_seconds: int = 5,
    approval_rounds: int = 10,
    max_follow_seconds: float = 1800.0,
    poll_seconds: float = 1.0,
    collect_receipts: bool = True,
    lease_seconds: float = 600.0,
) -> dict[str, Any]:
    """Vouchers in, approvals (waiting in the UI when needed), batches signed and sent exactly
    once, statuses followed to their end, receipts collected."""
    started, inside = time.perf_counter(), Timed.seconds
    out: dict[str, Any] = {}
    # Alerts raised on the way go out at the end of this run, also when a stage failed.
    with alert_tasks.delivering(out):
        t.close_stale_runs()
        if voucher_file:
            out["intake"] = t.import_vouchers(voucher_file, mapping, source, imported_by)
        paused = time.perf_counter()
        out["approvals"] = _approval_gate(approval_timeout_seconds, approval_poll_seconds,
                                          approval_rounds) if wait_for_approval else {}
        paused = time.perf_counter() - paused if out["approvals"].get("answers") else 0.0
        out.update(_to_the_bank(max_follow_seconds, poll_seconds, collect_receipts,
                                lease_seconds))
        wall = time.perf_counter() - started - paused
        in_tasks = Timed.seconds - inside
        out["timing"] = {"wall_seconds": round(wall, 3), "task_seconds": round(in_tasks, 3),
                         "waiting_for_approvers_seconds": round(paused, 3),
                         "prefect_overhead_share": round(max(0.0, wall - in_tasks) / wall, 4)
                         if wall > 0 else 0.0}
    return out


@flow(name="Status sweep", log_prints=False)
def status_sweep(max_follow_seconds: float = 240.0, poll_seconds: float = 2.0,
                 collect_receipts: bool = True, lease_seconds: float = 600.0
                 ) -> dict[str, Any]:
    """Carry every open batch forward: unsent, unknown and accepted ones; collect receipts.
    Scheduled every few minutes, it is also what finishes a run that was killed, and it
    escalates approvals that have waited too long."""
    out: dict[str, Any] = {}
    with alert_tasks.delivering(out):
        t.close_stale_runs()
        out["escalated"] = t.escalate_overdue()
        out.update(_to_the_bank(max_follow_seconds, poll_seconds, collect_receipts,
                                lease_seconds))
    return out


@flow(name="Collect receipts", log_prints=False)
def receipts_flow() -> dict[str, Any]:
    """Download and verify the 电子回单 of every settled payment that has none yet."""
    return t.collect_receipts()


RERUN_ROLES = ("treasurer",)


def _who_asked(what: str, requested_by: str, code: str, roles: tuple[str, ...]) -> str:
    """A person-triggered flow's first step: the person holds one of ``roles`` and proves it
    with a fresh one-time code (spent like any other). Refused, the run fails before it
    touches anything; granted or refused, the request is in the audit log."""
    from datetime import UTC, datetime

    from yinqi.errors import SecurityError
    from yinqi.store.auth import Denied, authorise_request
    from yinqi.store.migrate import ensure_current

    yinqi = app()
    ensure_current(yinqi.engine)
    with yinqi.sessions.begin() as s:
        outcome = authorise_request(s, yinqi.audit, yinqi.field_cipher, username=requested_by,
                                    code=code, roles=roles, what=what, now=datetime.now(UTC))
    # Committed first: a wrong code's count and the refusal's audit event stay.
    if isinstance(outcome, Denied):
        raise SecurityError(f"{what} refused: {outcome.message}")
    return outcome.name


@flow(name="Rerun batch", log_prints=False)
def rerun_batch(batch: str, requested_by: str, code: str, reason: str | None = None,
                wait_for_approval: bool = True, approval_timeout_seconds: int = 3600,
                max_follow_seconds: float = 1800.0, poll_seconds: float = 1.0,
                lease_seconds: float = 600.0) -> dict[str, Any]:
    """Send again only the payments of ``batch`` the bank definitively rejected (corrected
    first with `yinqi payments fix`); changed ones wait for approval again. Asked for by a
    treasurer (``requested_by``) with their current one-time code (``code``)."""
    requested_by = _who_asked("Rerun batch", requested_by, code, RERUN_ROLES)
    t.close_stale_runs(batch)
    reopened = t.reopen_rejected(batch, requested_by, reason)
    out: dict[str, Any] = {"reopened": reopened}
    if reopened["to_reapprove"] and wait_for_approval:
        out["approvals"] = _approval_gate(approval_timeout_seconds, 5, 10)
    out.update(_to_the_bank(max_follow_seconds, poll_seconds, True, lease_seconds))
    return out


@flow(name="Voucher intake", log_prints=False)
def voucher_intake(folder: str, mapping: str = "erp-cn", source: str = "erp",
                   imported_by: str = "prefect") -> dict[str, Any]:
    """Import every voucher file dropped into ``folder``; a file seen before creates nothing."""
    logger = get_run_logger()
    files = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and p.suffix.lower() in VOUCHER_SUFFIXES)
    results = []
    for path in files:
        try:
            results.append(t.import_vouchers(str(path), mapping, source, imported_by))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            logger.error("%s: %s", path.name, exc)
            results.append({"file": str(path), "error": str(exc)})
    return {"files": len(files), "results": results}


__all__ = ["ApprovalDecision", "payment_run", "receipts_flow", "rerun_batch",
           "status_sweep", "voucher_intake"]
