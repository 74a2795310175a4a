"""The deployments operators schedule and trigger from the Prefect UI.

``yinqi flows serve`` serves them from one process; ``yinqi flows deploy`` registers them
with a process work pool whose workers run them (``deploy()``); ``deployments()`` is also
what a test applies to a server. Parameters are typed by the flows' signatures, so the UI
shows a form (the rerun's batch, the intake folder ...).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.deployments.runner import EntrypointType

from flows.backup import backup, restore_drill
from flows.payment import payment_run, receipts_flow, rerun_batch, status_sweep, voucher_intake
from flows.reconciliation import daily_reconciliation


def deployments(*, intake_folder: Path | None = None, sweep_minutes: float = 5.0,
                tags: tuple[str, ...] = ("yinqi",), reconciliation: Any = None,
                backups: Any = None,
                entrypoint_type: EntrypointType = EntrypointType.FILE_PATH) -> list[Any]:
    """Every deployment; ``reconciliation`` is the config's reconciliation section (its
    schedules become one daily deployment per account group), ``backups`` its backup
    section (nightly incremental, weekly full, weekly restore drill)."""
    common: dict[str, Any] = {"tags": list(tags), "entrypoint_type": entrypoint_type}
    found = [
        payment_run.to_deployment(
            name="payment-run", description="Vouchers to receipts; waits for approvals in the "
                                            "UI when payments are pending", **common),
        status_sweep.to_deployment(
            name="status-sweep", interval=timedelta(minutes=sweep_minutes),
            description="Carry every open batch forward and collect receipts", **common),
        receipts_flow.to_deployment(name="collect-receipts", **common),
        rerun_batch.to_deployment(
            name="rerun-batch", description="Send again what the bank rejected in one batch "
                                            "(parameters: batch id or message ID; your user "
                                            "name and current one-time code: a treasurer's)",
            **common),
    ]
    for group in getattr(reconciliation, "schedules", ()):
        from prefect.client.schemas.schedules import CronSchedule

        from yinqi.recon.accounts import group_ref
        from yinqi.security.masking import mask_account

        # Prefect stores parameters and shows them in its UI: the group is named, and each
        # run resolves it to the account numbers of reconciliation.toml.
        found.append(daily_reconciliation.to_deployment(
            name=f"reconcile-{group.name}",
            schedules=[CronSchedule(cron=group.cron, timezone=group.timezone)],
            parameters={"accounts": [group_ref(group.name)], "timezone": group.timezone},
            description=f"Daily reconciliation of {len(group.accounts)} account(s): "
                        + ", ".join(mask_account(a) for a in group.accounts),
            tags=[*tags, "reconciliation"], entrypoint_type=entrypoint_type))
    found.append(daily_reconciliation.to_deployment(
        name="reconcile-range", description="Manual reconciliation of a day or a range "
                                            "(parameters day and last_day)", **common))
    found.extend(_backup_deployments(backups, tags, entrypoint_type))
    if intake_folder is not None:
        found.append(voucher_intake.to_deployment(
            name="voucher-intake", interval=timedelta(minutes=1),
            parameters={"folder": str(intake_folder)},
            description=f"Import voucher files dropped into {intake_folder}", **common))
    return found


def _backup_deployments(config: Any, tags: tuple[str, ...],
                        entrypoint_type: EntrypointType) -> list[Any]:
    from prefect.client.schemas.schedules import CronSchedule

    from config import BackupConfig

    config = config if config is not None else BackupConfig()
    every = [
        (backup, "backup-nightly", config.schedules.incremental, {"kind": "auto"},
         "Nightly incremental backup (a full one when no usable chain exists), then "
         "retention"),
        (backup, "backup-weekly-full", config.schedules.full, {"kind": "full"},
         "Weekly full backup: the start of a new chain"),
        (restore_drill, "restore-drill", config.schedules.drill, {},
         "Weekly restore of the newest backup chain into a scratch database, proven whole"),
    ]
    found = []
    for flow_, name, cron, parameters, description in every:
        schedules = [CronSchedule(cron=cron, timezone=config.timezone)] if cron else []
        found.append(flow_.to_deployment(name=name, schedules=schedules, parameters=parameters,
                                         description=description, tags=[*tags, "backup"],
                                         entrypoint_type=entrypoint_type))
    return found


def serve(*, intake_folder: Path | None = None, sweep_minutes: float = 5.0,
          reconciliation: Any = None, backups: Any = None) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(intake_folder=intake_folder, sweep_minutes=sweep_minutes,
                               reconciliation=reconciliation, backups=backups))


def deploy(pool: str, *, intake_folder: Path | None = None,
           sweep_minutes: float = 5.0, reconciliation: Any = None,
           backups: Any = None) -> dict[str, Any]:
    """Register every deployment with the process work pool ``pool`` (created when missing):
    the same names, schedules, parameters and tags as ``serve``. Each names its flow by module
    path, so a worker's flow run imports it from the Yinqi installed on the worker's host:
    nothing is built, pushed or downloaded. Run again, it updates them in place."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    from yinqi.errors import ConfigError

    with get_client(sync_client=True) as client:
        try:
            kind, created = client.read_work_pool(pool).type, False
        except ObjectNotFound:
            kind, created = "process", True
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template()))
            except ObjectAlreadyExists:  # another deploy created it meanwhile
                created = False
    if kind != "process":
        raise ConfigError(f"work pool {pool!r} is of type {kind!r}: the deployments need a "
                          "process pool (workers run the flows from their own installation)")
    applied = [(d.name, d.apply(work_pool_name=pool)) for d in deployments(
        intake_folder=intake_folder, sweep_minutes=sweep_minutes,
        reconciliation=reconciliation, backups=backups,
        entrypoint_type=EntrypointType.MODULE_PATH)]
    return {"pool": pool, "pool_created": created,
            "deployments": [{"name": name, "id": str(id_)} for name, id_ in applied]}
