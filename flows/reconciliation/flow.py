"""Daily reconciliation, as operators schedule and watch it in the Prefect UI."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow

from tasks import alerts as alert_tasks
from tasks import reconciliation as t


def _yesterday(timezone: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


@flow(name="Daily reconciliation", log_prints=False)
def daily_reconciliation(accounts: list[str] | None = None, day: date | None = None,
                         last_day: date | None = None, timezone: str = "Asia/Shanghai",
                         fetch: bool = True) -> dict[str, Any]:
    """Fetch the day's end-of-day statements (checked by great-expectations; a failing one is
    quarantined whole), match them against payments, report per account. ``day`` defaults to
    yesterday in ``timezone``; ``last_day`` makes it a range (manual reruns)."""
    first = day or _yesterday(timezone)
    last = last_day or first
    out: dict[str, Any] = {"first": first.isoformat(), "last": last.isoformat()}
    # Quarantined statements and returned payments are told at the end of this run.
    with alert_tasks.delivering(out):
        if fetch:
            out["statements"] = t.fetch_statements(accounts, first, last)
        out["matching"] = t.match(accounts, first, last)
        reports = []
        d = first
        while d <= last:
            reports.extend(t.report(accounts, d))
            d += timedelta(days=1)
        out["report"] = reports
    return out


@flow(name="Statement file intake", log_prints=False)
def statement_files(paths: list[str]) -> list[dict[str, Any]]:
    """Take statement files in (camt.052/053/054, MT940/942); each is checked and stored or
    quarantined whole."""
    return [t.import_file(p) for p in paths]
