"""``yinqi flows serve``: the payment deployments, served to the Prefect server;
``yinqi flows deploy``: the same deployments, registered with a work pool for its workers;
``yinqi flows automations install``: the server's automation for runs whose process died."""

from __future__ import annotations

from pathlib import Path

import typer

from yinqi.i18n import _, pgettext

app = typer.Typer(help="Prefect deployments of the payment flows.", no_args_is_help=True)


@app.command("serve")
def serve(
    ctx: typer.Context,
    intake_folder: Path | None = typer.Option(None, "--intake-folder",
                                              help="Import voucher files dropped here."),
    sweep_minutes: float = typer.Option(5.0, "--sweep-minutes",
                                        help="Minutes between status sweeps."),
) -> None:
    """Serve the payment run, status sweep, receipts, rerun, reconciliation and backup
    deployments (Ctrl-C stops).
    Point PREFECT_API_URL at your Prefect server first."""
    import os

    from flows.deployments import serve as serve_all
    from yinqi.ops.automations import heartbeat_env

    # The runs this process starts inherit its environment: they heartbeat at the pace the
    # zombie-run automation expects, unless the operator set another.
    for name, value in heartbeat_env().items():
        os.environ.setdefault(name, value)
    serve_all(intake_folder=intake_folder.resolve() if intake_folder else None,
              sweep_minutes=sweep_minutes, reconciliation=ctx.obj.config.reconciliation,
              backups=ctx.obj.config.backup)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    pool: str = typer.Option("yinqi", "--pool", help="The process work pool (created when "
                                                     "missing) whose workers run the flows."),
    intake_folder: Path | None = typer.Option(None, "--intake-folder",
                                              help="Import voucher files dropped here (a "
                                                   "folder every worker host sees)."),
    sweep_minutes: float = typer.Option(5.0, "--sweep-minutes",
                                        help="Minutes between status sweeps."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Register the deployments `yinqi flows serve` serves (same names, schedules and
    parameters) with a process work pool of the Prefect server at PREFECT_API_URL; workers
    (`prefect worker start --pool NAME`) run them from the Yinqi installed on their host.
    Run it again after each upgrade: it updates the deployments in place."""
    import os

    from flows.deployments import deploy as deploy_all
    from yinqi.cli.output import console, print_json
    from yinqi.errors import ConfigError

    if not os.environ.get("PREFECT_API_URL", "").strip():
        raise ConfigError("PREFECT_API_URL is not set: point it at the Prefect server the "
                          "workers poll (e.g. http://127.0.0.1:4200/api)")
    done = deploy_all(pool, intake_folder=intake_folder.resolve() if intake_folder else None,
                      sweep_minutes=sweep_minutes, reconciliation=ctx.obj.config.reconciliation,
                      backups=ctx.obj.config.backup)
    if json_out:
        print_json(done)
        return
    heading = (_("{count} deployment(s) on work pool '{pool}' (created): ")
               if done["pool_created"] else
               _("{count} deployment(s) on work pool '{pool}' (existing): "))
    console.print(heading.format(count=len(done["deployments"]), pool=pool)
                  + ", ".join(d["name"] for d in done["deployments"]), markup=False)
    console.print(_("Start workers with: prefect worker start --pool {pool}").format(pool=pool),
                  markup=False)


automations_app = typer.Typer(help="Prefect automations that keep the UI truthful.",
                              no_args_is_help=True)
app.add_typer(automations_app, name="automations")


@automations_app.command("install")
def install_automations(
    expect_seconds: int | None = typer.Option(
        None, "--expect-seconds", show_default=False,
        help="Mark a run Crashed after this many seconds without a heartbeat (default 540: "
             "safe with Prefect's default 180 s heartbeat; 90 when every process runs with "
             "--heartbeat-seconds 30, as `yinqi flows serve` does)."),
    heartbeat_seconds: int = typer.Option(
        30, "--heartbeat-seconds",
        help="The heartbeat your flow processes run with: the window is checked against it, "
             "and the environment they need is printed."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Install (or bring up to date) the automation of the Prefect server at PREFECT_API_URL
    that marks a run Crashed when its process stops heartbeating. Running it again changes
    nothing."""
    import os

    from prefect.client.orchestration import get_client

    from yinqi.cli.output import console, print_json
    from yinqi.errors import ConfigError
    from yinqi.ops.automations import EXPECT_SECONDS, NAME, Window, heartbeat_env, install

    if not os.environ.get("PREFECT_API_URL", "").strip():
        raise ConfigError("PREFECT_API_URL is not set: point it at the Prefect server to "
                          "install the automation on (e.g. http://127.0.0.1:4200/api)")
    window = Window(heartbeat_seconds, expect_seconds or EXPECT_SECONDS)
    with get_client(sync_client=True) as client:
        done = install(client, window)
        where = client.api_url
    env = heartbeat_env(window)
    if json_out:
        print_json({"name": NAME, "automation_id": str(done.automation_id),
                    "action": done.action, "removed": [str(i) for i in done.removed],
                    "expect_seconds": window.expect_seconds,
                    "heartbeat_seconds": window.heartbeat_seconds, "worker_env": env,
                    "api_url": str(where)})
        return
    console.print(_("Automation '{name}' {action} on {api} ({id}): a run silent for {seconds} s "
                    "is marked Crashed.").format(name=NAME, action=_action(done.action),
                                                 api=where, id=done.automation_id,
                                                 seconds=window.expect_seconds), markup=False)
    console.print(_("Workers and serve processes need: ")
                  + " ".join(f"{k}={v}" for k, v in env.items()), markup=False)


def _action(action: str) -> str:
    """What ``install`` did to the automation, in words (``--json`` keeps the value)."""
    return {"created": pgettext("automation", "created"),
            "updated": pgettext("automation", "updated"),
            "unchanged": pgettext("automation", "unchanged")}.get(action, action)
