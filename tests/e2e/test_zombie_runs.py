"""No zombie runs: a flow process that dies does not leave its run "Running" in the UI.

Against a real (test) Prefect server, whose triggers, actions and event services run:
the heartbeat automation marks a SIGKILLed process's run Crashed and leaves a live one alone;
a rerun of a batch closes the run a dead process left behind, and only that one. Flow
processes are real child processes, killed for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update

from tests.cli_support import yinqi
from yinqi.bootstrap import App
from yinqi.ops.automations import NAME, Window, heartbeat_env, install
from yinqi.store.models import Batch

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: A flow process: named like the flow it stands for; a carrier of batches first does what
#: every carrier does (tasks.payment.close_stale_runs, which records its worker), may claim
#: the open batches like a worker, then waits for its stop file.
PROBE = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from prefect import flow

    flow_name, run_name, ready, stop, batch, claim = sys.argv[1:7]

    @flow(name=flow_name, flow_run_name=run_name)
    def probe(batch: str | None = None) -> str:
        if flow_name != "Zombie probe":
            from tasks import payment as t
            t.close_stale_runs(batch)
        if claim == "claim":
            from tasks.context import app
            from yinqi.pipeline import worker_name
            from yinqi.store.claims import claim_batches
            assert claim_batches(app().sessions, worker_name(), limit=100)
        Path(ready).touch()
        while not Path(stop).exists():
            time.sleep(0.2)
        return "stopped"

    probe(batch or None)
''')


def _wait(what: str, probe: Callable[[], T | None], timeout: float = 120.0,
          every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _run(name: str) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with _client() as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[name])))
    return runs[0] if runs else None


def _state(name: str) -> str | None:
    run = _run(name)
    return run.state.type.value if run is not None and run.state is not None else None


def _heartbeats(run_id: Any) -> int:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with _client() as client:
        page = client.read_events(EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"])), limit=5)
    return len(page.events)


@dataclass
class Probe:
    name: str
    proc: subprocess.Popen[bytes]
    ready: Path
    stop: Path
    log: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)  # reaped: no zombie process left to look alive

    def finish(self) -> None:
        self.stop.touch()
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@dataclass
class Installation:
    app: App
    env: dict[str, str]
    batch: Batch


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory,
                 prefect_server: str) -> Iterator[Installation]:
    """A Yinqi installation with batches formed (nothing sent: no bank is needed)."""
    from tasks.context import use_app
    from yinqi.cli.init_cmd import run_init
    from yinqi.cli.vouchers_cmd import run_import
    from yinqi.demo.approve import approve_pending
    from yinqi.demo.bank import free_port
    from yinqi.demo.setup import DEMO_MASTER_SECRET, demo_app
    from yinqi.demo.vouchers import SHIPPED
    from yinqi.pipeline import form_batches

    home = tmp_path_factory.mktemp("zombies") / "home"
    home.mkdir(parents=True)
    app = demo_app(home, free_port())
    run_init(app)
    run_import(app, SHIPPED, imported_by="test")
    approve_pending(app, datetime.now(UTC) - timedelta(minutes=5))
    assert form_batches(app).batch_ids
    with app.sessions() as s:
        batch = s.execute(select(Batch).order_by(Batch.id)).scalars().first()
        s.expunge(batch)
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "YINQI_HOME": str(home), "YINQI_DATABASE_URL": f"sqlite:///{home / 'yinqi.db'}",
           "YINQI_MASTER_SECRET": DEMO_MASTER_SECRET,
           "YINQI_CONFIG_DIR": str(app.settings.config_dir)}
    use_app(app)
    try:
        yield Installation(app, env, batch)
    finally:
        use_app(None)
        app.close()


def _start(inst: Installation, tmp: Path, flow_name: str, *, batch: str = "",
           claim: bool = False, extra_env: dict[str, str] | None = None) -> Probe:
    name = f"probe-{uuid.uuid4().hex[:10]}"
    ready, stop, log = tmp / f"{name}.ready", tmp / f"{name}.stop", tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, flow_name, name, str(ready), str(stop), batch,
             "claim" if claim else "-"],
            cwd=ROOT, env={**inst.env, **(extra_env or {})}, stdout=out, stderr=out)
    return Probe(name, proc, ready, stop, log)


def _ready(p: Probe) -> bool:
    if p.proc.poll() is not None:
        raise AssertionError(f"{p.name} exited {p.proc.returncode}: "
                             f"{p.log.read_text()[-2000:]}")
    return p.ready.exists()


def test_the_automation_crashes_a_killed_run_and_leaves_a_live_one(
        installation: Installation, prefect_server: str, tmp_path: Path) -> None:
    env = installation.env
    # Installed by an operator against the shared server; a second install changes nothing.
    first = json.loads(yinqi("flows", "automations", "install", "--json", env=env).stdout)
    again = json.loads(yinqi("flows", "automations", "install", "--json", env=env).stdout)
    assert (first["action"], again["action"]) == ("created", "unchanged")
    assert first["automation_id"] == again["automation_id"]
    assert first["worker_env"] == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    unset = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    assert "PREFECT_API_URL is not set" in yinqi("flows", "automations", "install",
                                                 env=unset, check=2).stderr

    # For this test: heartbeats every 30 s (Prefect's fastest), given up after 50 s.
    window = Window(heartbeat_seconds=30, expect_seconds=50)
    with _client() as client:
        assert install(client, window).action == "updated"
        [automation] = client.read_automations_by_name(NAME)
    try:
        beating = heartbeat_env(window)
        doomed = _start(installation, tmp_path, "Zombie probe", extra_env=beating)
        alive = _start(installation, tmp_path, "Zombie probe", extra_env=beating)
        for p in (doomed, alive):
            _wait(f"{p.name} running", lambda p=p: _ready(p) and _state(p.name) == "RUNNING")
            run_id = _run(p.name).id
            _wait(f"{p.name}'s first heartbeat", lambda r=run_id: _heartbeats(r) > 0)
        doomed.kill()

        crashed = _wait("the killed run marked Crashed",
                        lambda: _state(doomed.name) == "CRASHED" and _run(doomed.name),
                        timeout=240, every=1.0)
        assert "No heartbeat from this run's process for 50 s" in crashed.state.message
        # The live run heartbeat within every window meanwhile: untouched, and it finishes.
        assert _state(alive.name) == "RUNNING"
        assert _heartbeats(_run(alive.name).id) >= 2
        alive.finish()
        _wait("the live run completed", lambda: _state(alive.name) == "COMPLETED")
    finally:
        with _client() as client:
            client.delete_automation(automation.id)


def test_a_rerun_of_the_batch_closes_the_run_its_dead_process_left(
        installation: Installation, tmp_path: Path) -> None:
    from flows.payment import rerun_batch
    from yinqi.errors import InvalidValue
    from yinqi.store.approvals import current_code

    app, batch = installation.app, installation.batch
    # A payment run whose worker claimed the open batches; a rerun of the same batch that is
    # still at work; a rerun of another batch. The first and the last are killed.
    dead = _start(installation, tmp_path, "Payment run", claim=True)
    live = _start(installation, tmp_path, "Rerun batch", batch=batch.msg_id)
    other = _start(installation, tmp_path, "Rerun batch", batch="NO-SUCH-BATCH")
    for p in (dead, live, other):
        _wait(f"{p.name} running (and claiming, if it claims)", lambda p=p: _ready(p))
    dead.kill()
    other.kill()
    with app.sessions() as s:
        claim = s.get_one(Batch, batch.id)
        held_by, lease = claim.claimed_by, claim.lease_until
    assert held_by == _run(dead.name).labels["yinqi.worker"]
    assert {_state(p.name) for p in (dead, live, other)} == {"RUNNING"}

    # The treasurer reruns the batch: nothing was rejected, so nothing is sent again, but the
    # run its dead worker left is closed on the way, naming the rerun.
    with app.sessions() as s:
        code = current_code(s, app.field_cipher, "liu.treasurer", datetime.now(UTC))
    with pytest.raises(InvalidValue, match="nothing to rerun"):
        rerun_batch(batch=batch.msg_id, requested_by="liu.treasurer", code=code)
    closed = _run(dead.name)
    assert closed.state.type.value == "CRASHED"
    rerun = next(r for r in _runs_of("Rerun batch") if r.state.type.value == "FAILED")
    assert f"Rerun batch run '{rerun.name}' ({rerun.id})" in closed.state.message
    assert "no longer running" in closed.state.message
    # The live rerun and the other batch's run are not this rerun's to close.
    assert (_state(live.name), _state(other.name)) == ("RUNNING", "RUNNING")
    # The database still decides: the dead worker's claim is exactly as it was.
    with app.sessions() as s:
        after = s.get_one(Batch, batch.id)
        assert (after.claimed_by, after.lease_until) == (held_by, lease)

    # A status sweep looks at every carrier: the other dead run is closed, the live one stays.
    from yinqi.ops.stale_runs import close_stale_runs

    with _client() as client:
        swept = close_stale_runs(client, app.sessions, current_run_id=rerun.id)
    assert [(c.name, c.accepted) for c in swept] == [(other.name, True)]
    assert (_state(live.name), _state(other.name)) == ("RUNNING", "CRASHED")
    live.finish()
    _wait("the live rerun completed", lambda: _state(live.name) == "COMPLETED")


def test_a_run_elsewhere_is_closed_only_once_its_claim_ran_out(
        installation: Installation) -> None:
    """A run on another machine: no pid to look at. Its unexpired claim in the database
    keeps it open; once the claim ran out and no heartbeat came, it is closed."""
    from prefect import flow
    from prefect.states import Completed, Running

    from yinqi.ops.stale_runs import WORKER_LABEL, close_stale_runs

    @flow(name="Status sweep")
    def sweep() -> None:  # never run here: its run is created as another machine's
        return None

    app, worker = installation.app, "another-machine:4242"
    with app.sessions.begin() as s:
        batch = s.execute(select(Batch).order_by(Batch.id.desc())).scalars().first()
        assert batch is not None and batch.id != installation.batch.id, "needs two batches"
        batch.claimed_by, batch.lease_until = worker, datetime.now(UTC) + timedelta(minutes=10)
        batch_id = batch.id
    with _client() as client:
        far = client.create_flow_run(sweep, state=Running())
        client.update_flow_run_labels(far.id, {WORKER_LABEL: worker})
        judge = client.create_flow_run(sweep, state=Running())

        def sweep_now() -> list[Any]:
            return close_stale_runs(client, app.sessions, current_run_id=judge.id,
                                    threshold=timedelta(0))

        assert [c.flow_run_id for c in sweep_now()] == []
        with app.engine.begin() as conn:
            conn.execute(update(Batch).where(Batch.id == batch_id).values(
                lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        [closed] = sweep_now()
        assert closed.flow_run_id == far.id and closed.accepted
        assert "holds no live claim in Yinqi's database" in closed.reason
        state = client.read_flow_run(far.id).state
        assert state.type.value == "CRASHED" and f"({judge.id})" in state.message
        client.set_flow_run_state(judge.id, Completed())


def _runs_of(flow_name: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client() as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(
            any_=[flow_name])))
