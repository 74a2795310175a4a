"""Logging in and being refused, as an operator does it: real ``yinqi`` processes, a real
database (SQLite and PostgreSQL), the session token in a real 0600 file."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    PASSWORD,
    app_of,
    as_user,
    cli_login,
    give_password,
    token_path,
    yinqi,
)
from conftest import BACKENDS, module_db_url
from sqlalchemy import select

from yinqi.store.models import Alert, AuditEventRow, UserSession

NOBODY = {"YINQI_ACTOR": ""}  # no identity from the environment (and no token file yet)


def base_env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("YINQI_") and k != "SSH_CLIENT"}
    env.update(YINQI_HOME=str(home), YINQI_DATABASE_URL=db_url, COLUMNS="200")
    return env


def events(env: dict[str, str], action: str) -> list[AuditEventRow]:
    app = app_of(env)
    try:
        with app.sessions() as s:
            return list(s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                                  .order_by(AuditEventRow.seq)).scalars())
    finally:
        app.close()


def one_line(proc: Any) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- a new installation: nobody can log in until the first administrator has a password --------


@pytest.fixture
def fresh(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> dict[str, str]:
    """A database of its own on the module's backend, not yet initialised."""
    own = (f"sqlite:///{tmp_path / 'fresh.db'}" if db_url.startswith("sqlite")
           else request.getfixturevalue("pg_database"))
    return base_env(tmp_path / "home", own)


def test_a_new_installation_gets_its_first_administrator_password_once(
    fresh: dict[str, str],
) -> None:
    nobody = {**fresh, **NOBODY}
    yinqi("init", env=nobody)  # first run: nobody has a password, so nobody may set up
    who = json.loads(yinqi("whoami", "--json", env=nobody).stdout)
    assert who["kind"] == "service" and "no user has a password yet" in who["note"]
    refused = yinqi("users", "add", "qian.x", "--role", "maker", env=nobody, check=1)
    assert "users add needs a person with role admin" in one_line(refused)

    first = yinqi("users", "set-password", "admin", "--password-stdin", env=fresh,
                  input=PASSWORD + "\n")
    assert "password of admin set" in first.stdout
    assert "otpauth://totp/Yinqi:admin?secret=" in first.stdout  # shown this once
    [event] = events(fresh, "user.password_set")
    assert event.details["bootstrap"] is True and event.actor.startswith("service:")
    assert "secret" not in json.dumps(event.details)

    # Armed now: the service identity may not set passwords, nobody may run anything.
    again = yinqi("users", "set-password", "admin", "--password-stdin", env=fresh,
                  input="a takeover password\n", check=1)
    assert "the service identity may not run it" in one_line(again)
    listed = yinqi("payments", "list", env=nobody, check=1)
    assert "payments list needs" in one_line(listed) and "nobody is logged in" in listed.stderr
    assert yinqi("whoami", env=nobody, check=1).stdout.startswith("nobody is logged in")
    refusals = events(fresh, "access.refused")
    assert [e.subject_ids for e in refusals] == [["users add"], ["users set-password"],
                                                 ["payments list"]]


# --- an armed installation ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "auth-cli-db")


@pytest.fixture(scope="module")
def armed(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = base_env(tmp_path_factory.mktemp("auth-cli") / "home", db_url)
    yinqi("init", env=env)
    for user in ("admin", "wu.maker", "zhou.maker", "liu.treasurer", "zhao.auditor"):
        give_password(env, user)
    return env


def test_login_whoami_and_logout(armed: dict[str, str]) -> None:
    shell, proc = cli_login(armed, "zhao.auditor")
    done = json.loads(proc.stdout)
    assert (done["user"], done["roles"]) == ("zhao.auditor", ["auditor"])
    token_file = token_path(armed)
    assert Path(done["token_file"]) == token_file
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    who = json.loads(yinqi("whoami", "--json", env=shell).stdout)
    assert (who["user"], who["kind"], who["roles"]) == ("zhao.auditor", "user", ["auditor"])
    assert who["origin"] == f"local:{socket.gethostname()}"
    expires = datetime.fromisoformat(who["expires_at"])
    assert timedelta(hours=7, minutes=50) < expires - datetime.now(UTC) <= timedelta(hours=8)
    # The auditor may verify the audit trail; the token itself is never printed.
    assert "intact" in yinqi("audit", "verify", env=shell).stdout
    assert token_file.read_text().strip() not in proc.stdout + proc.stderr

    assert "logged out" in yinqi("logout", env=shell).stdout
    assert not token_file.exists()
    assert yinqi("whoami", env=shell, check=1).stdout.startswith("nobody is logged in")
    assert [e.actor for e in events(armed, "auth.logout")][-1] == "zhao.auditor"


def test_a_refused_command_exits_1_with_one_line_and_is_audited(armed: dict[str, str]) -> None:
    maker = as_user(armed, "wu.maker")
    proc = yinqi("payments", "fix", "1", "--purpose", "x", env=maker, check=1)
    assert one_line(proc) == ("yinqi: error: payments fix needs role treasurer; "
                              "you are wu.maker (maker)")
    last = events(armed, "access.refused")[-1]
    assert (last.actor, last.subject_type, last.subject_ids) == ("wu.maker", "command",
                                                                 ["payments fix"])
    assert last.details["roles"] == ["maker"] and last.details["needs"] == ["treasurer"]
    # Someone logged in is who they are: --as names nobody else.
    treasurer = as_user(armed, "liu.treasurer")
    other = yinqi("payments", "fix", "1", "--as", "wu.maker", "--purpose", "x",
                  env=treasurer, check=1)
    assert "--as wu.maker is not you: you are logged in as liu.treasurer" in one_line(other)
    assert "intact" in yinqi("audit", "verify", env=armed).stdout


@pytest.mark.parametrize("command", [
    ["payments", "fix", "1", "--purpose", "x"],
    ["batches", "rerun", "1"],
    ["reconcile", "exceptions", "write-off", "1", "--reason", "x"],
    ["reconcile", "exceptions", "confirm", "1"],
    ["approvals", "approve", "1", "--as", "li.approver", "--code", "123456"],
    ["users", "list"],
    ["keys", "rotate", "--purpose", "signing"],
    ["receipts", "show", "1"],
])
def test_the_service_identity_is_refused_what_needs_a_person(armed: dict[str, str],
                                                             command: list[str]) -> None:
    path = " ".join(c for c in command[:3] if not c[0].isdigit() and not c.startswith("-"))
    proc = yinqi(*command, env=armed, check=1)  # cli_support runs as YINQI_ACTOR=service
    line = one_line(proc)
    assert line.startswith(f"yinqi: error: {path} needs a person")
    assert "the service identity may not run it" in line
    last = events(armed, "access.refused")[-1]
    assert last.subject_ids == [path] and last.actor.startswith("service:")


def test_a_wrong_password_is_refused_in_one_line_and_audited(armed: dict[str, str]) -> None:
    _, proc = cli_login(armed, "zhou.maker", password="not my password", check=1)
    line = one_line(proc)
    assert line.startswith("yinqi: error: login refused: wrong password or one-time code")
    assert "not my password" not in proc.stdout + proc.stderr
    last = events(armed, "auth.login_failed")[-1]
    assert (last.actor, last.details["reason"]) == ("zhou.maker", "PASSWORD_WRONG")


def test_a_login_from_another_place_is_recorded_and_alerted(armed: dict[str, str]) -> None:
    shell, _ = cli_login(armed, "liu.treasurer")
    away = {**armed, "SSH_CLIENT": "203.0.113.7 52000 22"}
    _, proc = cli_login(away, "liu.treasurer", at=datetime.now(UTC) + timedelta(seconds=30))
    done = json.loads(proc.stdout)
    assert done["origin"] == "203.0.113.7"
    # The shipped action is "alert": the login goes on, and says what fired.
    assert [(r["rule"], r["action"]) for r in done["risk"]] == [("new_login_location", "alert")]
    admin = as_user(armed, "admin")
    listed = json.loads(yinqi("users", "sessions", "liu.treasurer", "--json", env=admin).stdout)
    origins = [s["origin"] for s in listed]
    assert "203.0.113.7" in origins and f"local:{socket.gethostname()}" in origins
    assert all(s["client"] for s in listed)
    app = app_of(armed)
    try:
        with app.sessions() as s:
            alerts = list(s.execute(select(Alert).where(
                Alert.kind == "risk.new_login_location")).scalars())
            open_sessions = s.execute(select(UserSession).where(
                UserSession.ended_at.is_(None))).scalars().all()
    finally:
        app.close()
    assert [a.subject for a in alerts] == ["user liu.treasurer"]
    assert open_sessions
    yinqi("logout", env=shell)


def test_an_administrator_adds_a_user_who_then_logs_in(armed: dict[str, str]) -> None:
    admin = as_user(armed, "admin")
    added = yinqi("users", "add", "qian.treasurer", "--role", "treasurer", "--name", "钱司库",
                  env=admin)
    assert "otpauth://totp/Yinqi:qian.treasurer?secret=" in added.stdout
    yinqi("users", "set-password", "qian.treasurer", "--password-stdin", env=admin,
          input=PASSWORD + "\n")
    short = yinqi("users", "set-password", "qian.treasurer", "--password-stdin", env=admin,
                  input="too short\n", check=2)
    assert "at least 12 characters" in one_line(short) and "too short" not in short.stderr
    shell, _ = cli_login(armed, "qian.treasurer")
    who = json.loads(yinqi("whoami", "--json", env=shell).stdout)
    assert who["roles"] == ["treasurer"]
    users = {u["username"]: u for u in json.loads(yinqi("users", "list", "--json",
                                                        env=admin).stdout)}
    assert users["qian.treasurer"]["password"] and users["qian.treasurer"]["totp_enrolled"]
    assert [e.actor for e in events(armed, "user.created")][-1] == "admin"
    yinqi("logout", env=shell)
