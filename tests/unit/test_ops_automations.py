"""The zombie-run automation's definition and the rule that judges a run's process gone.

Pure rules (yinqi.ops.automations, yinqi.ops.stale_runs): no server. The automation firing
and runs being closed are tested against a real Prefect server in tests/e2e/test_zombie_runs.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from yinqi.errors import InvalidValue
from yinqi.ops.automations import (
    EXPECT_SECONDS,
    HEARTBEAT_SECONDS,
    NAME,
    Window,
    automation,
    heartbeat_env,
)
from yinqi.ops.procs import start_ticks
from yinqi.ops.stale_runs import (
    STARTED_LABEL,
    WORKER_LABEL,
    Evidence,
    gone_because,
    process_of,
    silence_allowed,
)
from yinqi.security.rbac import Actor, Kind, authorise

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
HOST = socket.gethostname()


# --- the automation ---------------------------------------------------------------------------


def test_the_default_window_outlasts_prefect_s_own_heartbeat_three_times() -> None:
    # A process nobody configured heartbeats every 180 s: it must never look dead.
    assert Window() == Window(HEARTBEAT_SECONDS, EXPECT_SECONDS)
    assert (HEARTBEAT_SECONDS, EXPECT_SECONDS) == (30, 540)


@pytest.mark.parametrize(("heartbeat", "expect", "message"), [
    (10, 90, "Prefect sends at most one every 30 s"),
    (29, 90, "Prefect sends at most one every 30 s"),
    (30, 30, "would mark live runs Crashed; give at least 45 s"),
    (30, 44, "would mark live runs Crashed; give at least 45 s"),
    (60, 60, "give at least 90 s"),
])
def test_a_window_that_would_crash_live_runs_is_refused(heartbeat: int, expect: int,
                                                         message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        Window(heartbeat, expect)


@pytest.mark.parametrize(("heartbeat", "expect"), [(30, 45), (30, 90), (60, 90), (180, 540)])
def test_windows_of_one_and_a_half_heartbeats_or_more_are_accepted(heartbeat: int,
                                                                   expect: int) -> None:
    assert Window(heartbeat, expect).expect_seconds == expect


def test_workers_get_the_heartbeat_of_the_window() -> None:
    assert heartbeat_env() == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    assert heartbeat_env(Window(60, 180)) == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}


def test_the_automation_is_prefect_s_zombie_recipe_for_every_flow_run() -> None:
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import Posture

    a = automation(Window(30, 90))
    trigger, [action] = a.trigger, a.actions
    assert a.name == NAME and a.enabled
    assert trigger.posture == Posture.Proactive and trigger.threshold == 1
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.within == timedelta(seconds=90)
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.match.model_dump() == {"prefect.resource.id": ["prefect.flow-run.*"]}
    # A run that ended, or was suspended (its process exits on purpose), stops heartbeating
    # for good reason; a paused run's process keeps heartbeating, so Paused is no excuse.
    assert trigger.expect == {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                              "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                              "prefect.flow-run.Crashed", "prefect.flow-run.Suspended"}
    assert action.state == StateType.CRASHED
    # Not forced: the server then refuses to crash a run that already ended.
    assert action.force is False
    assert "90 s" in action.message and "Yinqi's database still decides" in action.message


def test_only_an_administrator_or_the_service_identity_installs_it() -> None:
    path = "flows automations install"
    assert authorise(path, Actor.service("service:ops")).allowed
    assert authorise(path, Actor("ma.admin", Kind.USER, frozenset({"admin"}))).allowed
    assert not authorise(path, Actor("liu.treasurer", Kind.USER,
                                     frozenset({"treasurer"}))).allowed


# --- judging a run's process --------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_process_on_this_machine_is_looked_at_directly() -> None:
    me = os.getpid()
    assert process_of({WORKER_LABEL: f"{HOST}:{me}"}) == "running"
    assert process_of({WORKER_LABEL: f"{HOST}:{me}",
                       STARTED_LABEL: str(start_ticks(me))}) == "running"
    assert process_of({WORKER_LABEL: f"{HOST}:{_dead_pid()}"}) == "gone"


def test_a_pid_handed_out_again_is_not_mistaken_for_the_run_s_process() -> None:
    me, ticks = os.getpid(), start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc here: process start times are not known")
    assert process_of({WORKER_LABEL: f"{HOST}:{me}", STARTED_LABEL: str(ticks + 1)}) == "gone"


@pytest.mark.parametrize(("labels", "seen"), [
    ({WORKER_LABEL: "another-machine:4242"}, "elsewhere"),
    ({WORKER_LABEL: f"{HOST}:not-a-pid"}, "elsewhere"),
    ({}, "unknown"),
    ({WORKER_LABEL: "no-colon"}, "unknown"),
    ({WORKER_LABEL: 17}, "unknown"),
])
def test_other_machines_and_unlabelled_runs_cannot_be_looked_at(labels: dict[str, object],
                                                                seen: str) -> None:
    assert process_of(labels) == seen


def test_silence_counts_three_of_the_run_s_own_heartbeats() -> None:
    assert silence_allowed(30.0) == timedelta(seconds=90)
    assert silence_allowed(60.5) == timedelta(seconds=181.5)
    # Pace unknown (fewer than two heartbeats): Prefect's default, the slowest likely.
    assert silence_allowed(None) == timedelta(seconds=540)
    # Two heartbeats sent close together never shrink the allowance below Prefect's minimum.
    assert silence_allowed(0.2) == timedelta(seconds=90)


def _far(**kw: object) -> Evidence:
    base: dict[str, object] = {"state_since": NOW - timedelta(hours=1), "process": "elsewhere",
                               "worker": "another-machine:4242"}
    return Evidence(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("evidence", "verdict"), [
    # This machine: the pid is the fact, whatever else is known.
    (Evidence(NOW, "running", f"{HOST}:1", live_claim=False), None),
    (Evidence(NOW, "gone", f"{HOST}:1", last_heartbeat=NOW, live_claim=True),
     f"its process {HOST}:1 is no longer running"),
    # Another machine: a recent heartbeat or a live claim keeps the run open.
    (_far(last_heartbeat=NOW - timedelta(seconds=80), cadence=30.0), None),
    (_far(last_heartbeat=NOW - timedelta(seconds=500)), None),
    (_far(live_claim=True), None),
    (_far(last_heartbeat=NOW - timedelta(hours=1), cadence=30.0, live_claim=True), None),
    # ... and so does a state younger than the threshold (its claim may still come).
    (_far(state_since=NOW - timedelta(minutes=5)), None),
    (_far(process="unknown", worker=None, state_since=NOW - timedelta(minutes=9)), None),
    # Silent, no live claim, old enough: gone.
    (_far(last_heartbeat=NOW - timedelta(seconds=91), cadence=30.0),
     "its process another-machine:4242 sent no heartbeat since 2026-11-20 09:28:29 UTC and "
     "holds no live claim in Yinqi's database"),
    (_far(last_heartbeat=NOW - timedelta(seconds=541)),
     "its process another-machine:4242 sent no heartbeat since 2026-11-20 09:20:59 UTC"),
    (_far(), "its process another-machine:4242 sent no heartbeat and holds no live claim"),
    (_far(process="unknown", worker=None),
     "its process sent no heartbeat and holds no live claim in Yinqi's database"),
])
def test_a_run_is_closed_only_on_evidence_its_process_is_gone(evidence: Evidence,
                                                               verdict: str | None) -> None:
    found = gone_because(evidence, NOW)
    if verdict is None:
        assert found is None
    else:
        assert found is not None and found.startswith(verdict), found


def test_the_threshold_is_the_operator_s() -> None:
    young = _far(state_since=NOW - timedelta(seconds=30))
    assert gone_because(young, NOW) is None
    assert gone_because(young, NOW, threshold=timedelta(seconds=10)) is not None
