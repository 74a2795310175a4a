"""The payment run as a real Prefect flow against a real (test) Prefect server and the
sandbox bank: approvals answered through the paused run's form, artifacts for the UI, and
the deployments with their typed parameters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import SHIPPED
from yinqi.store.approvals import current_code
from yinqi.store.models import AuditEventRow, Payment


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[DemoWorld]:
    from tasks.context import use_app

    with demo_world(tmp_path_factory.mktemp("flow") / "home", settle_after=0.3) as w:
        use_app(w.app)
        yield w
        use_app(None)


def _paused_run() -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    return runs[0] if runs else None


def _wait_paused(thread: threading.Thread, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _paused_run()
        if run is not None:
            return run
        if not thread.is_alive():
            return None
        time.sleep(0.3)
    raise AssertionError("the payment run never paused for approval")


def _code(world: DemoWorld, user: str, at: datetime) -> str:
    with world.app.sessions() as s:
        return current_code(s, world.app.field_cipher, user, at)


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def _what_the_approver_sees(world: DemoWorld, paused: Any) -> tuple[str, list[str]]:
    """The description above the paused run's form, and the Prefect UI lines of `yinqi
    approvals list` (a separate process, against the same server)."""
    import os

    from prefect.input.actions import read_flow_run_input
    from prefect.settings import PREFECT_API_URL

    from tests.cli_support import yinqi
    from tests.production_support import yinqi_env

    key = paused.state.state_details.run_input_keyset["description"]
    deadline = time.monotonic() + 30
    # The run saves its form just after it enters Paused.
    while (description := read_flow_run_input(key, flow_run_id=paused.id)) is None:
        assert time.monotonic() < deadline, "the paused run saved no form description"
        time.sleep(0.2)
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_UI_URL"},
           **yinqi_env(world.app), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    listed = yinqi("approvals", "list", env=env).stdout.splitlines()
    return description, [line for line in listed if line.startswith("Prefect UI: ")]


def test_a_paused_run_takes_approvals_from_its_form_and_pays(world: DemoWorld) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    from flows.payment import payment_run

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = payment_run(voucher_file=str(SHIPPED), imported_by="demo",
                                        approval_poll_seconds=1, approval_timeout_seconds=300,
                                        poll_seconds=0.3, max_follow_seconds=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    answers = [
        # A wrong code is refused by the same rules as the CLI; the run asks again.
        {"approver": "li.approver", "decision": "approve", "code": "000000"},
        {"approver": "li.approver", "decision": "approve", "code": None},
        {"approver": "chen.manager", "decision": "approve", "code": None},
        {"approver": "wang.cfo", "decision": "approve", "code": None},
    ]
    flow_run_id = None
    seen: tuple[str, list[str]] = ("", [])
    for answer in answers:
        paused = _wait_paused(thread)
        if paused is None:
            break
        if flow_run_id is None:
            seen = _what_the_approver_sees(world, paused)
        flow_run_id = paused.id
        if answer["code"] is None:
            answer = {**answer, "code": _code(world, answer["approver"], datetime.now(UTC))}
        resume_flow_run(paused.id, run_input=answer)
        # Wait until the run has left the paused state before looking for the next pause.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _paused_run() is not None:
            time.sleep(0.2)
    thread.join(timeout=300)
    assert "error" not in out, out.get("error")
    # The form tells the approver what waits and from which accounts (masked); the CLI's
    # list of pending payments links to the paused run.
    description, links = seen
    assert description.startswith("### ") and "payment(s) wait for approval" in description
    assert "CNY" in description and r"\*\*\*\*" in description
    assert "1202021209900123456" not in description
    assert "**6-digit one-time code** is required" in description
    ui = str(PREFECT_API_URL.value()).removesuffix("/api")
    assert links == [f"Prefect UI: {ui}/runs/flow-run/{flow_run_id}"]
    result = out["result"]
    decisions = result["approvals"]["answers"]
    assert decisions[0]["refused"] > 0 and decisions[0]["decided"] == 0
    assert result["approvals"]["pending"] == 0
    assert result["intake"]["accepted"] == 41 and len(result["intake"]["quarantined"]) == 6
    with world.app.sessions() as s:
        states = dict(s.execute(select(Payment.state, func.count())
                                .group_by(Payment.state)).all())
        refused_events = s.execute(select(func.count()).select_from(AuditEventRow).where(
            AuditEventRow.action.like("approval.%refused%"))).scalar_one()
    assert states == {"RECEIPTED": 40, "FAILED": 1}
    assert refused_events >= 1
    timing = result["timing"]
    assert 0 <= timing["prefect_overhead_share"] <= 1
    artifacts = _artifacts(flow_run_id)
    assert {"batch-summary", "receipts", "payment-run-progress", "quarantined-vouchers",
            "approval-request"} <= set(artifacts)
    table = artifacts["batch-summary"]
    assert "message id" in str(table.data)


def test_deployments_carry_typed_parameters(world: DemoWorld, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.deployments import deployments

    found = deployments(intake_folder=tmp_path, reconciliation=world.app.config.reconciliation)
    for d in found:
        d.apply()
    with get_client(sync_client=True) as client:
        names = {d.name: d for d in client.read_deployments()}
    assert {"payment-run", "status-sweep", "collect-receipts", "rerun-batch",
            "voucher-intake"} <= set(names)
    rerun = names["rerun-batch"].parameter_openapi_schema
    assert rerun["required"] == ["batch", "requested_by", "code"]
    assert rerun["properties"]["batch"]["type"] == "string"
    run = names["payment-run"].parameter_openapi_schema["properties"]
    assert run["poll_seconds"]["type"] == "number"
    assert run["wait_for_approval"]["type"] == "boolean"
    assert names["status-sweep"].schedules, "the status sweep must be scheduled"
    # One daily reconciliation per account group of reconciliation.toml, on its cron and zone.
    daily = names["reconcile-cny-accounts"]
    [schedule] = daily.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 8 * * *",
                                                                    "Asia/Shanghai")
    # Named by group, never by number: Prefect stores parameters and shows them in its UI.
    assert daily.parameters["accounts"] == ["group:cny-accounts"]
    assert "1202021209900123456" not in str(daily.parameters) + (daily.description or "")
    assert "reconcile-usd-accounts" in names and "reconcile-range" in names
    day = names["reconcile-range"].parameter_openapi_schema["properties"]["day"]
    assert "date" in str(day)


def test_the_intake_flow_imports_dropped_files_once(world: DemoWorld, tmp_path: Path) -> None:
    from flows.payment import voucher_intake
    from yinqi.demo.vouchers import generate

    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "good.csv").write_bytes(generate(5, 77, day=datetime.now(UTC).date(),
                                               bad_rows=1))
    (folder / "broken.xlsx").write_bytes(b"not a spreadsheet")
    (folder / "notes.txt").write_text("ignored: not a voucher file")
    first = voucher_intake(str(folder), imported_by="demo")
    assert first["files"] == 2
    by_name = {Path(r["file"]).name: r for r in first["results"]}
    assert by_name["good.csv"]["accepted"] == 5 and len(by_name["good.csv"]["quarantined"]) == 1
    assert "error" in by_name["broken.xlsx"]
    again = voucher_intake(str(folder), imported_by="demo")
    good = {Path(r["file"]).name: r for r in again["results"]}["good.csv"]
    assert good["already_imported"] and good["payments"] == 0


def test_the_rerun_flow_checks_who_asked_before_anything_else(world: DemoWorld) -> None:
    from flows.payment import rerun_batch
    from yinqi.errors import SecurityError

    def refusals() -> list[AuditEventRow]:
        with world.app.sessions() as s:
            return list(s.execute(select(AuditEventRow).where(
                AuditEventRow.action == "access.refused").order_by(AuditEventRow.seq)).scalars())

    now = datetime.now(UTC)
    # A maker with a valid code is refused: reruns are a treasurer's.
    with pytest.raises(SecurityError, match="needs role treasurer"):
        rerun_batch(batch="NOSUCHBATCH", requested_by="wu.maker",
                    code=_code(world, "wu.maker", now))
    # A treasurer with a wrong code is refused, and the wrong code counts.
    with pytest.raises(SecurityError, match="wrong one-time code"):
        rerun_batch(batch="NOSUCHBATCH", requested_by="liu.treasurer", code="000000")
    assert [e.subject_ids for e in refusals()][-2:] == [["Rerun batch"], ["Rerun batch"]]
    assert [e.actor for e in refusals()][-2:] == ["wu.maker", "liu.treasurer"]
    # The treasurer with a fresh code gets past the door: only then is the batch looked up.
    from yinqi.errors import InvalidValue

    with pytest.raises(InvalidValue, match="NOSUCHBATCH"):
        rerun_batch(batch="NOSUCHBATCH", requested_by="liu.treasurer",
                    code=_code(world, "liu.treasurer", now))
    with world.app.sessions() as s:
        granted = s.execute(select(AuditEventRow).where(
            AuditEventRow.action == "access.granted")).scalars().all()
    assert [(e.actor, e.subject_ids) for e in granted] == [("liu.treasurer", ["Rerun batch"])]


def test_a_bank_whose_certificate_expired_does_not_hold_up_the_run(
        world: DemoWorld, tmp_path: Path) -> None:
    import dataclasses
    from datetime import timedelta

    from connectors.sandbox.pki import issue_client_cert
    from flows.payment import payment_run
    from tasks.context import use_app
    from yinqi.bootstrap import App
    from yinqi.cli.vouchers_cmd import run_import
    from yinqi.demo.approve import approve_pending
    from yinqi.demo.vouchers import generate
    from yinqi.store.models import Alert, Batch

    file = tmp_path / "two-banks.csv"
    file.write_bytes(generate(12, 93, day=datetime.now(UTC).date(), bad_rows=0,
                              refused_share=0.0))
    ids = run_import(world.app, file, imported_by="demo").payment_ids
    approve_pending(world.app, datetime.now(UTC) + timedelta(minutes=10))
    cert, key = tmp_path / "client-cmb-expired.pem", tmp_path / "client-cmb-expired.key"
    issue_client_cert(world.home / "sandbox", "演示科技有限公司", cert, key, days=30,
                      not_before=datetime.now(UTC) - timedelta(days=31))
    banks = {code: cfg.model_copy(update={"client_cert": cert, "client_key": key})
             if code == "cmb-sandbox" else cfg for code, cfg in world.app.config.banks.items()}
    broken = App(world.app.settings, config=dataclasses.replace(world.app.config, banks=banks))

    def banks_of(state: str) -> set[str]:
        with world.app.sessions() as s:
            return set(s.execute(select(Batch.bank).join(Payment, Payment.batch_id == Batch.id)
                                 .where(Payment.id.in_(ids), Payment.state == state)).scalars())

    use_app(broken)
    try:
        started = time.monotonic()
        result = payment_run(wait_for_approval=False, poll_seconds=0.3, max_follow_seconds=120)
        # Done with the good bank: it did not follow the broken one's batches until the end.
        assert time.monotonic() - started < 90
    finally:
        use_app(world.app)
        broken.close()
    # Every batch was signed (that needs no channel); the CMB ones wait, named once.
    assert result["signed"]["errors"] == [] and result["signed"]["batches"]
    assert banks_of("SIGNED") == {"cmb-sandbox"} and "icbc-sandbox" in banks_of("RECEIPTED")
    with world.app.sessions() as s:
        waiting = set(s.execute(select(Batch.id).where(Batch.bank == "cmb-sandbox",
                                                       Batch.state == "SIGNED")).scalars())
        alerts = s.execute(select(Alert).where(Alert.kind == "bank.certificate")).scalars().all()
    assert set(result["followed"]["waiting"]) == waiting
    assert [a.subject for a in alerts] == ["bank cmb-sandbox"]

    # With the certificate it has, the next run (or status sweep) sends them.
    again = payment_run(wait_for_approval=False, poll_seconds=0.3, max_follow_seconds=120)
    assert not again["followed"].get("waiting") and not banks_of("SIGNED")
