"""Reconciliation tasks: one per step and account group, never one per line."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.context import RETRYING, app, timed
from yinqi.identifiers import mask


@task(name="Fetch statements", **RETRYING)
@timed
def fetch_statements(accounts: list[str] | None, first: date, last: date) -> dict[str, Any]:
    from yinqi.recon import fetch_statements as fetch

    result = fetch(app(), accounts, first, last, actor="prefect")
    logger = get_run_logger()
    for error in result.errors:
        logger.warning("%s", error)
    for report in result.intake.reports:
        if report["status"] == "quarantined":
            _quarantine_artifact(report)
    return {"accepted": len(result.intake.accepted),
            "quarantined": len(result.intake.quarantined),
            "duplicates": len(result.intake.duplicates), "errors": result.errors}


@task(name="Import statement file", **RETRYING)
@timed
def import_file(path: str) -> dict[str, Any]:
    from pathlib import Path

    from yinqi.recon import import_statement_file

    result = import_statement_file(app(), Path(path), actor="prefect")
    for report in result.reports:
        if report["status"] == "quarantined":
            _quarantine_artifact(report)
    return {"accepted": len(result.accepted), "quarantined": len(result.quarantined),
            "duplicates": len(result.duplicates)}


def _quarantine_artifact(report: dict[str, Any]) -> None:
    checks = report.get("checks") or {}
    failures = checks.get("failures", [])
    lines = [f"## Statement {report['statement_id']} quarantined",
             "", f"Account {mask(report['account'])}, {report['lines']} line(s), "
                 f"from {report['source']}. Nothing of it is used until it is fixed.", "",
             "| check | what is wrong |", "|---|---|"]
    lines += [f"| {f['check']} | {f['message']} |" for f in failures]
    lines += ["", "| expectation | column(s) | result | unexpected |", "|---|---|---|---|"]
    lines += [f"| {e['expectation']} | {', '.join(e['columns'])} | "
              f"{'pass' if e['success'] else 'FAIL'} | {e['unexpected_count']} |"
              for e in checks.get("expectations", [])]
    create_markdown_artifact(key="statement-quarantined", markdown="\n".join(lines),
                             description="great-expectations validation of a statement "
                                         "that failed its checks")


@task(name="Match statements", **RETRYING)
@timed
def match(accounts: list[str] | None, first: date, last: date) -> dict[str, Any]:
    from yinqi.recon import reconcile

    summary = reconcile(app(), first=first, last=last, accounts=accounts, actor="prefect")
    get_run_logger().info("matched %d of %d line(s); %d new exception(s)",
                          summary.matched_lines, summary.lines, summary.new_exceptions)
    return summary.as_json()


@task(name="Report", **RETRYING)
@timed
def report(accounts: list[str] | None, day: date) -> list[dict[str, Any]]:
    from yinqi.recon import as_markdown, daily_report

    rows = daily_report(app(), day, accounts)
    table = [{**r.as_json(), "account": mask(r.account)} for r in rows]
    create_table_artifact(key="reconciliation-report", table=table,
                          description=f"Reconciliation {day.isoformat()} per account")
    create_markdown_artifact(key="reconciliation-summary", markdown=as_markdown(rows, day),
                             description=f"Reconciliation {day.isoformat()}")
    return table
