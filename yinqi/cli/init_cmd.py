"""``yinqi init``: create or migrate the database, the keys and the demo company. Safe to rerun."""

from __future__ import annotations

import typer
from sqlalchemy import select

from yinqi.bootstrap import App
from yinqi.cli.output import console, print_json
from yinqi.i18n import _
from yinqi.security.keyring import current_signing_key, record_key
from yinqi.security.keystore import create_signing_key, next_key_id
from yinqi.security.master import ensure_master_secret
from yinqi.store import migrate
from yinqi.store.models import Key
from yinqi.store.setup import DEMO_USERS, SYSTEM, ensure_users, sync_company

SIGNING_KEY_ID = "signing-1"


def run_init(app: App) -> list[str]:
    """Everything ``yinqi init`` does; returns what changed (empty on a rerun)."""
    settings = app.settings
    config = app.config  # fail on a bad config before touching anything
    changes: list[str] = []
    for folder in (settings.home, settings.archive_dir, settings.receipts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if ensure_master_secret(settings):
        changes.append(f"master secret {settings.master_secret_file}")
    before = migrate.current_revision(app.engine)
    migrate.upgrade(app.engine)
    after = migrate.current_revision(app.engine)
    if before != after:
        changes.append(f"database schema {before or 'empty'} -> {after}")
    with app.sessions.begin() as session:
        changes += sync_company(session, config, app.audit)
        users = ensure_users(session, DEMO_USERS, app.field_cipher, app.audit)
        if users:
            changes.append(f"{len(users)} user(s): {', '.join(users)}")
        if current_signing_key(session) is None:
            # After rotations the next id follows the highest ever used: an id names one key.
            used = session.execute(select(Key.key_id)).scalars().all()
            key_id = next_key_id(used) if used else SIGNING_KEY_ID
            info = create_signing_key(settings.keys_dir, app.master_secret, key_id,
                                      config.company.name)
            record_key(session, app.audit, info, actor=SYSTEM)
            changes.append(f"signing key {info.key_id} ({info.algorithm})")
    return changes


def init(
    ctx: typer.Context,
    
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Create or migrate the database, create the keys and the demo company (safe to rerun)."""
    app: App = ctx.obj
    changes = run_init(app)
    url = app.engine.url.render_as_string(hide_password=True)
    if json_out:
        print_json({"home": str(app.settings.home), "database": url, "changes": changes})
        return
    console.print(_("Yinqi home: {home}").format(home=app.settings.home))
    console.print(_("Database:   {url}").format(url=url))
    if changes:
        # What changed is also the --json "changes": English, as run_init says it.
        for change in changes:
            console.print("  " + _("created {what}").format(what=change))
    else:
        console.print("  " + _("already initialised: nothing to do"))
