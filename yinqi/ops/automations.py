"""The Prefect automation that marks a run Crashed when its process stops heartbeating.

A flow process that is killed (by an operator, the OOM killer, a lost machine) cannot report
its own end, and Prefect would show its run "Running" forever. Each flow process sends a
``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; this
automation (Prefect's "detect zombie flows" recipe) expects the next heartbeat, or the run's
end, within a window after each one, and marks the run Crashed when neither comes.

The window must outlast the slowest heartbeat of *every* process that talks to the server: a
run marked Crashed while its process lives is refused its next task by the server, so a
window that is too short stops live payment runs. Prefect sends a heartbeat every 180 s
unless told otherwise; the default window (540 s) is three of those. Where every process
runs with :func:`heartbeat_env` (``yinqi flows serve`` does), ``expect_seconds=90`` marks a
dead run within a minute and a half.

What was sent is never decided here: the batch claims in Yinqi's database decide that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from yinqi.errors import InvalidValue, YinqiError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.automations import AutomationCore

NAME = "Yinqi: mark runs Crashed when their process is gone"
#: Prefect sends no heartbeat more often than this.
MIN_HEARTBEAT_SECONDS = 30
#: Prefect's own heartbeat when a process is not told otherwise (3.9).
PREFECT_DEFAULT_HEARTBEAT_SECONDS = 180
HEARTBEAT_SECONDS = MIN_HEARTBEAT_SECONDS
EXPECT_SECONDS = 3 * PREFECT_DEFAULT_HEARTBEAT_SECONDS
#: Below this many heartbeats per window, one slow heartbeat (a long garbage collection, a
#: slow API call) would crash a live run.
MIN_HEARTBEATS_PER_WINDOW = 1.5

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
#: Events after which a run stops heartbeating for good reason: it ended, or it was suspended
#: (its process exits while it waits; a resumed run starts a new process that heartbeats).
QUIET_AFTER = frozenset({
    "prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed", "prefect.flow-run.Suspended",
})


class AutomationError(YinqiError):
    """The Prefect server could not be reached or refused the automation."""


@dataclass(frozen=True, slots=True)
class Window:
    """How often processes heartbeat, and how long the server waits before it gives up."""

    heartbeat_seconds: int = HEARTBEAT_SECONDS
    expect_seconds: int = EXPECT_SECONDS

    def __post_init__(self) -> None:
        if self.heartbeat_seconds < MIN_HEARTBEAT_SECONDS:
            raise InvalidValue(f"heartbeat every {self.heartbeat_seconds} s: Prefect sends at "
                               f"most one every {MIN_HEARTBEAT_SECONDS} s; give "
                               f"{MIN_HEARTBEAT_SECONDS} or more")
        if self.expect_seconds < MIN_HEARTBEATS_PER_WINDOW * self.heartbeat_seconds:
            least = int(MIN_HEARTBEATS_PER_WINDOW * self.heartbeat_seconds + 0.5)
            raise InvalidValue(
                f"a window of {self.expect_seconds} s for a heartbeat every "
                f"{self.heartbeat_seconds} s would mark live runs Crashed; give at least "
                f"{least} s (three heartbeats, {3 * self.heartbeat_seconds} s, is usual)")


def heartbeat_env(window: Window = Window()) -> dict[str, str]:
    """What the environment of a worker or ``serve`` process needs so that its flow runs
    heartbeat at the window's pace (the runs it starts inherit it)."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(window.heartbeat_seconds)}


def automation(window: Window = Window()) -> AutomationCore:
    """The automation's definition: after each heartbeat of a run, expect another one (or the
    run's end) within ``window.expect_seconds``, else mark the run Crashed."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    silence = window.expect_seconds
    return AutomationCore(
        name=NAME,
        description=(f"A flow run that sent no heartbeat for {silence} s (its process was "
                     "killed, ran out of memory or lost its machine) is marked Crashed. "
                     "Installed by `yinqi flows automations install`."),
        enabled=True,
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *QUIET_AFTER},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence),
        ),
        # Not forced: the server refuses to crash a run that already ended, so a heartbeat
        # sent between a run's end and its process's exit changes nothing.
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=(f"No heartbeat from this run's process for {silence} s: it is gone. "
                     "Yinqi's database still decides what was sent; the status sweep carries "
                     "its batches on."))],
    )


#: The parts of an automation that :func:`install` keeps as it defines them.
_COMPARED = {"description", "enabled", "trigger", "actions", "actions_on_trigger",
             "actions_on_resolve"}


@dataclass(frozen=True, slots=True)
class Installed:
    automation_id: UUID
    action: Literal["created", "updated", "unchanged"]
    #: Further automations of the same name, removed (two installs that raced).
    removed: tuple[UUID, ...] = ()


def install(client: SyncPrefectClient, window: Window = Window()) -> Installed:
    """Create the automation, or bring the one of the same name to this definition.

    Running it again changes nothing; a second automation of the same name (two installs at
    once) is removed, so a dead run is marked once.
    """
    import httpx

    wanted = automation(window)
    try:
        found = sorted(client.read_automations_by_name(NAME), key=lambda a: str(a.id))
        if not found:
            return Installed(client.create_automation(wanted), "created")
        keep, *extra = found
        for duplicate in extra:
            client.delete_automation(duplicate.id)
        removed = tuple(a.id for a in extra)
        if keep.model_dump(include=_COMPARED) == wanted.model_dump(include=_COMPARED):
            return Installed(keep.id, "unchanged", removed)
        client.update_automation(keep.id, wanted)
        return Installed(keep.id, "updated", removed)
    except httpx.HTTPStatusError as exc:
        raise AutomationError(
            f"the Prefect server at {client.api_url} refused the automation "
            f"({exc.response.status_code}: {exc.response.text[:200]})") from exc
    except httpx.HTTPError as exc:
        raise AutomationError(f"cannot reach the Prefect server at {client.api_url} ({exc}); "
                              "is it running and PREFECT_API_URL right?") from exc


__all__ = ["EXPECT_SECONDS", "HEARTBEAT_SECONDS", "NAME", "AutomationError", "Installed",
           "Window", "automation", "heartbeat_env", "install"]
