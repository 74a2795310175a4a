"""The Prefect UI as the operators' console, against a real (test) Prefect server: `yinqi flows
deploy` registers the served deployments with a work pool, and the CLI links to the UI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from tests.cli_support import yinqi

POOL = "p"


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory,
                 prefect_server: None) -> Iterator[tuple[Any, dict[str, str]]]:
    """An initialised Yinqi (nothing to pay) and the environment of its commands, pointed at
    the test server."""
    from prefect.settings import PREFECT_API_URL

    from yinqi.cli.init_cmd import run_init
    from yinqi.demo.bank import free_port
    from yinqi.demo.setup import DEMO_MASTER_SECRET, demo_app

    home = tmp_path_factory.mktemp("console") / "home"
    home.mkdir(parents=True)
    app = demo_app(home, free_port())
    run_init(app)
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_UI_URL"},
           "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "YINQI_HOME": str(home), "YINQI_DATABASE_URL": app.settings.resolved_database_url,
           "YINQI_MASTER_SECRET": DEMO_MASTER_SECRET,
           "YINQI_CONFIG_DIR": str(app.settings.config_dir)}
    try:
        yield app, env
    finally:
        app.close()


def _ui(env: dict[str, str]) -> str:
    return env["PREFECT_API_URL"].removesuffix("/api")


def _schedule(entry: Any) -> tuple[Any, ...]:
    s = entry.schedule
    return (type(s).__name__, getattr(s, "cron", None), getattr(s, "interval", None),
            getattr(s, "timezone", None))


def test_deploy_registers_the_served_deployments_with_the_pool_once(
        installation: tuple[Any, dict[str, str]]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
    from prefect.deployments.runner import EntrypointType

    from flows.deployments import deployments

    app, env = installation
    first = json.loads(yinqi("flows", "deploy", "--pool", POOL, "--json", env=env).stdout)
    again = json.loads(yinqi("flows", "deploy", "--pool", POOL, "--json", env=env).stdout)
    assert (first["pool_created"], again["pool_created"]) == (True, False)
    assert again["deployments"] == first["deployments"]  # updated in place, same ids

    # What `yinqi flows serve` serves, named by module path as a worker needs.
    served = {d.name: d for d in deployments(reconciliation=app.config.reconciliation,
                                             backups=app.config.backup,
                                             entrypoint_type=EntrypointType.MODULE_PATH)}
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(POOL)
        found = client.read_deployments(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])))
    assert pool.type == "process"
    assert sorted(d.name for d in found) == sorted(served)  # every one, once
    assert {"payment-run", "status-sweep", "reconcile-cny-accounts",
            "backup-nightly"} <= set(served)
    for d in found:
        want = served[d.name]
        # Nothing to pull: a worker imports the flow from its own installation.
        assert d.entrypoint == want.entrypoint and not d.pull_steps
        assert sorted(map(_schedule, d.schedules)) == sorted(map(_schedule, want.schedules)), \
            d.name
        assert d.parameters == want.parameters and sorted(d.tags) == sorted(want.tags)
    by_name = {d.name: d for d in found}
    assert by_name["payment-run"].entrypoint == "flows.payment.flow.payment_run"
    assert len(by_name["status-sweep"].schedules) == 1


def test_deploy_needs_the_server_named(installation: tuple[Any, dict[str, str]]) -> None:
    _, env = installation
    unset = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    refused = yinqi("flows", "deploy", env=unset, check=2)
    assert "PREFECT_API_URL is not set" in refused.stderr


def test_a_payment_run_through_prefect_links_to_its_run(
        installation: tuple[Any, dict[str, str]]) -> None:
    from prefect.client.orchestration import get_client

    _, env = installation
    done = yinqi("payments", "run", "--prefect", "--max-seconds", "30", env=env)
    [line] = [x for x in done.stdout.splitlines() if x.startswith("Prefect UI: ")]
    prefix = f"Prefect UI: {_ui(env)}/runs/flow-run/"
    assert line.startswith(prefix)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(line.removeprefix(prefix)))
        assert client.read_flow(run.flow_id).name == "Payment run"
    assert run.state is not None and run.state.is_completed()
    # --json prints the same object as before: no link in it, nothing around it.
    as_json = yinqi("payments", "run", "--prefect", "--json", env=env).stdout
    assert "ui_url" not in json.loads(as_json) and "Prefect UI" not in as_json


def test_doctor_names_the_ui(installation: tuple[Any, dict[str, str]]) -> None:
    _, env = installation
    shown = yinqi("doctor", env=env, check=None).stdout.splitlines()
    assert f"Prefect UI: {_ui(env)}" in shown
    local = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    assert not [x for x in yinqi("doctor", env=local, check=None).stdout.splitlines()
                if x.startswith("Prefect UI")]
    assert "Prefect UI" not in yinqi("doctor", "--json", env=env, check=None).stdout
