"""``yinqi backup create|list|verify|restore|drill|prune``: encrypted backups and their proof."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue

app = typer.Typer(help="Backups: create (full or incremental), list, verify, restore into an "
                       "empty database, the restore drill, retention.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object.")
_TARGET = typer.Option(None, "--target", help="Another backup target (a folder or an fsspec "
                                              "URL) instead of backup.toml's, e.g. an "
                                              "off-site copy.")
_NAME = typer.Argument(None, help="The backup's name (see `yinqi backup list`); default: the "
                                  "newest.")


def _target(yinqi: App, spec: str | None) -> Any:
    from yinqi.backup.service import backup_target
    from yinqi.backup.targets import open_target

    return open_target(spec) if spec else backup_target(yinqi)


def _live(ctx: typer.Context) -> App:
    from yinqi.store.migrate import ensure_current

    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


@app.command("create")
def create(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="A full backup (default: incremental when "
                                                    "a usable chain exists, else full)."),
    incremental: bool = typer.Option(False, "--incremental",
                                     help="Only an incremental: fail if there is no usable "
                                          "chain to build on."),
    prune: bool = typer.Option(True, "--prune/--no-prune",
                               help="Apply the retention rules afterwards (the default)."),
    json_out: bool = _JSON,
) -> None:
    """Back up the database, receipts, archived bank files, key files and configuration into
    the configured target, encrypted; then delete what the retention rules no longer keep."""
    from yinqi.backup.service import take_backup

    if full and incremental:
        raise InvalidValue("--full and --incremental exclude each other")
    yinqi = _live(ctx)
    kind = "full" if full else "incremental" if incremental else "auto"
    result, pruned = take_backup(yinqi, kind, actor=acting_as(ctx), prune=prune)
    out = {"name": result.name, "kind": result.kind, "location": result.location,
           "previous": result.previous, "parts": result.parts,
           "stored_bytes": result.stored_bytes, "rows": sum(result.rows.values()),
           "rows_written": sum(result.written.values()),
           "rows_deleted": sum(result.deleted.values()),
           "files_written": result.files_written, "full_because": result.full_because,
           "pruned": pruned.deleted if pruned else [],
           "broken": pruned.broken if pruned else {}}
    if json_out:
        print_json(out)
        return
    console.print(f"{result.kind} backup {result.name}: {out['rows_written']} of "
                  f"{out['rows']} rows, {result.files_written} files, {result.parts} parts, "
                  f"{_mb(result.stored_bytes)} in {result.location}", markup=False)
    if result.full_because:
        console.print(f"full because {result.full_because}", markup=False)
    for name in out["pruned"]:
        console.print(f"deleted {name} (retention)", markup=False)
    for name, why in out["broken"].items():
        console.print(f"BROKEN {name}: {why}", markup=False)


@app.command("list")
def list_(ctx: typer.Context, target: str | None = _TARGET, json_out: bool = _JSON) -> None:
    """Every backup in the target, oldest first: kind, chain, size, rows written."""
    from yinqi.backup.chain import catalog

    yinqi: App = ctx.obj
    where = _target(yinqi, target)
    entries = catalog(where, yinqi.master_secret)
    if json_out:
        print_json({"target": where.location, "count": len(entries), "backups": [
            {"name": e.name, "kind": e.kind,
             "created_at": e.created_at.isoformat() if e.created_at else None,
             "previous": e.previous, "base": e.base, "sequence": e.sequence,
             "parts": e.parts, "stored_bytes": e.stored_bytes, "rows_written": e.rows_written,
             "problem": e.problem} for e in entries]})
        return
    zone = ZoneInfo(yinqi.settings.timezone)
    table = Table("name", "kind", "created", "builds on", "rows written", "size", "problem",
                  title=f"{len(entries)} backup(s) in {where.location}")
    for e in entries:
        table.add_row(e.name, e.kind if e.kind != "incremental" else f"incremental #{e.sequence}",
                      f"{e.created_at.astimezone(zone):%Y-%m-%d %H:%M}" if e.created_at else "",
                      e.previous or "", str(e.rows_written), _mb(e.stored_bytes),
                      e.problem or "")
    console.print(table)


@app.command("verify")
def verify(ctx: typer.Context, name: str | None = _NAME, target: str | None = _TARGET,
           json_out: bool = _JSON) -> None:
    """Read, check and decrypt every part of a backup and of every backup it builds on; exit
    1 with the damaged or missing part named."""
    from yinqi.backup.chain import resolve
    from yinqi.backup.verify import verify_backup

    yinqi: App = ctx.obj
    where = _target(yinqi, target)
    verified = verify_backup(resolve(where, name, yinqi.master_secret), yinqi.master_secret)
    manifest = verified.manifest
    out = {"name": verified.chain.head.source.name, "ok": True, "chain": verified.chain.names,
           "parts": verified.parts, "stored_bytes": verified.stored_bytes,
           "rows": sum(manifest.row_counts.values()),
           "files": sum(len(f) for f in verified.files.values()),
           "audit_head": manifest.audit_head, "payment_totals": manifest.payment_totals}
    if json_out:
        print_json(out)
        return
    console.print(f"OK {out['name']}: chain of {len(out['chain'])} backup(s), "
                  f"{verified.parts} parts, {out['rows']} rows, {out['files']} files; audit "
                  f"head #{manifest.audit_head['seq']} {manifest.audit_head['hash'][:16]}",
                  markup=False)


@app.command("restore")
def restore(
    ctx: typer.Context,
    name: str | None = _NAME,
    target: str | None = _TARGET,
    database: str | None = typer.Option(
        None, "--database", help="URL of the EMPTY database to restore into (default: this "
                                 "installation's, which must then be empty or absent)."),
    home: Path | None = typer.Option(None, "--home", help="Where receipts, archived files and "
                                                          "key files go (default: YINQI_HOME)."),
    config_dir: Path | None = typer.Option(None, "--config-dir",
                                           help="Where the configuration goes (default: "
                                                "YINQI_CONFIG_DIR, else <home>/config)."),
    json_out: bool = _JSON,
) -> None:
    """Restore a backup (with every backup it builds on) into an empty database, then prove
    it: row counts, money per payment state, and the audit chain ending at the backup's
    head hash. A damaged or incomplete backup restores nothing."""
    from yinqi.backup.chain import resolve
    from yinqi.backup.restore import restore_backup

    yinqi: App = ctx.obj
    where = _target(yinqi, target)
    destination = home or yinqi.settings.home
    report = restore_backup(resolve(where, name, yinqi.master_secret),
                            database or yinqi.settings.resolved_database_url,
                            yinqi.master_secret, destination,
                            config_dir=config_dir or yinqi.settings.config_dir)
    out = {"backup": report.backup, "chain": report.chain, "database": report.database,
           "home": str(destination), "rows": report.rows, "files": report.files,
           "payment_totals": report.payment_totals, "audit_head": report.audit_head,
           "audit_events_verified": report.audit_events_verified}
    if json_out:
        print_json(out)
        return
    console.print(f"restored {report.backup} (chain of {len(report.chain)}) into "
                  f"{report.database}: {sum(report.rows.values())} rows, {report.files} files; "
                  f"{report.audit_events_verified} audit events verified, head "
                  f"#{report.audit_head['seq']} {report.audit_head['hash'][:16]} as backed up",
                  markup=False)


@app.command("drill")
def drill(ctx: typer.Context, json_out: bool = _JSON) -> None:
    """Restore the newest backup chain into a scratch database and prove it whole; exit 1
    (and a critical alert) when it does not restore."""
    from yinqi.backup.service import drill as run_drill
    from yinqi.errors import YinqiError

    yinqi = _live(ctx)
    report = run_drill(yinqi, actor=acting_as(ctx))
    if json_out:
        print_json(report.as_json())
    else:
        state = "OK" if report.ok else "FAILED"
        console.print(f"restore drill {state}: {report.backup or '-'} (chain of "
                      f"{len(report.chain)}), {report.rows} rows, {report.files} files in "
                      f"{report.seconds:.1f} s", markup=False)
        for line in [*report.problems, *report.warnings]:
            console.print(f"  {line}", markup=False)
    if not report.ok:
        raise YinqiError(f"the restore drill failed: {report.problems[0]}")


@app.command("prune")
def prune(ctx: typer.Context,
          dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would go."),
          json_out: bool = _JSON) -> None:
    """Delete the backups the retention rules (backup.toml) no longer keep."""
    from yinqi.backup.service import prune_backups

    yinqi = _live(ctx)
    pruned = prune_backups(yinqi, actor=acting_as(ctx), dry_run=dry_run)
    if json_out:
        print_json({"dry_run": dry_run, "kept": pruned.kept, "deleted": pruned.deleted,
                    "reasons": pruned.reasons, "broken": pruned.broken,
                    "unreadable": pruned.unreadable})
        return
    verb = "would delete" if dry_run else "deleted"
    for name in pruned.kept:
        console.print(f"keep {name}: {pruned.reasons.get(name, '')}", markup=False)
    for name in pruned.deleted:
        console.print(f"{verb} {name}", markup=False)
    for name in pruned.unreadable:
        console.print(f"UNREADABLE {name}: left for a person to look at", markup=False)
