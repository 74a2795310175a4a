"""Closing the Prefect runs a dead process left "Running", when a new run takes their work.

A payment run, status sweep or batch rerun that starts looks at the earlier runs of those
flows that Prefect still shows Running or Pending; a run whose process is gone is marked
Crashed with a message naming the run that found it. For a rerun of one batch, only the runs
of that batch are looked at: reruns of the same batch, and the run whose process holds (or
last held) the batch's claim.

Whether a process is gone is judged from evidence, most certain first:

1. Its process ran on this machine: alive or not is a fact (pid and start time).
2. Otherwise it is alive while Prefect heard its heartbeat lately, or while its process
   holds an unexpired claim in Yinqi's database; and not judged at all before its state is
   older than a threshold.

None of this decides what is sent: the claims in Yinqi's database do, and closing a run
never touches them. A dead process's claim runs out by itself and the next worker takes the
batch on. The Prefect state shown in the UI is made to tell the truth, nothing more.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from yinqi.ops.automations import HEARTBEAT_EVENT, PREFECT_DEFAULT_HEARTBEAT_SECONDS
from yinqi.ops.procs import is_running, start_ticks
from yinqi.store.models import Batch
from yinqi.store.types import utcnow

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

#: The flows that carry batches to the bank (flows/payment/flow.py).
CARRIERS = ("Payment run", "Status sweep", "Rerun batch")
#: The flow whose ``batch`` parameter names the one batch it reruns.
RERUN_FLOW = "Rerun batch"
#: Flow run labels a carrier records when it starts: its worker name as the batch claims
#: record it (``host:pid``) and its process's start time (so a reused pid is not mistaken).
WORKER_LABEL = "yinqi.worker"
STARTED_LABEL = "yinqi.process-started"
#: Heartbeats missed before silence counts as death.
MISSED_HEARTBEATS = 3
#: A run on another machine is judged only once its state is this old: the pipeline's
#: default claim lease, so a claim it took when it started has had time to run out.
DEFAULT_THRESHOLD = timedelta(minutes=10)
#: Runs looked at per start; more open runs than this means something else is wrong.
LOOK_AT_MOST = 200

Process = Literal["running", "gone", "elsewhere", "unknown"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What is known about one open run's process."""

    state_since: datetime
    process: Process
    worker: str | None = None
    last_heartbeat: datetime | None = None
    #: Seconds between its last two heartbeats, when Prefect has two.
    cadence: float | None = None
    #: Its worker holds an unexpired batch claim in Yinqi's database.
    live_claim: bool = False


def silence_allowed(cadence: float | None) -> timedelta:
    """How long a run may stay silent and still be alive: three of its own heartbeats, or
    three of Prefect's default ones when its pace is not known."""
    seconds = cadence if cadence and cadence > 0 else PREFECT_DEFAULT_HEARTBEAT_SECONDS
    return timedelta(seconds=MISSED_HEARTBEATS * max(seconds, 30))


def gone_because(e: Evidence, now: datetime, *, threshold: timedelta = DEFAULT_THRESHOLD
                 ) -> str | None:
    """Why the run's process is gone, or None while it may be alive."""
    if e.process == "running":
        return None
    if e.process == "gone":
        return f"its process {e.worker} is no longer running"
    if e.last_heartbeat is not None and now - e.last_heartbeat < silence_allowed(e.cadence):
        return None
    if e.live_claim:
        return None
    if now - e.state_since < threshold:
        return None
    heard = (f"no heartbeat since {e.last_heartbeat:%Y-%m-%d %H:%M:%S} UTC"
             if e.last_heartbeat is not None else "no heartbeat")
    who = f"its process {e.worker}" if e.worker else "its process"
    return f"{who} sent {heard} and holds no live claim in Yinqi's database"


def process_of(labels: Mapping[str, Any], *, host: str | None = None) -> Process:
    """Whether the process a run's labels name is running, as far as this machine can see."""
    worker = labels.get(WORKER_LABEL)
    if not isinstance(worker, str) or ":" not in worker:
        return "unknown"
    where, _, pid = worker.rpartition(":")
    if where != (host or socket.gethostname()) or not pid.isdigit():
        return "elsewhere"
    started = labels.get(STARTED_LABEL)
    started_ticks = int(started) if isinstance(started, str | int) and str(started).isdigit() \
        else None
    return "running" if is_running(int(pid), started_ticks) else "gone"


def record_worker(client: SyncPrefectClient, run_id: UUID, worker: str) -> None:
    """Label the run with its worker name (``host:pid``, as its batch claims record it) and
    its process's start time: what a later run needs to tell whether the process lives."""
    labels = {WORKER_LABEL: worker}
    host, _, pid = worker.rpartition(":")
    ticks = start_ticks(int(pid)) if host == socket.gethostname() and pid.isdigit() else None
    if ticks is not None:
        labels[STARTED_LABEL] = str(ticks)
    client.update_flow_run_labels(run_id, labels)


@dataclass(frozen=True, slots=True)
class Closed:
    flow_run_id: UUID
    name: str
    flow: str
    reason: str
    #: False: the server refused (the run ended meanwhile); nothing changed.
    accepted: bool

    def as_json(self) -> dict[str, Any]:
        return {"flow_run_id": str(self.flow_run_id), "name": self.name, "flow": self.flow,
                "reason": self.reason, "accepted": self.accepted}


def close_stale_runs(client: SyncPrefectClient, sessions: sessionmaker[Session], *,
                     current_run_id: UUID, batch: str | None = None,
                     flows: Iterable[str] = CARRIERS, threshold: timedelta = DEFAULT_THRESHOLD,
                     now: datetime | None = None) -> list[Closed]:
    """Mark Crashed the open runs of ``flows`` (those of ``batch`` only, when given) whose
    process is gone; the message names the run ``current_run_id``. Returns what was closed."""
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Crashed

    now = now or utcnow()
    names = _flow_names(client, flows)
    if not names:
        return []
    current = client.read_flow_run(current_run_id)
    finder = names.get(current.flow_id) or client.read_flow(current.flow_id).name
    open_runs = _open_runs(client, names, exclude=current_run_id)
    if batch is not None:
        open_runs = _of_batch(open_runs, names, sessions, batch)
    closed = []
    for run in open_runs:
        reason = gone_because(_evidence(client, sessions, run, now), now, threshold=threshold)
        if reason is None:
            continue
        message = (f"Closed by {finder} run '{current.name}' "
                   f"({current.id}): {reason}. Yinqi's database decides what was sent; "
                   "the new run carries the batches on.")
        result = client.set_flow_run_state(run.id, Crashed(message=message))
        closed.append(Closed(run.id, run.name, names[run.flow_id], reason,
                             accepted=result.status == SetStateStatus.ACCEPT))
    return closed


def _flow_names(client: SyncPrefectClient, flows: Iterable[str]) -> dict[UUID, str]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    found = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))))
    return {f.id: f.name for f in found}


def _open_runs(client: SyncPrefectClient, names: Mapping[UUID, str], *, exclude: UUID
               ) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return client.read_flow_runs(
        flow_filter=FlowFilter(id=FlowFilterId(any_=list(names))),
        flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(not_any_=[exclude]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING]))),
        limit=LOOK_AT_MOST)


def _of_batch(runs: list[FlowRun], names: Mapping[UUID, str],
              sessions: sessionmaker[Session], ref: str) -> list[FlowRun]:
    """The runs that concern one batch: its reruns, and the run whose worker holds (or last
    held) its claim. A reference that names no batch matches reruns given the same text."""
    query = select(Batch.id, Batch.msg_id, Batch.claimed_by).where(Batch.msg_id == ref)
    if ref.isdigit():
        query = select(Batch.id, Batch.msg_id, Batch.claimed_by).where(
            or_(Batch.id == int(ref), Batch.msg_id == ref))
    with sessions() as s:
        row = s.execute(query).first()
    refs = {ref} if row is None else {str(row.id), row.msg_id}
    holder = None if row is None else row.claimed_by

    def concerns(run: FlowRun) -> bool:
        if names.get(run.flow_id) == RERUN_FLOW and str(run.parameters.get("batch")) in refs:
            return True
        return holder is not None and run.labels.get(WORKER_LABEL) == holder

    return [r for r in runs if concerns(r)]


def _evidence(client: SyncPrefectClient, sessions: sessionmaker[Session], run: FlowRun,
              now: datetime) -> Evidence:
    state_since = run.state.timestamp if run.state is not None else run.created or now
    worker = run.labels.get(WORKER_LABEL)
    worker = worker if isinstance(worker, str) else None
    process = process_of(run.labels)
    if process in ("running", "gone"):
        return Evidence(state_since, process, worker)
    beats = _heartbeats(client, run.id, since=run.created or now - timedelta(days=1), now=now)
    cadence = (beats[0] - beats[1]).total_seconds() if len(beats) > 1 else None
    return Evidence(state_since, process, worker, beats[0] if beats else None, cadence,
                    _holds_live_claim(sessions, worker, now) if worker else False)


def _heartbeats(client: SyncPrefectClient, run_id: UUID, *, since: datetime, now: datetime
                ) -> list[datetime]:
    """When the run's last two heartbeats happened, newest first."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventOrder,
        EventResourceFilter,
    )

    page = client.read_events(EventFilter(
        occurred=EventOccurredFilter(since=since, until=now + timedelta(minutes=1)),
        event=EventNameFilter(name=[HEARTBEAT_EVENT]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        order=EventOrder.DESC), limit=2)
    return [e.occurred for e in page.events]


def _holds_live_claim(sessions: sessionmaker[Session], worker: str, now: datetime) -> bool:
    with sessions() as s:
        held = s.execute(select(func.count()).select_from(Batch).where(
            Batch.claimed_by == worker, Batch.lease_until > now)).scalar_one()
    return held > 0


__all__ = ["CARRIERS", "Closed", "Evidence", "WORKER_LABEL", "close_stale_runs",
           "gone_because", "process_of", "record_worker", "silence_allowed"]
