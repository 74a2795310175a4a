"""The backup flows on a real (test) Prefect server: the nightly run makes a full backup when
there is none and incrementals after; the weekly full starts a new chain and retention deletes
the old one; the restore drill leaves a "passed" artifact, and on a damaged chain fails with a
"FAILED" artifact and a critical alert. The deployments carry their cron schedules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import MASTER_SECRET
from config import BackupConfig, load_settings
from yinqi.bootstrap import App
from yinqi.cli.init_cmd import run_init
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.models import Alert, AuditEventRow
from yinqi.vouchers import ERP_CN, read_rows, validate_rows

GBK = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers" / "erp-payments-gbk.csv"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[App]:
    from tasks.context import use_app

    home = tmp_path_factory.mktemp("backup-flow") / "home"
    settings = load_settings(home=home, master_secret=MASTER_SECRET)
    plain = App(settings)
    run_init(plain)
    config = dataclasses.replace(plain.config, backup=BackupConfig(keep_daily=1, keep_weekly=1))
    plain.close()
    installation = App(settings, config)
    data = GBK.read_bytes()
    with installation.sessions.begin() as session:
        checked = validate_rows(read_rows(data, GBK.name), ERP_CN,
                                own_accounts=own_accounts(session), source="erp")
        import_vouchers(session, installation.audit, source="erp", file_name=GBK.name,
                        data=data, rows_result=checked, imported_by="wu.maker",
                        risk_rules=installation.config.risk_rules)
    use_app(installation)
    yield installation
    use_app(None)
    installation.close()


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def test_nightly_then_weekly_full_with_retention(app: App) -> None:
    from flows.backup import backup

    first = backup(kind="auto")
    assert first["backup"]["kind"] == "full"
    second = backup(kind="auto")
    assert second["backup"]["kind"] == "incremental"
    assert second["backup"]["previous"] == first["backup"]["name"]
    assert second["retention"]["deleted"] == []  # the newest keeps its chain
    weekly = backup(kind="full")
    assert weekly["backup"]["kind"] == "full"
    # One day, one week kept: the new full backup; the old chain goes, newest first.
    assert weekly["retention"]["deleted"] == [second["backup"]["name"],
                                              first["backup"]["name"]]
    backups = app.settings.home / "backups"
    assert sorted(p.name for p in backups.iterdir() if not p.name.startswith(".")) == \
        [weekly["backup"]["name"]]
    with app.sessions() as session:
        actions = [(a, actor) for a, actor in session.execute(
            select(AuditEventRow.action, AuditEventRow.actor).where(
                AuditEventRow.action.like("backup.%")).order_by(AuditEventRow.seq))]
    assert actions == [("backup.created", "system:backup")] * 3 + \
        [("backup.pruned", "system:backup")]


def test_the_drill_passes_then_fails_loudly_on_a_damaged_chain(app: App) -> None:
    from prefect.client.orchestration import get_client

    from flows.backup import backup, restore_drill

    passed = restore_drill(return_state=True)
    assert passed.is_completed()
    report = passed.result()["drill"]
    assert report["ok"] and report["rows"] > 0 and report["payment_totals"]
    artifact = _artifacts(passed.state_details.flow_run_id)["restore-drill"]
    assert "Restore drill passed" in artifact.data
    assert "audit chain verified" in artifact.data

    newest = backup(kind="auto")["backup"]["name"]
    part = sorted((app.settings.home / "backups" / newest / "db" / "audit_events").iterdir())[0]
    blob = bytearray(part.read_bytes())
    blob[-1] ^= 0x01
    part.write_bytes(bytes(blob))
    failed = restore_drill(return_state=True)
    assert failed.is_failed()
    artifact = _artifacts(failed.state_details.flow_run_id)["restore-drill"]
    assert "Restore drill FAILED" in artifact.data and "damaged" in artifact.data
    with app.sessions() as session:
        alert = session.execute(select(Alert).where(
            Alert.kind == "backup.drill_failed")).scalar_one()
    assert alert.severity == "critical" and newest in alert.subject
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(failed.state_details.flow_run_id)
    assert run.name and run.state is not None and run.state.is_failed()


def test_deployments_carry_the_backup_schedules(app: App) -> None:
    from prefect.client.orchestration import get_client

    from flows.deployments import deployments

    config = BackupConfig(timezone="Asia/Shanghai")
    for d in deployments(backups=config):
        if "backup" in (d.tags or []):
            d.apply()
    with get_client(sync_client=True) as client:
        names = {d.name: d for d in client.read_deployments()}
    expected = {"backup-nightly": "0 1 * * *", "backup-weekly-full": "0 2 * * 0",
                "restore-drill": "0 4 * * 0"}
    for name, cron in expected.items():
        [schedule] = names[name].schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (cron, "Asia/Shanghai")
    assert names["backup-nightly"].parameters == {"kind": "auto"}
    assert names["backup-weekly-full"].parameters == {"kind": "full"}
