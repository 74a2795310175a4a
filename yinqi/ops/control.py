"""``yinqi down`` and ``yinqi status``: a running ``yinqi up`` seen and stopped from another
shell, through its lock and state file (yinqi.ops.state)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from yinqi.ops import prefect_api
from yinqi.ops.errors import OpsError
from yinqi.ops.procs import group_members, is_running
from yinqi.ops.state import ChildRecord, RunLock, RunPaths, UpState, read_state, remove_state
from yinqi.ops.supervisor import stop_group

Say = Callable[[str], None]
#: After ``yinqi up`` got its second signal (kill the children at once) or SIGKILL.
QUICK_STOP_SECONDS = 15.0


def _ours(child: ChildRecord) -> bool:
    """Whether the group led by ``child.pid`` is still the one ``yinqi up`` started: not when
    that pid now names another process (a group's id is not handed out again while any
    process of the group lives, so surviving members are ours)."""
    return not is_running(child.pid) or is_running(child.pid, child.started)


def stop_leftovers(state: UpState, *, grace: float) -> list[str]:
    """Stop the process groups of ``state`` that still live, the last started first."""
    done = []
    for child in reversed(state.children):
        if not _ours(child) or not group_members(child.pid):
            continue
        how = stop_group(child.pid, lambda c=child: is_running(c.pid, c.started),
                         grace=grace)
        left = group_members(child.pid)
        if left:
            raise OpsError(f"{child.name} (process group {child.pid}) survived SIGKILL: "
                           f"processes {', '.join(map(str, left))} are still alive")
        done.append(f"{child.name} (pid {child.pid}) {how}")
    return done


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it ended meanwhile


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def down(home: Path, *, timeout: float, grace: float, say: Say,
         quick_stop: float = QUICK_STOP_SECONDS) -> None:
    """Stop the ``yinqi up`` of ``home``: ask it (SIGTERM) and wait; if it does not end in
    ``timeout`` seconds, ask again (kill the children at once), then kill it and its
    children here. A state file left by one that was killed: its processes are stopped."""
    paths = RunPaths(home)
    if RunLock.held(paths.lock):
        pid = RunLock.holder(paths.lock)
        if pid is None or not is_running(pid):
            raise OpsError(f"{paths.lock} is held but names no live process: stop the "
                           "`yinqi up` of this home by hand")
        say(f"stopping yinqi up (pid {pid}) ...")

        def released() -> bool:
            return not RunLock.held(paths.lock)

        _signal(pid, signal.SIGTERM)
        if not _wait(released, timeout):
            say(f"yinqi up (pid {pid}) still running after {timeout:g} s: killing its "
                "processes")
            _signal(pid, signal.SIGTERM)  # its second signal: children killed at once
            if not _wait(released, quick_stop):
                _signal(pid, signal.SIGKILL)
                if not _wait(released, quick_stop):
                    raise OpsError(f"yinqi up (pid {pid}) survived SIGKILL")
        # A clean stop removed the state file; one left now names what a killed up left.
        state = read_state(paths.state)
    else:
        state = read_state(paths.state)
        if state is None:
            say(f"yinqi up is not running for {home}")
            return
        say(f"yinqi up (pid {state.pid}) ended without cleaning up; stopping what it left")
    if state is not None:
        for line in stop_leftovers(state, grace=grace):
            say(f"stopped {line}")
        remove_state(paths.state)
    say("stopped")


@dataclass
class Status:
    home: str
    running: bool
    pid: int | None = None
    started_at: str | None = None
    ui_url: str | None = None
    api_url: str | None = None
    prefect_database: str | None = None
    intake_folder: str | None = None
    healthy: bool = False
    processes: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.running and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def status(home: Path, *, runs: bool = True) -> Status:
    """What the ``yinqi up`` of ``home`` runs, alive or not, and what its server says."""
    paths = RunPaths(home)
    state = read_state(paths.state)
    held = RunLock.held(paths.lock)
    running = held and state is not None and state.pid == RunLock.holder(paths.lock)
    report = Status(home=str(home), running=running)
    if state is None:
        report.problems.append("yinqi up is starting (no state file yet)" if held else
                               f"yinqi up is not running for {home}")
        return report
    report.pid, report.started_at = state.pid, state.started_at
    report.ui_url, report.api_url = state.ui_url, state.api_url
    report.prefect_database, report.intake_folder = state.prefect_database, state.intake_folder
    if not running:
        report.problems.append(f"yinqi up (pid {state.pid}) is not running: its state file "
                               "is left over; `yinqi down` stops what it left")
    for child in state.children:
        alive = is_running(child.pid, child.started)
        report.processes.append({"name": child.name, "pid": child.pid, "alive": alive,
                                 "url": child.url, "log": child.log})
        if not alive:
            report.problems.append(f"{child.name} (pid {child.pid}) is not running; see "
                                   f"{child.log}")
    report.healthy = prefect_api.healthy(state.api_url)
    if not report.healthy:
        report.problems.append(f"the Prefect API at {state.api_url} does not answer")
        return report
    try:
        found = prefect_api.deployments(state.api_url, ui_url=state.ui_url, runs=runs)
    except httpx.HTTPError as exc:
        report.problems.append(f"the Prefect API failed listing deployments: {exc}")
        return report
    served = set(state.deployments)
    for info in found:
        report.deployments.append({**info.to_json(), "served": info.name in served})
    missing = sorted(served - {d.name for d in found})
    if missing:
        report.problems.append(f"deployments not on the server: {', '.join(missing)}")
    return report
