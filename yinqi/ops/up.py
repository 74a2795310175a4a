"""``yinqi up``: the Prefect server, the sandbox bank(s) and the serve process, in that order,
watched until Ctrl-C, SIGTERM (``yinqi down``) or the end of one of them; then all stopped.

The installation is readied (``yinqi init``, sandbox enrolment) and the sandbox banks start
while the server migrates its database; the serve process once the server answers
/api/health and the banks accept connections; ``yinqi up`` is ready
when the serve process has registered every deployment. The state file is rewritten after
each start, so a ``yinqi down`` from another shell finds every process started so far, even
during start-up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from yinqi.errors import YinqiError
from yinqi.ops import prefect_api
from yinqi.ops.control import stop_leftovers
from yinqi.ops.errors import OpsError
from yinqi.ops.plan import SandboxPlan, child_env, prefect_database
from yinqi.ops.procs import port_free, port_open, start_ticks
from yinqi.ops.state import (
    ChildRecord,
    RunLock,
    RunPaths,
    UpState,
    read_state,
    remove_state,
    write_state,
)
from yinqi.ops.supervisor import Child, ChildSpec, Stopped, Supervisor
from yinqi.ops.urls import api_url as make_api_url, ui_url_of

Say = Callable[[str], None]


@dataclass(frozen=True)
class UpPlan:
    home: Path
    intake_folder: Path
    port: int = 4200
    host: str = "127.0.0.1"
    sweep_minutes: float = 5.0
    #: The sandbox banks' state folder (database, CA, signers).
    sandbox_state: Path | None = None
    start_timeout: float = 180.0
    grace: float = 15.0
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.home)

    @property
    def api_url(self) -> str:
        return make_api_url(self.host, self.port)

    @property
    def ui_url(self) -> str:
        return ui_url_of(self.api_url)

    def env(self) -> dict[str, str]:
        return child_env(self.base_env, home=self.home, prefect_home=self.paths.prefect_home,
                         api_url=self.api_url, ui_url=self.ui_url, host=self.host,
                         port=self.port)


class Stopper:
    """Ctrl-C, SIGTERM or SIGHUP ask for a clean stop; a second one for a quick one (the
    children are killed without their grace period)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.hurry.set()
            return
        self.reason = signal.Signals(signum).name
        self.stop.set()

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def hold_lock(paths: RunPaths) -> RunLock:
    """The run lock of this home, or OpsError naming the ``yinqi up`` that holds it."""
    paths.ensure()
    lock = RunLock(paths.lock)
    if lock.acquire():
        return lock
    pid = RunLock.holder(paths.lock)
    try:
        state = read_state(paths.state)
    except OpsError:
        state = None
    where = f", Prefect UI {state.ui_url}" if state is not None and state.pid == pid else ""
    raise OpsError(f"yinqi up already runs for {paths.home} (pid {pid}{where}): "
                   "`yinqi status` shows it, `yinqi down` stops it")


def clear_leftovers(paths: RunPaths, grace: float, say: Say) -> None:
    """Stop what an earlier ``yinqi up`` that did not end cleanly (killed) left running.
    Call with the run lock held: then no live ``yinqi up`` owns the state file."""
    try:
        state = read_state(paths.state)
    except OpsError as exc:
        say(f"ignored: {exc}")
        state = None
    if state is None:
        return
    for line in stop_leftovers(state, grace=grace):
        say(f"stopped a leftover of an earlier yinqi up: {line}")
    remove_state(paths.state)


def _check_ports(host: str, ports: list[int], who: str, how: str) -> None:
    for port in ports:
        if not port_free(host, port):
            raise OpsError(f"port {port} on {host} is already in use, so {who} cannot "
                           f"listen there: stop what uses it or choose another port ({how})")


def _server_spec(plan: UpPlan, env: dict[str, str]) -> ChildSpec:
    return ChildSpec("prefect-server", [plan.python, "-m", "prefect", "server", "start"], env,
                     plan.paths.logs / "prefect-server.log", plan.ui_url)


def _sandbox_spec(plan: UpPlan, env: dict[str, str], port: int, *, alone: bool) -> ChildSpec:
    assert plan.sandbox_state is not None
    name = "sandbox-bank" if alone else f"sandbox-bank-{port}"
    argv = [plan.python, "-m", "yinqi", "sandbox-bank", "serve", "--host", plan.host,
            "--port", str(port), "--state-dir", str(plan.sandbox_state)]
    return ChildSpec(name, argv, env, plan.paths.logs / f"{name}.log",
                     f"https://{plan.host}:{port}")


def _serve_spec(plan: UpPlan, env: dict[str, str]) -> ChildSpec:
    argv = [plan.python, "-m", "yinqi", "flows", "serve", "--intake-folder",
            str(plan.intake_folder), "--sweep-minutes", f"{plan.sweep_minutes:g}"]
    return ChildSpec("serve", argv, env, plan.paths.logs / "serve.log")


def _quietly(probe: Callable[[], bool]) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return probe()
        except (httpx.HTTPError, ValueError):
            return False
    return ready


def install_automations(api_url: str, say: Say) -> None:
    """The automation that marks a run Crashed when its process stops heartbeating (after
    three of Prefect's default heartbeats: safe for every process that may use this
    server)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from yinqi.ops.automations import NAME, Window, install

    # Not the serve process's 30 s x 3: an operator's `payments run` or the demo may run
    # flows against this server on Prefect's default 180 s heartbeat, and a window shorter
    # than theirs would crash their live runs.
    window = Window()
    try:
        with temporary_settings({PREFECT_API_URL: api_url}):
            with get_client(sync_client=True) as client:
                done = install(client, window)
    except YinqiError as exc:
        # Payments do not depend on it: say so and run on.
        say(f"warning: automation '{NAME}' not installed ({exc}); a run whose process dies "
            "stays Running in the UI until `yinqi flows automations install` succeeds")
        return
    say(f"automation '{NAME}' {done.action}: a run silent for {window.expect_seconds} s is "
        "marked Crashed")


def run(plan: UpPlan, *, prepare: Callable[[], SandboxPlan | None],
        deployment_names: Callable[[], list[str]], say: Say, stopper: Stopper) -> None:
    """Start, watch, stop. Returns after a requested stop; raises OpsError when a process
    fails to start or ends by itself (the others stopped first).

    ``prepare`` readies the installation (init, sandbox enrolment) and says which sandbox
    banks to run; it and ``deployment_names`` run while the server migrates its database.
    """
    _check_ports(plan.host, [plan.port], "the Prefect server", "--port")
    env = plan.env()
    # This process talks to the same server (deployments, automations), never to another.
    os.environ.update({k: env[k] for k in env if k.startswith(("PREFECT_", "DO_NOT_TRACK"))})
    plan.paths.prefect_home.mkdir(parents=True, exist_ok=True)
    plan.intake_folder.mkdir(parents=True, exist_ok=True)
    paths = plan.paths
    now = datetime.now(UTC)
    state = UpState(pid=os.getpid(), started=start_ticks(os.getpid()),
                    started_at=now.isoformat(timespec="seconds"),
                    home=str(plan.home), ui_url=plan.ui_url, api_url=plan.api_url,
                    prefect_home=str(paths.prefect_home),
                    prefect_database=prefect_database(env, paths.prefect_home),
                    intake_folder=str(plan.intake_folder))
    supervisor = Supervisor(grace=plan.grace)
    failure: str | None = None

    def started(child: Child) -> None:
        state.children.append(ChildRecord(child.name, child.pid, child.started,
                                          list(child.spec.argv), str(child.spec.log),
                                          child.spec.url))
        write_state(paths.state, state)
        say(f"started {child.name} (pid {child.pid}), log {child.spec.log}")

    def wait(child: Child, ready: Callable[[], bool], what: str) -> bool:
        return supervisor.wait_ready(child, _quietly(ready), timeout=plan.start_timeout,
                                     what=what, stop=stopper.stop)

    try:
        write_state(paths.state, state)
        server = supervisor.start(_server_spec(plan, env))
        started(server)
        # The installation and the sandbox banks need nothing of the server: they are made
        # ready, and started, while it migrates its database.
        sandbox = prepare()
        ports = sorted(sandbox.ports) if sandbox is not None else []
        _check_ports(plan.host, ports, "the sandbox bank", "its endpoint in banks.toml")
        banks = []
        for port in ports:
            bank = supervisor.start(_sandbox_spec(plan, env, port, alone=len(ports) == 1))
            banks.append((port, bank))
            started(bank)
        state.deployments = deployment_names()  # meanwhile too
        write_state(paths.state, state)
        if not wait(server, lambda: prefect_api.healthy(plan.api_url), "healthy"):
            return
        say(f"Prefect server healthy on {plan.api_url} ({state.prefect_database})")
        install_automations(plan.api_url, say)
        for port, bank in banks:
            if not wait(bank, lambda p=port: port_open(plan.host, p), f"listening on {port}"):
                return
        # Deployments left on the server by an earlier run count only once registered anew.
        since = datetime.now(UTC) - timedelta(seconds=1)
        serve = supervisor.start(_serve_spec(plan, env))
        started(serve)
        if not wait(serve, lambda: not prefect_api.served_since(plan.api_url,
                                                                 state.deployments, since),
                    f"all {len(state.deployments)} deployments registered"):
            return
        _summary(plan, state, say)
        failure = watch(supervisor, stopper)
        if failure is not None:
            say(f"{failure}; stopping the rest")
    finally:
        if stopper.reason:
            say(f"{stopper.reason}: stopping (again to kill at once)")
        supervisor.stop_all(hurry=stopper.hurry, report=lambda s: say(_stopped_line(s)))
        remove_state(paths.state)
    if failure is not None:
        raise OpsError(f"{failure}; stopped the rest")


def watch(supervisor: Supervisor, stopper: Stopper, interval: float = 0.5) -> str | None:
    """Wait for a stop request (None) or for a child to end by itself (what happened)."""
    while not stopper.stop.wait(interval):
        dead = supervisor.exited()
        if dead is not None:
            return supervisor.exit_message(dead)
    return None


def _stopped_line(stopped: Stopped) -> str:
    line = f"{stopped.name} (pid {stopped.pid}) {stopped.how}"
    if stopped.left:
        line += f"; still alive in its group: {', '.join(map(str, stopped.left))}"
    return line


def _summary(plan: UpPlan, state: UpState, say: Say) -> None:
    served = set(state.deployments)
    try:
        listed = prefect_api.deployments(plan.api_url, ui_url=plan.ui_url, runs=False)
    except httpx.HTTPError:
        listed = []  # only the listing is lost: `yinqi status` shows them
    found = [d for d in listed if d.name in served]
    say("")
    took = (datetime.now(UTC) - datetime.fromisoformat(state.started_at)).total_seconds()
    say(f"Yinqi is up (ready in {took:.0f} s). Prefect UI: {plan.ui_url}")
    for child in state.children:
        say(f"  {child.name:<16} pid {child.pid:<8} {child.url or ''}".rstrip())
    say(f"  deployments ({len(found)}), served by the serve process:")
    width = max((len(d.name) for d in found), default=0)
    for d in found:
        say(f"    {d.name:<{width}}  {', '.join(d.schedules) or 'run from the UI'}")
    say(f"  voucher files dropped into {plan.intake_folder} are imported every minute")
    say(f"  logs in {plan.paths.logs}; state in {plan.paths.state}")
    say("Ctrl-C (or `yinqi down` in another shell) stops everything.")
