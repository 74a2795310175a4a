"""``yinqi up``, ``yinqi down``, ``yinqi status``: Yinqi running on one machine, with the
Prefect UI as its console (yinqi.ops does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.cells import cell_len

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.i18n import _

if TYPE_CHECKING:
    from yinqi.ops.control import Status
    from yinqi.ops.plan import SandboxPlan
    from yinqi.ops.state import RunPaths

GRACE_SECONDS = 15.0


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


def _initialised(app: App) -> bool:
    from yinqi.cli.access import database_exists
    from yinqi.store import migrate

    return database_exists(app) and \
        migrate.current_revision(app.engine) == migrate.head_revision()


def _prepare(app: App, sandbox: bool) -> SandboxPlan | None:
    """``yinqi init`` where the database is not initialised, and the enrolment with the
    sandbox bank(s) (``yinqi sandbox-bank connect``) where banks.toml names them. Returns
    the sandbox plan, None when no sandbox bank is to run."""
    from connectors.sandbox.settings import load_sandbox_config
    from yinqi.cli.init_cmd import run_init
    from yinqi.cli.sandbox_cmd import enrol
    from yinqi.ops.plan import sandbox_plan

    if not _initialised(app):
        _say(_("initialising {home} (yinqi init)").format(home=app.settings.home))
        for change in run_init(app):
            _say("  " + _("created {what}").format(what=change))
    if not sandbox:
        _say(_("sandbox bank: not started (--no-sandbox)"))
        return None
    banks = app.config.banks
    sandbox_config = load_sandbox_config(None)[0]
    plan = sandbox_plan({code: str(bank.endpoint) for code, bank in banks.items()},
                        set(sandbox_config.banks))
    for code in plan.elsewhere:
        _say(_("bank {bank}: {endpoint} is not the sandbox's; nothing started for it").format(
            bank=code, endpoint=banks[code].endpoint))
    if not plan.ports:
        return None
    for line in enrol(app, None, app.settings.home / "sandbox"):
        _say(_("sandbox bank: {line}").format(line=line))
    return plan


def _deployment_names(app: App, intake_folder: Path, sweep_minutes: float) -> list[str]:
    from flows.deployments import deployments

    return [d.name for d in deployments(intake_folder=intake_folder, sweep_minutes=sweep_minutes,
                                        reconciliation=app.config.reconciliation,
                                        backups=app.config.backup)]


def up(
    ctx: typer.Context,
    port: int = typer.Option(4200, "--port", help="Port of the Prefect server and its UI "
                                                  "(on 127.0.0.1)."),
    intake_folder: Path | None = typer.Option(
        None, "--intake-folder", help="Voucher files dropped here are imported every minute; "
                                      "default: $YINQI_HOME/inbox."),
    sweep_minutes: float = typer.Option(5.0, "--sweep-minutes",
                                        help="Minutes between status sweeps."),
    sandbox: bool = typer.Option(True, "--sandbox/--no-sandbox",
                                 help="Run the sandbox bank(s) banks.toml points at."),
    start_timeout: float = typer.Option(180.0, "--start-timeout",
                                        help="Seconds each process may take to get ready."),
) -> None:
    """Run Yinqi: the Prefect server and UI, the sandbox bank(s) and every deployment
    (payment run, status sweep, reconciliation, backups, voucher intake); Ctrl-C stops all."""
    from yinqi.ops.up import Stopper, UpPlan, clear_leftovers, hold_lock, run

    app: App = ctx.obj
    home = app.settings.home
    lock = hold_lock(_paths(home))
    try:
        clear_leftovers(_paths(home), GRACE_SECONDS, _say)
        folder = (intake_folder or home / "inbox").expanduser().resolve()
        plan = UpPlan(home=home, intake_folder=folder, port=port, sweep_minutes=sweep_minutes,
                      sandbox_state=home / "sandbox", start_timeout=start_timeout,
                      grace=GRACE_SECONDS)
        stopper = Stopper()
        stopper.install()
        try:
            run(plan, say=_say, stopper=stopper, prepare=lambda: _prepare(app, sandbox),
                deployment_names=lambda: _deployment_names(app, folder, sweep_minutes))
        finally:
            stopper.restore()
    finally:
        lock.release()
    _say(_("everything stopped"))


def _paths(home: Path) -> RunPaths:
    from yinqi.ops.state import RunPaths

    return RunPaths(home)


def down(
    ctx: typer.Context,
    timeout: float = typer.Option(60.0, "--timeout",
                                  help="Seconds to wait for a clean stop before killing."),
) -> None:
    """Stop the `yinqi up` of this Yinqi home (from any shell)."""
    from yinqi.ops.control import down as stop

    app: App = ctx.obj
    stop(app.settings.home, timeout=timeout, grace=GRACE_SECONDS, say=_say)


def status(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """What `yinqi up` runs: each process alive or not, the Prefect UI and health, the
    deployments with their next and latest runs (exit 1 when something is down)."""
    from yinqi.ops.control import status as look

    app: App = ctx.obj
    report = look(app.settings.home)
    if json_out:
        print_json(report.to_json())
    else:
        _print_status(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_status(report: Status) -> None:
    if report.pid is None:
        for problem in report.problems:
            _say(problem)
        return
    state = _("running") if report.running else _("NOT running")
    _say(_("yinqi up: {state} (pid {pid}, since {since})").format(
        state=state, pid=report.pid, since=report.started_at))
    health = _("healthy") if report.healthy else _("NOT answering")
    _say("  " + _("Prefect UI:  {url} (API {health}; {database})").format(
        url=report.ui_url, health=health, database=report.prefect_database))
    for proc in report.processes:
        alive = _("alive") if proc["alive"] else _("DEAD")
        _say(f"  {proc['name']:<16} pid {proc['pid']:<8} {_pad(alive, 6)} "
             f"{proc['url'] or ''}".rstrip())
    if report.intake_folder:
        _say("  " + _("intake folder: {folder}").format(folder=report.intake_folder))
    if report.deployments:
        _say(_("deployments ({count}):").format(count=len(report.deployments)))
        for d in report.deployments:
            _say(f"  {d['name']}: {', '.join(d['schedules']) or _('run from the UI')}"
                 + ("" if d["served"] else _(" (not served by this yinqi up)"))
                 + (_(" (paused)") if d["paused"] else ""))
            if d["next_run"]:
                _say("    " + _("next  {start}  {url}").format(
                    start=d["next_run"]["expected_start"], url=d["next_run"]["url"]))
            if d["last_run"]:
                last = d["last_run"]
                # The run's state is Prefect's name for it (Completed, Failed): not translated.
                _say("    " + _("last  {state} {start}  {url}").format(
                    state=last["state"], start=last["expected_start"], url=last["url"]))
    for problem in report.problems:
        _say(_("problem: {problem}").format(problem=problem))


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a Chinese character takes two)."""
    return text + " " * max(0, width - cell_len(text))
