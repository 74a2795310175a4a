"""What ``yinqi up`` decides from the configuration, and the links it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_config, load_settings
from yinqi.ops.plan import child_env, prefect_database, sandbox_plan
from yinqi.ops.prefect_api import describe_schedule
from yinqi.ops.urls import api_url, run_url, ui_url_of

SANDBOX = {"icbc", "cmb"}


def test_the_shipped_banks_are_one_sandbox_process(tmp_path: Path) -> None:
    config = load_config(load_settings(home=tmp_path))
    plan = sandbox_plan({c: str(b.endpoint) for c, b in config.banks.items()}, SANDBOX)
    assert plan.ports == {8443: ["cmb-sandbox", "icbc-sandbox"]}
    assert plan.elsewhere == []


def test_real_banks_start_no_sandbox() -> None:
    plan = sandbox_plan({"icbc": "https://gw.icbc.example.cn/h2h/banks/icbc",
                         "cmb": "https://127.0.0.1:9443/banks/abc",  # loopback, not ours
                         "test": "https://localhost:9001/banks/cmb"}, SANDBOX)
    assert plan.ports == {9001: ["test"]}
    assert plan.elsewhere == ["cmb", "icbc"]


def test_children_run_as_the_service_and_talk_to_this_server_only(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "YINQI_SESSION": "tok", "PREFECT_API_URL": "http://far/api",
            "YINQI_DATABASE_URL": "postgresql://db/yinqi"}
    env = child_env(base, home=tmp_path, prefect_home=tmp_path / "prefect",
                    api_url="http://127.0.0.1:4311/api", ui_url="http://127.0.0.1:4311",
                    host="127.0.0.1", port=4311)
    assert "YINQI_SESSION" not in env
    assert env["YINQI_ACTOR"] == "service"
    assert env["YINQI_DATABASE_URL"] == "postgresql://db/yinqi"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4311/api"
    assert env["PREFECT_SERVER_API_PORT"] == "4311"
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert env["DO_NOT_TRACK"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert base["PREFECT_API_URL"] == "http://far/api"  # the caller's env is left as it was


def test_the_prefect_database_is_named_without_its_password(tmp_path: Path) -> None:
    assert prefect_database({}, tmp_path) == f"SQLite {tmp_path / 'prefect.db'}"
    url = "postgresql+asyncpg://prefect:s3cret@db.internal:5433/prefect"
    shown = prefect_database({"PREFECT_SERVER_DATABASE_CONNECTION_URL": url}, tmp_path)
    assert shown == "PostgreSQL db.internal:5433/prefect"
    older = prefect_database({"PREFECT_API_DATABASE_CONNECTION_URL": url}, tmp_path)
    assert "s3cret" not in older and older.startswith("PostgreSQL")


def test_run_links_point_into_the_ui() -> None:
    run = "0192f0e1-aaaa-bbbb-cccc-000000000001"
    assert run_url(run, api_url="http://127.0.0.1:4200/api", env={}) == \
        f"http://127.0.0.1:4200/runs/flow-run/{run}"
    assert run_url(run, env={"PREFECT_API_URL": "http://10.0.0.5:4200/api/"}) == \
        f"http://10.0.0.5:4200/runs/flow-run/{run}"
    # The UI's own address wins: behind a proxy, or Prefect Cloud, it is not the API's.
    ui = {"PREFECT_UI_URL": "https://prefect.corp.example/", "PREFECT_API_URL": "http://x/api"}
    assert run_url(run, env=ui) == f"https://prefect.corp.example/runs/flow-run/{run}"
    assert run_url(run, ui_url="http://127.0.0.1:4311", env=ui) == \
        f"http://127.0.0.1:4311/runs/flow-run/{run}"
    assert run_url(run, env={}) is None
    assert ui_url_of(api_url("127.0.0.1", 4311)) == "http://127.0.0.1:4311"


@pytest.mark.parametrize("base", ["http://127.0.0.1:4200", "http://127.0.0.1:4200/",
                                  "https://corp.example/prefect", "https://corp.example/prefect/"])
def test_run_links_are_the_ones_prefect_writes(base: str) -> None:
    from prefect.settings import PREFECT_UI_URL, temporary_settings
    from prefect.utilities.urls import url_for

    run = "0192f0e1-aaaa-bbbb-cccc-000000000001"
    with temporary_settings(updates={PREFECT_UI_URL: base}):
        assert run_url(run, ui_url=base, env={}) == url_for("flow-run", obj_id=run)


def test_schedules_read_as_operators_say_them() -> None:
    assert describe_schedule({"interval": 300.0}) == "every 5 min"
    assert describe_schedule({"interval": 60}) == "every 1 min"
    assert describe_schedule({"interval": 7200}) == "every 2 h"
    assert describe_schedule({"interval": 45}) == "every 45 s"
    assert describe_schedule({"cron": "30 8 * * *", "timezone": "Asia/Shanghai"}) == \
        "cron 30 8 * * * (Asia/Shanghai)"
