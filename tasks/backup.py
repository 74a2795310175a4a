"""Backup tasks: one backup, the retention rules, one restore drill, each a step in the UI."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.context import app, timed
from yinqi.security.masking import escape_markdown

#: Who the audit trail names for scheduled backup work.
ACTOR = "system:backup"


@task(name="Back up", retries=1, retry_delay_seconds=60)
@timed
def back_up(kind: str) -> dict[str, Any]:
    """A retry starts a new backup: an interrupted one never became visible in the target."""
    from yinqi.backup.service import take_backup

    result, _ = take_backup(app(), kind, actor=ACTOR, prune=False)  # type: ignore[arg-type]
    logger = get_run_logger()
    logger.info("%s backup %s: %d rows and %d files written, %d parts, %.1f MB", result.kind,
                result.name, sum(result.written.values()), result.files_written, result.parts,
                result.stored_bytes / 1e6)
    if result.full_because:
        logger.warning("a full backup instead of an incremental: %s", result.full_because)
    return {"name": result.name, "kind": result.kind, "previous": result.previous,
            "rows_written": sum(result.written.values()),
            "rows_deleted": sum(result.deleted.values()),
            "files_written": result.files_written, "parts": result.parts,
            "stored_bytes": result.stored_bytes, "location": result.location,
            "full_because": result.full_because}


@task(name="Apply retention")
@timed
def apply_retention() -> dict[str, Any]:
    from yinqi.backup.service import prune_backups

    pruned = prune_backups(app(), actor=ACTOR)
    logger = get_run_logger()
    for name, why in pruned.broken.items():
        logger.warning("backup %s cannot be restored: %s", name, why)
    for name in pruned.unreadable:
        logger.warning("backup %s has a manifest that does not authenticate", name)
    return {"kept": len(pruned.kept), "deleted": pruned.deleted, "broken": pruned.broken,
            "unreadable": pruned.unreadable}


@task(name="Restore drill")
@timed
def restore_drill() -> dict[str, Any]:
    from yinqi.backup.service import drill

    report = drill(app(), actor=ACTOR)
    create_markdown_artifact(key="restore-drill", markdown=drill_markdown(report.as_json()),
                             description="The weekly proof that the newest backup restores")
    if not report.ok:
        raise RuntimeError(f"restore drill failed: {report.problems[0]}")
    return report.as_json()


def drill_markdown(report: dict[str, Any]) -> str:
    def text(value: object) -> str:
        return escape_markdown(str(value))

    state = "passed" if report["ok"] else "FAILED"
    lines = [f"## Restore drill {state}", "",
             f"Backup **{text(report['backup'] or '-')}**, a chain of {len(report['chain'])} "
             f"backup(s), restored into a scratch database in {report['seconds']:.1f} s.", ""]
    if report["ok"]:
        head = report["audit_head"]
        lines += [f"- {report['rows']} rows and {report['files']} files restored",
                  f"- audit chain verified, head event #{head.get('seq')} "
                  f"`{text(str(head.get('hash', ''))[:16])}` as backed up and as in the live "
                  "trail",
                  "- money per payment state equal to the backup's:", "",
                  "| state | currency | payments | amount (minor units) |", "|---|---|---|---|"]
        lines += [f"| {text(t['state'])} | {text(t['currency'])} | {t['count']} | "
                  f"{t['amount_minor']} |" for t in report["payment_totals"]]
    for problem in report["problems"]:
        lines.append(f"- **problem:** {text(problem)}")
    for warning in report["warnings"]:
        lines.append(f"- warning: {text(warning)}")
    return "\n".join(lines)
