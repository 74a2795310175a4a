"""Who runs this ``yinqi`` command, and may they: the check in front of every command.

The identity, in this order:

1. ``YINQI_SESSION``: a session token (from ``yinqi login``);
2. ``YINQI_ACTOR=service``: the service identity (cron, Prefect workers, scripts);
3. the token file ``yinqi login`` wrote: ``$YINQI_HOME/sessions/<os-user>.token`` (0600);
4. nobody. While no user has a password yet (a new installation, where nobody *can* log in),
   nobody counts as the service identity; after that, nobody is refused.

The table of :mod:`yinqi.security.rbac` decides. A refusal is one line, exit 1, and an
``access.refused`` event in the audit log.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import inspect, make_url
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from yinqi.bootstrap import App
from yinqi.errors import InvalidValue, SecurityError, YinqiError
from yinqi.security.rbac import RULES, Actor, authorise

SESSION_ENV = "YINQI_SESSION"
ACTOR_ENV = "YINQI_ACTOR"
SERVICE = "service"
_ARGS = "yinqi.access.args"


class RootGroup(TyperGroup):
    """The ``yinqi`` group, keeping the arguments after it for the access check.

    Click runs the group's callback before it parses the subcommand's arguments; the check
    needs the full command path (``reconcile exceptions write-off``) at that moment.
    """

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        ctx.meta[_ARGS] = list(args)
        return super().resolve_command(ctx, args)


# --- the caller -----------------------------------------------------------------------------


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def origin() -> str:
    """The network place of this login: the SSH client's address, else this host."""
    ssh = os.environ.get("SSH_CLIENT", "").split()
    if ssh:
        return ssh[0]
    return f"local:{socket.gethostname()}"


def client() -> str:
    """The OS user and terminal running this command."""
    try:
        tty = os.ttyname(0)
    except OSError:
        tty = "no tty"
    return f"{os_user()} {tty}"


def token_file(app: App) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", os_user()) or "user"
    return app.settings.home / "sessions" / f"{safe}.token"


def write_token(app: App, token: str) -> Path:
    path = token_file(app)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    return path


def read_token_file(app: App) -> str | None:
    path = token_file(app)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise SecurityError(f"{path} may be read by others (it must be yours, mode 0600): "
                            "delete it and log in again")
    return path.read_text().strip() or None


def service_requested() -> bool:
    value = os.environ.get(ACTOR_ENV, "").strip()
    if not value:
        return False
    if value != SERVICE:
        raise InvalidValue(f"{ACTOR_ENV} must be {SERVICE!r} or unset (got {value!r})")
    if os.environ.get(SESSION_ENV, "").strip():
        raise InvalidValue(f"set {SESSION_ENV} or {ACTOR_ENV}={SERVICE}, not both")
    return True


def service_actor() -> Actor:
    return Actor.service(f"service:{os_user()}")


def session_token(app: App) -> str | None:
    """The session token this command runs with: the environment's, else the token file's."""
    token = os.environ.get(SESSION_ENV, "").strip()
    if token:
        return token
    if os.environ.get(ACTOR_ENV, "").strip():
        return None
    return read_token_file(app)


# --- the check ------------------------------------------------------------------------------


def command_path(ctx: typer.Context) -> str | None:
    """The leaf command this invocation will run ("payments fix"), or None when it runs none:
    a group's help, ``--help`` anywhere it is an option, or a usage error click will report."""
    if _ARGS not in ctx.meta:
        # Not started through RootGroup: the path cannot be told, so the first name stands
        # for it and matches no rule (refused), rather than nothing being checked.
        return ctx.invoked_subcommand
    tokens = list(ctx.meta[_ARGS])
    command: Any = ctx.command
    names: list[str] = []
    while hasattr(command, "commands"):
        if not tokens or tokens[0].startswith("-"):
            return None
        sub = command.get_command(ctx, tokens[0])
        if sub is None:
            return None
        names.append(tokens.pop(0))
        command = sub
    if _asks_for_help(ctx, command, names[-1] if names else "", tokens):
        return None
    return " ".join(names)


def _asks_for_help(ctx: typer.Context, command: Any, name: str, tokens: list[str]) -> bool:
    # Parsed the way click will parse it: `--reason --help` gives a reason, not help.
    if not any(t.startswith("-") for t in tokens):
        return False
    try:
        sub_ctx = command.context_class(command, info_name=name, parent=ctx,
                                        resilient_parsing=True)
        opts, _, _ = command.make_parser(sub_ctx).parse_args(args=list(tokens))
    except Exception:  # noqa: BLE001 - click will refuse these arguments itself
        return False
    return bool(opts.get("help"))


def check(ctx: typer.Context, app: App) -> None:
    """Identify the caller and apply the access table; sets ``app.actor``. Raises
    SecurityError (exit 1) for a refusal, after auditing it."""
    path = command_path(ctx)
    if path is None:
        return
    rule = RULES.get(path)
    if rule is not None and rule.anonymous:
        return
    now = datetime.now(UTC)
    actor: Actor | None
    if service_requested():
        actor = service_actor()
    else:
        token = session_token(app)
        actor = _resolve(app, token, path, now) if token else None
    is_armed = True
    if actor is None or (rule is not None and rule.bootstrap and not actor.is_person):
        is_armed = installation_armed(app)
        if actor is None and not is_armed:
            actor = service_actor()
    verdict = authorise(path, actor, armed=is_armed)
    if not verdict.allowed:
        _audit_refusal(app, actor.name if actor else f"anonymous:{os_user()}", path,
                       {"reason": verdict.message,
                        "identity": actor.kind.value if actor else "none",
                        "roles": sorted(actor.roles) if actor else [],
                        "needs": sorted(rule.roles) if rule else [],
                        "client": client()}, now)
        raise SecurityError(verdict.message)
    app.actor = actor


def installation_armed(app: App) -> bool:
    """Whether any user has a password. A database that cannot be opened, or has no users
    table yet, is not armed: it holds nothing to protect, and `yinqi doctor` must still run."""
    from yinqi.store.auth import armed

    if not database_exists(app):
        return False
    try:
        with app.engine.connect() as conn:
            if not inspect(conn).has_table("users"):
                return False
        with app.sessions() as session:
            return armed(session)
    except (SQLAlchemyError, YinqiError, OSError):
        return False


def database_exists(app: App) -> bool:
    """False for a SQLite file not created yet: looking must not create an empty database
    (in a folder a command like `sandbox-bank serve` merely uses as its home)."""
    url = make_url(app.settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return True
    return Path(url.database).exists()


def _resolve(app: App, token: str, path: str, now: datetime) -> Actor:
    from yinqi.store.auth import Denied, resolve
    from yinqi.store.migrate import ensure_current

    ensure_current(app.engine)
    with app.sessions.begin() as session:
        found = resolve(session, token, now)
        if isinstance(found, Denied):
            app.audit.append(session, actor=f"anonymous:{os_user()}", action="access.refused",
                             subject_type="command", subject_ids=[path],
                             details={"reason": found.code, "message": found.message,
                                      "client": client()}, at=now)
    if isinstance(found, Denied):
        raise SecurityError(f"{path}: {found.message}")
    return found


def _audit_refusal(app: App, actor: str, path: str, details: dict[str, Any],
                   now: datetime) -> None:
    from yinqi.store.migrate import ensure_current

    if not database_exists(app):
        return
    try:
        ensure_current(app.engine)
        with app.sessions.begin() as session:
            app.audit.append(session, actor=actor, action="access.refused",
                             subject_type="command", subject_ids=[path], details=details,
                             at=now)
    except (SQLAlchemyError, YinqiError, OSError):
        # No initialised database (or no master secret): nothing to record into, and nothing
        # there to protect. The refusal stands all the same.
        pass


# --- for the commands -----------------------------------------------------------------------


def acting_as(ctx: typer.Context, claimed: str | None = None, *, default: str = "cli") -> str:
    """The name a command records as the actor of what it does.

    A logged-in user is who they are: ``--as`` may repeat their name, never another. The
    service identity may name the person it acts for (``vouchers import --as wu.maker``).
    """
    actor: Actor | None = getattr(ctx.obj, "actor", None)
    claimed = claimed.strip() if claimed else None
    if actor is not None and actor.is_person:
        if claimed and claimed != actor.name:
            raise SecurityError(f"--as {claimed} is not you: you are logged in as {actor.name}")
        return actor.name
    if claimed:
        return claimed
    return actor.name if actor is not None else default
