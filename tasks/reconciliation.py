"""Reconciliation tasks: one per step and account group, never one per line."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.context import RETRYING, app, timed
from yinqi.identifiers import mask
from yinqi.security.masking import escape_markdown, markdown_table, redact


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


def quarantine_markdown(report: dict[str, Any]) -> str:
    """A quarantined statement for the Prefect UI. Everything in it came from the bank's
    file: account numbers masked, markdown and HTML escaped."""
    def text(value: object) -> str:
        return escape_markdown(redact(str(value)))

    checks = report.get("checks") or {}
    failures = checks.get("failures", [])
    lines = [f"## Statement {text(report['statement_id'])} quarantined",
             "", f"Account {text(mask(report['account']))}, {report['lines']} line(s), "
                 f"from {text(report['source'])}. Nothing of it is used until it is fixed.", "",
             "| check | what is wrong |", "|---|---|"]
    lines += [f"| {text(f['check'])} | {text(f['message'])} |" for f in failures]
    lines += ["", "| expectation | column(s) | result | unexpected |", "|---|---|---|---|"]
    lines += [f"| {text(e['expectation'])} | {text(', '.join(e['columns']))} | "
              f"{'pass' if e['success'] else 'FAIL'} | {e['unexpected_count']} |"
              for e in checks.get("expectations", [])]
    return "\n".join(lines)


def _quarantine_artifact(report: dict[str, Any]) -> None:
    create_markdown_artifact(key="statement-quarantined", markdown=quarantine_markdown(report),
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
    from yinqi.recon.accounts import labels

    yinqi = app()
    rows = daily_report(yinqi, day, accounts)
    named = labels(yinqi.config)
    # Bank and account name tell the accounts apart; the number shows its last four only.
    table = [{**named.get(r.account, {}), **r.as_json(), "account": mask(r.account)}
             for r in rows]
    create_table_artifact(key="reconciliation-report", table=markdown_table(table),
                          description=f"Reconciliation {day.isoformat()} per account")
    create_markdown_artifact(key="reconciliation-summary",
                             markdown=as_markdown(rows, day, named),
                             description=f"Reconciliation {day.isoformat()}")
    return table
