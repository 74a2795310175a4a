"""``yinqi flows serve``: the payment deployments, served to the Prefect server."""

from __future__ import annotations

from pathlib import Path

import typer

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
    from flows.deployments import serve as serve_all

    serve_all(intake_folder=intake_folder.resolve() if intake_folder else None,
              sweep_minutes=sweep_minutes, reconciliation=ctx.obj.config.reconciliation,
              backups=ctx.obj.config.backup)
