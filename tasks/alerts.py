"""Sending Yinqi's alerts from inside the flows that raise them.

Called at the end of the payment run, the status sweep and the daily reconciliation, so an
alert goes out within the run that raised it. It never fails a flow: a channel that is down
is logged as a warning and retried by the next run (the back-off lives in the alert log).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from prefect import get_run_logger, task

from tasks.context import app, timed
from yinqi.security.masking import redact


@task(name="Deliver alerts")
@timed
def deliver_alerts(limit: int = 200) -> dict[str, Any]:
    from yinqi.store.alert_delivery import deliver_due
    from yinqi.store.types import utcnow

    logger = get_run_logger()
    try:
        report = deliver_due(app(), utcnow(), limit)
    except Exception as exc:  # noqa: BLE001 - alerts must never fail the run that raised them
        logger.warning("alert delivery did not run, the next run retries: %s: %s",
                       type(exc).__name__, redact(str(exc))[:500])
        return {"error": f"{type(exc).__name__}: {redact(str(exc))[:500]}"}
    for error in report.errors[:20]:
        logger.warning("%s", error)
    if report.sent or report.errors:
        logger.info("alerts: %d sent, %d to retry, %d failed for good", report.sent,
                    report.retrying, report.failed)
    return report.as_json()


@contextmanager
def delivering(out: dict[str, Any]) -> Iterator[None]:
    """Deliver alerts when the block ends, into ``out["alerts"]``; also when the block
    failed (its own error is then raised as before)."""
    try:
        yield
    except Exception:
        with suppress(Exception):  # the stage's error is the one the operator needs
            deliver_alerts()
        raise
    try:
        out["alerts"] = deliver_alerts()
    except Exception as exc:  # noqa: BLE001 - e.g. the Prefect API gone for a moment
        get_run_logger().warning("alert delivery did not run: %s", redact(str(exc))[:500])
        out["alerts"] = {"error": redact(str(exc))[:500]}
