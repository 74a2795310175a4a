"""``yinqi login|logout|whoami`` and ``yinqi users ...``: people, roles and sessions.

A login takes a password and a one-time code and opens an 8-hour session; its token goes to
``$YINQI_HOME/sessions/<os-user>.token`` (mode 0600), which later commands read (or export
it as ``YINQI_SESSION``). Passwords are read from a hidden prompt or ``--password-stdin``,
never from the command line, where ``ps`` and the shell history would keep them.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.table import Table

from yinqi.bootstrap import App
from yinqi.cli import access
from yinqi.cli.output import console, err_console, print_json
from yinqi.errors import InvalidValue, SecurityError
from yinqi.i18n import _, pgettext
from yinqi.security.rbac import Actor
from yinqi.store import auth
from yinqi.store.migrate import ensure_current

app = typer.Typer(help="Users, roles and sessions (administrators).", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object.")
_STDIN = typer.Option(False, "--password-stdin",
                      help="Read the password from the first line of standard input.")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


def _now() -> datetime:
    return datetime.now(UTC)


def _password(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidValue("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    return str(typer.prompt(_("password"), hide_input=True, confirmation_prompt=confirm))


def _session_lifetime(yinqi: App) -> timedelta:
    return timedelta(hours=yinqi.settings.session_hours)


def _show_uri(username: str, uri: str | None) -> None:
    if uri is None:
        return
    # The URI holds the authenticator secret: shown here once, stored only encrypted.
    console.print(_("authenticator for {user} (shown once: add it to the authenticator app "
                    "now, e.g. as a QR code):").format(user=username), markup=False)
    console.print(uri, markup=False, soft_wrap=True)


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {"user": actor.name, "kind": actor.kind.value, "roles": sorted(actor.roles),
            "origin": actor.origin, "expires_at": actor.expires_at,
            "session_id": actor.session_id}


# --- login, logout, whoami ----------------------------------------------------------------


def login(
    ctx: typer.Context,
    username: str | None = typer.Option(None, "--as", help="Your user name (default: asked)."),
    password_stdin: bool = _STDIN,
    code: str | None = typer.Option(None, "--code", help="Your current one-time code "
                                                         "(default: asked)."),
    json_out: bool = _JSON,
) -> None:
    """Log in with your password and one-time code; the session lasts 8 hours."""
    yinqi = _app(ctx)
    name = (username or str(typer.prompt(_("user name"), default=access.os_user()))).strip()
    password = _password(password_stdin, confirm=False)
    code = code if code is not None else str(typer.prompt(_("one-time code")))
    with yinqi.sessions.begin() as session:
        outcome = auth.login(session, yinqi.audit, yinqi.field_cipher, yinqi.config.risk_rules,
                             username=name, password=password, code=code,
                             origin=access.origin(), client=access.client(), now=_now(),
                             lifetime=_session_lifetime(yinqi))
    # Committed before exiting: the failure count, a lock and their audit events stay.
    if isinstance(outcome, auth.Denied):
        raise SecurityError(outcome.message)
    path = access.write_token(yinqi, outcome.token)
    actor = outcome.actor
    if json_out:
        print_json({**_actor_json(actor), "token_file": str(path),
                    "risk": [{"rule": r.rule, "action": r.action, "message": r.message}
                             for r in outcome.risk]})
        return
    console.print(_("logged in as {user} from {origin} until {until:%Y-%m-%d %H:%M} UTC; "
                    "session in {path}").format(user=actor.describe(), origin=actor.origin,
                                                until=actor.expires_at, path=path),
                  markup=False)
    for r in outcome.risk:
        err_console.print(_("risk: {rule} ({action}): {message}").format(
            rule=r.rule, action=r.action, message=r.message), markup=False, soft_wrap=True)


def logout(ctx: typer.Context) -> None:
    """End your session (YINQI_SESSION or the saved one) and delete the saved token."""
    yinqi: App = ctx.obj
    from_env = bool(os.environ.get(access.SESSION_ENV, "").strip())
    token = access.session_token(yinqi)
    if token is None:
        console.print(_("nobody is logged in here"))
        return
    ensure_current(yinqi.engine)
    with yinqi.sessions.begin() as session:
        ended = auth.logout(session, yinqi.audit, token, _now())
    if not from_env:
        access.token_file(yinqi).unlink(missing_ok=True)
    console.print(_("logged out") if ended else _("the session was already over; token removed"))


def whoami(ctx: typer.Context, json_out: bool = _JSON) -> None:
    """Who the next command runs as: user, roles, where from, until when."""
    yinqi: App = ctx.obj
    actor: Actor | None
    if access.service_requested():
        actor = access.service_actor()
    else:
        token = access.session_token(yinqi)
        actor = None
        if token is not None:
            ensure_current(yinqi.engine)
            with yinqi.sessions.begin() as session:
                found = auth.resolve(session, token, _now())
            if isinstance(found, auth.Denied):
                raise SecurityError(found.message)
            actor = found
    if actor is None and not access.installation_armed(yinqi):
        actor = access.service_actor()
        note = _("no user has a password yet: commands run as the service identity")
    else:
        note = ""
    if actor is None:
        if json_out:
            print_json({"user": None})
        else:
            console.print(_("nobody is logged in (yinqi login)"))
        raise typer.Exit(1)
    if json_out:
        print_json({**_actor_json(actor), **({"note": note} if note else {})})
        return
    line = actor.describe()
    if actor.origin:
        line += _(", from {origin}").format(origin=actor.origin)
    if actor.expires_at:
        line += _(", until {until:%Y-%m-%d %H:%M} UTC").format(until=actor.expires_at)
    console.print(line + (f" ({note})" if note else ""), markup=False)


# --- users ----------------------------------------------------------------------------------


def _who(ctx: typer.Context) -> str:
    return access.acting_as(ctx, None)


@app.command("list")
def list_users(ctx: typer.Context, json_out: bool = _JSON) -> None:
    """Users with their roles, password and authenticator state, locks and freezes."""
    yinqi = _app(ctx)
    with yinqi.sessions() as session:
        rows = auth.users_overview(session, _now())
    if json_out:
        print_json(rows)
        return
    table = Table(_("user"), pgettext("person", "name"), _("roles"), _("password"),
                  _("authenticator"), _("locked until"), _("frozen"), _("last login"),
                  title=_("{count} user(s)").format(count=len(rows)))
    for r in rows:
        table.add_row(r["username"] + ("" if r["active"] else " " + _("(inactive)")),
                      r["display_name"], ", ".join(r["roles"]),
                      _("set") if r["password"] else "—",
                      _("confirmed") if r["totp_enrolled"] else _("not confirmed"),
                      f"{r['locked_until']:%Y-%m-%d %H:%M}" if r["locked_until"] else "",
                      r["frozen"] or "",
                      f"{r['last_login_at']:%Y-%m-%d %H:%M}" if r["last_login_at"]
                      else _("never"))
    console.print(table, markup=False)


@app.command("add")
def add(
    ctx: typer.Context,
    username: str = typer.Argument(..., help="The new user's name, e.g. qian.approver."),
    role: list[str] = typer.Option(..., "--role", help="A role (repeatable): maker, approver, "
                                                       "finance_manager, cfo, treasurer, "
                                                       "auditor, admin."),
    name: str = typer.Option("", "--name", help="The person's name as shown."),
    json_out: bool = _JSON,
) -> None:
    """Create a user with roles and an authenticator secret (its URI is shown once); set a
    password with `yinqi users set-password`."""
    yinqi = _app(ctx)
    with yinqi.sessions.begin() as session:
        row, uri = auth.create_user(session, yinqi.audit, yinqi.field_cipher, username=username,
                                    roles=role, display_name=name, actor=_who(ctx), now=_now())
        created = {"username": row.username, "roles": sorted(role)}
    if json_out:
        print_json({**created, "otpauth_uri": uri})
        return
    console.print(_("user {user} created ({roles})").format(
        user=created["username"], roles=", ".join(created["roles"])), markup=False)
    _show_uri(created["username"], uri)


@app.command("set-password")
def set_password(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    password_stdin: bool = _STDIN,
    json_out: bool = _JSON,
) -> None:
    """Set a user's password (at least 12 characters). A first password also issues the
    authenticator (URI shown once) unless it was confirmed already; a new one ends the
    user's sessions. Run as the service identity, it sets the first administrator's first
    password on a new installation, and nothing else."""
    yinqi = _app(ctx)
    actor: Actor | None = yinqi.actor
    bootstrap = actor is None or not actor.is_person
    password = _password(password_stdin, confirm=True)
    with yinqi.sessions.begin() as session:
        done = auth.set_password(session, yinqi.audit, yinqi.field_cipher, username=username,
                                 password=password, actor=_who(ctx), now=_now(),
                                 bootstrap=bootstrap)
    if json_out:
        print_json({"username": done.username, "first": done.first,
                    "sessions_ended": done.sessions_ended, "otpauth_uri": done.otpauth_uri})
        return
    console.print(_("password of {user} set").format(user=done.username)
                  + (_("; {count} session(s) ended").format(count=done.sessions_ended)
                     if done.sessions_ended else ""),
                  markup=False)
    _show_uri(done.username, done.otpauth_uri)


@app.command("enrol")
def enrol(ctx: typer.Context, username: str = typer.Argument(...),
          json_out: bool = _JSON) -> None:
    """Issue a new authenticator secret (lost phone): the old codes stop working, the user's
    sessions end, and the first valid code confirms the new one."""
    yinqi = _app(ctx)
    with yinqi.sessions.begin() as session:
        uri = auth.enrol(session, yinqi.audit, yinqi.field_cipher, username=username,
                         actor=_who(ctx), now=_now())
    if json_out:
        print_json({"username": username, "otpauth_uri": uri})
        return
    _show_uri(username, uri)


@app.command("unlock")
def unlock(ctx: typer.Context, username: str = typer.Argument(...)) -> None:
    """Lift the lock after failed logins or codes (talk to the person first)."""
    yinqi = _app(ctx)
    with yinqi.sessions.begin() as session:
        was = auth.unlock(session, yinqi.audit, username=username, actor=_who(ctx), now=_now())
    console.print((_("{user} unlocked") if was else
                   _("{user} was not locked; failure count reset")).format(user=username),
                  markup=False)


@app.command("sessions")
def sessions(ctx: typer.Context,
             username: str | None = typer.Argument(None, help="Only this user's."),
             json_out: bool = _JSON) -> None:
    """Sessions, newest first: who, from where (origin, client), since and until when."""
    yinqi = _app(ctx)
    with yinqi.sessions() as session:
        rows = auth.sessions_overview(session, _now(), username)
    if json_out:
        print_json(rows)
        return
    table = Table(_("id"), _("user"), _("origin"), _("client"), _("since"), _("until"),
                  _("state"), title=_("{count} session(s)").format(count=len(rows)))
    for r in rows:
        table.add_row(str(r["id"]), r["username"], r["origin"], r["client"],
                      f"{r['created_at']:%Y-%m-%d %H:%M}", f"{r['expires_at']:%Y-%m-%d %H:%M}",
                      r["state"] + (f" ({r['end_reason']})" if r["end_reason"] else ""))
    console.print(table, markup=False)
