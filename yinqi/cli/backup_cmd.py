"""``yinqi backup create|list|verify|restore|release|drill|prune``: encrypted backups and their
proof, and letting a restored installation send again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json, report_decision
from yinqi.errors import InvalidValue
from yinqi.i18n import _

if TYPE_CHECKING:
    from yinqi.backup.guard import SendingFrozen

app = typer.Typer(help="Backups: create (full or incremental), list, verify, restore into an "
                       "empty database, release sending after a restore, the restore drill, "
                       "retention.", no_args_is_help=True)

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
    console.print(_("{kind} backup {name}: {written} of {rows} rows, {files} files, {parts} "
                    "parts, {size} in {location}").format(
        kind=result.kind, name=result.name, written=out["rows_written"], rows=out["rows"],
        files=result.files_written, parts=result.parts, size=_mb(result.stored_bytes),
        location=result.location), markup=False)
    if result.full_because:
        console.print(_("full because {reason}").format(reason=result.full_because),
                      markup=False)
    for name in out["pruned"]:
        console.print(_("deleted {name} (retention)").format(name=name), markup=False)
    for name, why in out["broken"].items():
        console.print(_("BROKEN {name}: {reason}").format(name=name, reason=why), markup=False)


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
    table = Table(_("name"), _("kind"), _("created"), _("builds on"), _("rows written"),
                  _("size"), _("problem"), title=_("{count} backup(s) in {location}").format(
                      count=len(entries), location=where.location))
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
    console.print(_("OK {name}: chain of {chain} backup(s), {parts} parts, {rows} rows, {files} "
                    "files; audit head #{seq} {hash}").format(
        name=out["name"], chain=len(out["chain"]), parts=verified.parts, rows=out["rows"],
        files=out["files"], seq=manifest.audit_head["seq"],
        hash=manifest.audit_head["hash"][:16]), markup=False)


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
    head hash. A damaged or incomplete backup restores nothing. The restored installation
    sends nothing until an administrator has checked the bank and runs `yinqi backup
    release`."""
    from yinqi.backup.chain import resolve
    from yinqi.backup.restore import restore_backup

    yinqi: App = ctx.obj
    where = _target(yinqi, target)
    destination = home or yinqi.settings.home
    report = restore_backup(resolve(where, name, yinqi.master_secret),
                            database or yinqi.settings.resolved_database_url,
                            yinqi.master_secret, destination,
                            config_dir=config_dir or yinqi.settings.config_dir,
                            frozen_by=acting_as(ctx))
    frozen = report.sending_frozen
    assert frozen is not None  # frozen_by was given
    out = {"backup": report.backup, "chain": report.chain, "database": report.database,
           "home": str(destination), "rows": report.rows, "files": report.files,
           "payment_totals": report.payment_totals, "audit_head": report.audit_head,
           "audit_events_verified": report.audit_events_verified,
           "sending_frozen": frozen.as_json()}
    if json_out:
        print_json(out)
        return
    console.print(_("restored {name} (chain of {chain}) into {database}: {rows} rows, {files} "
                    "files; {events} audit events verified, head #{seq} {hash} as backed "
                    "up").format(
        name=report.backup, chain=len(report.chain), database=report.database,
        rows=sum(report.rows.values()), files=report.files,
        events=report.audit_events_verified, seq=report.audit_head["seq"],
        hash=report.audit_head["hash"][:16]), markup=False)
    _print_frozen(frozen)


def _print_frozen(frozen: SendingFrozen) -> None:
    from yinqi.backup.guard import RELEASE

    day = f"{frozen.taken_at:%Y-%m-%d}"
    console.print(_("SENDING FROZEN: {count} company account(s) frozen ({freezes}) because "
                    "payments made after backup {name} was taken ({since}) may already be at "
                    "the bank").format(
        count=len(frozen.accounts), freezes=", ".join(
            f"{a.account} #{a.freeze_id}" for a in frozen.accounts) or "-",
        name=frozen.backup, since=frozen.since), markup=False, soft_wrap=True)
    if frozen.payments:
        console.print("  " + _("payments the restored database shows before the bank's last "
                               "word: {states}").format(states=", ".join(
            f"{state} {n}" for state, n in frozen.payments.items())), markup=False,
            soft_wrap=True)
    console.print("  " + _("check each account's transactions since {day} (yinqi transactions "
                           "--account ACCOUNT --from {day} --to TODAY), stop every payment "
                           "already paid (yinqi risk freeze payment ID, then yinqi risk reject "
                           "ID), then release: {release}").format(day=day, release=RELEASE),
                  markup=False, soft_wrap=True)


@app.command("release")
def release(
    ctx: typer.Context,
    account: str | None = typer.Argument(None, metavar="ACCOUNT",
                                         help="One company account: its number or id (see "
                                              "`yinqi risk freezes`)."),
    all_accounts: bool = typer.Option(False, "--all", help="Every account the restore froze."),
    username: str = typer.Option(..., "--as", help="Your user name."),
    code: str = typer.Option(..., "--code", help="Your current one-time code (6 digits)."),
    reason: str = typer.Option(..., "--reason", help="What you checked: which statements, up "
                                                     "to when."),
    json_out: bool = _JSON,
) -> None:
    """After a restore: let a company account (or --all) send again, once you have checked
    its transactions at the bank since the backup was taken. Administrator, with a one-time
    code; audited."""
    from datetime import UTC, datetime

    from yinqi.store import risk_decisions

    if (account is None) == (not all_accounts):
        raise InvalidValue("give one ACCOUNT or --all")
    yinqi = _live(ctx)
    username = acting_as(ctx, username)
    with yinqi.sessions.begin() as session:
        outcome = risk_decisions.release_restore(session, yinqi.audit, yinqi.field_cipher,
                                                 account=account, username=username,
                                                 code=code, reason=reason,
                                                 now=datetime.now(UTC))
    report_decision(outcome, json_out)


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
        state = "OK" if report.ok else _("FAILED")
        console.print(_("restore drill {state}: {name} (chain of {chain}), {rows} rows, {files} "
                        "files in {seconds:.1f} s").format(
            state=state, name=report.backup or "-", chain=len(report.chain), rows=report.rows,
            files=report.files, seconds=report.seconds), markup=False)
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
    gone = _("would delete {name}") if dry_run else _("deleted {name}")
    for name in pruned.kept:
        console.print(_("keep {name}: {reason}").format(name=name,
                                                        reason=pruned.reasons.get(name, "")),
                      markup=False)
    for name in pruned.deleted:
        console.print(gone.format(name=name), markup=False)
    for name in pruned.unreadable:
        console.print(_("UNREADABLE {name}: left for a person to look at").format(name=name),
                      markup=False)
