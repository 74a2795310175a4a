"""What the local Prefect server says: its health, its UI, the deployments and their runs.

Plain REST calls over httpx: ``yinqi status`` answers in well under a second and never
starts a temporary Prefect server (as a Prefect client without an API URL would).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

from yinqi.ops.urls import run_url

TIMEOUT_SECONDS = 5.0


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{api_url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json() is True


def ui_serves(ui_url: str, timeout: float = 5.0) -> bool:
    """Whether the UI's root page comes back as HTML."""
    try:
        response = httpx.get(f"{ui_url}/", timeout=timeout)
    except httpx.HTTPError:
        return False
    return (response.status_code == 200
            and response.headers.get("content-type", "").startswith("text/html"))


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    state: str
    #: When it is due (a scheduled run) or was due (a past run), ISO 8601.
    expected_start: str | None
    url: str | None


@dataclass(frozen=True)
class DeploymentInfo:
    id: str
    name: str
    flow: str
    schedules: list[str]
    paused: bool
    #: Prefect's READY while a process polls for its runs, else NOT_READY.
    status: str | None
    updated: str | None
    next_run: RunInfo | None = None
    last_run: RunInfo | None = None
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_schedule(schedule: dict[str, Any]) -> str:
    """One line for a schedule as the API returns it (interval, cron or rrule)."""
    if schedule.get("interval") is not None:
        seconds = float(schedule["interval"])
        if seconds % 3600 == 0:
            return f"every {seconds / 3600:g} h"
        if seconds % 60 == 0:
            return f"every {seconds / 60:g} min"
        return f"every {seconds:g} s"
    zone = schedule.get("timezone")
    where = f" ({zone})" if zone else ""
    if schedule.get("cron"):
        return f"cron {schedule['cron']}{where}"
    if schedule.get("rrule"):
        return f"rrule {schedule['rrule']}{where}"
    return "schedule"


def _schedules(deployment: dict[str, Any]) -> list[str]:
    found = []
    for entry in deployment.get("schedules") or []:
        line = describe_schedule(entry.get("schedule") or {})
        found.append(line if entry.get("active", True) else f"{line} (inactive)")
    return found


def _run(row: dict[str, Any], ui_url: str | None, api_url: str) -> RunInfo:
    state = row.get("state") or {}
    return RunInfo(id=row["id"], name=row.get("name", ""),
                   state=state.get("name") or state.get("type") or "",
                   expected_start=row.get("expected_start_time"),
                   url=run_url(row["id"], ui_url=ui_url, api_url=api_url, env={}))


def _one_run(client: httpx.Client, deployment_id: str, *, scheduled: bool,
             ui_url: str | None, api_url: str) -> RunInfo | None:
    states = {"any_": ["SCHEDULED"]} if scheduled else {"not_any_": ["SCHEDULED"]}
    body = {"deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": states}},
            "sort": "EXPECTED_START_TIME_ASC" if scheduled else "EXPECTED_START_TIME_DESC",
            "limit": 1}
    rows = client.post("/flow_runs/filter", json=body).raise_for_status().json()
    return _run(rows[0], ui_url, api_url) if rows else None


def deployments(api_url: str, *, ui_url: str | None = None,
                runs: bool = True) -> list[DeploymentInfo]:
    """Every deployment on the server, by name; with ``runs``, each one's next scheduled run
    and its latest other run."""
    with httpx.Client(base_url=api_url, timeout=TIMEOUT_SECONDS) as client:
        rows = client.post("/deployments/filter", json={"limit": 200}).raise_for_status().json()
        flow_ids = sorted({row["flow_id"] for row in rows})
        flows = client.post("/flows/filter", json={"flows": {"id": {"any_": flow_ids}}}
                            ).raise_for_status().json() if flow_ids else []
        flow_names = {f["id"]: f["name"] for f in flows}
        found = []
        for row in sorted(rows, key=lambda r: str(r["name"])):
            info = DeploymentInfo(
                id=row["id"], name=row["name"], flow=flow_names.get(row["flow_id"], ""),
                schedules=_schedules(row), paused=bool(row.get("paused")),
                status=row.get("status"), updated=row.get("updated"),
                tags=list(row.get("tags") or []))
            if runs:
                info = replace(info,
                               next_run=_one_run(client, row["id"], scheduled=True,
                                                 ui_url=ui_url, api_url=api_url),
                               last_run=_one_run(client, row["id"], scheduled=False,
                                                 ui_url=ui_url, api_url=api_url))
            found.append(info)
    return found


def served_since(api_url: str, names: list[str], since: datetime) -> list[str]:
    """Which of the deployments ``names`` a process has not (re)registered since ``since``:
    a deployment left on the server by an earlier run counts as missing until then."""
    with httpx.Client(base_url=api_url, timeout=TIMEOUT_SECONDS) as client:
        body = {"deployments": {"name": {"any_": names}}, "limit": 200}
        rows = client.post("/deployments/filter", json=body).raise_for_status().json()
    fresh = {row["name"] for row in rows
             if row.get("updated") and datetime.fromisoformat(row["updated"]) >= since}
    return [name for name in names if name not in fresh]


#: The flows whose runs pause for approvers (flows/payment/flow.py, ``_approval_gate``).
APPROVAL_FLOWS = ("Payment run", "Rerun batch")


def paused_runs(api_url: str, *, flows: tuple[str, ...] = APPROVAL_FLOWS,
                ui_url: str | None = None, timeout: float = 2.0) -> list[RunInfo]:
    """The runs of ``flows`` paused now (waiting for input), oldest first."""
    body = {"flows": {"name": {"any_": list(flows)}},
            "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": 50}
    with httpx.Client(base_url=api_url, timeout=timeout) as client:
        rows = client.post("/flow_runs/filter", json=body).raise_for_status().json()
    return [_run(row, ui_url, api_url) for row in rows]
