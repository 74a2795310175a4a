"""Running the ``yinqi`` command as an operator would: a real process.

Every command checks who runs it (yinqi/security/rbac.py). :func:`yinqi` runs as the service
identity (``YINQI_ACTOR=service``) unless the env names a session; a person-only command
(``payments fix``, ``batches rerun``, ``reconcile exceptions write-off`` ...) needs
:func:`as_user`, which opens a real session for a demo user, or :func:`cli_login`, which
logs in through the real ``yinqi login``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVICE = {"YINQI_ACTOR": "service"}
#: Passwords tests give demo users (the policy wants 12 characters or more).
PASSWORD = "correct horse battery staple"


def with_identity(env: dict[str, str]) -> dict[str, str]:
    """``env`` as the service identity, unless it already says who runs."""
    if "YINQI_SESSION" in env or "YINQI_ACTOR" in env:
        return env
    return {**env, **SERVICE}


def yinqi(*args: str, env: dict[str, str], check: int | None = 0,
          input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "yinqi", *args], env=with_identity(env),
                          text=True, capture_output=True, timeout=180, input=input)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def app_of(env: dict[str, str]) -> Any:
    """The Yinqi installation ``env`` points at, opened in this process."""
    from config import load_settings
    from yinqi.bootstrap import App

    names = {"home": "YINQI_HOME", "database_url": "YINQI_DATABASE_URL",
             "master_secret": "YINQI_MASTER_SECRET", "config_dir": "YINQI_CONFIG_DIR"}
    given = {field: env[var] for field, var in names.items() if env.get(var)}
    return App(load_settings(**given))


def as_user(env: dict[str, str], username: str, *, origin: str | None = None) -> dict[str, str]:
    """``env`` logged in as ``username``: a real session row through yinqi.store.auth (the
    password and code checks of a login are tested in tests/security/test_auth.py). The
    origin is this host's, as a local ``yinqi login`` records it."""
    from yinqi.store.auth import _existing, start_session

    origin = origin or f"local:{socket.gethostname()}"

    app = app_of(env)
    try:
        with app.sessions.begin() as session:
            token, _ = start_session(session, app.audit, _existing(session, username),
                                     origin=origin, client="pytest", now=datetime.now(UTC))
    finally:
        app.close()
    rest = {k: v for k, v in env.items() if k not in ("YINQI_ACTOR", "YINQI_SESSION")}
    return {**rest, "YINQI_SESSION": token}


def give_password(env: dict[str, str], username: str, password: str = PASSWORD) -> None:
    """Set ``username``'s password directly in the store (as an administrator would)."""
    from yinqi.store.auth import set_password

    app = app_of(env)
    try:
        with app.sessions.begin() as session:
            set_password(session, app.audit, app.field_cipher, username=username,
                         password=password, actor="test:setup", now=datetime.now(UTC))
    finally:
        app.close()


def code_of(env: dict[str, str], username: str, at: datetime | None = None) -> str:
    from yinqi.store.auth import current_code

    app = app_of(env)
    try:
        with app.sessions() as session:
            return current_code(session, app.field_cipher, username, at or datetime.now(UTC))
    finally:
        app.close()


def cli_login(env: dict[str, str], username: str, password: str = PASSWORD, *,
              code: str | None = None, at: datetime | None = None,
              check: int | None = 0) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """Log in through the real ``yinqi login`` (password on stdin); the returned env uses the
    token file it wrote, as an operator's shell would (no YINQI_SESSION, no YINQI_ACTOR).

    A code works once: a second login of one user within 30 s needs ``at`` 30 s later.
    """
    rest = {k: v for k, v in env.items() if k not in ("YINQI_ACTOR", "YINQI_SESSION")}
    shell = {**rest, "YINQI_ACTOR": ""}  # set but empty: no identity from the environment
    proc = yinqi("login", "--as", username, "--password-stdin", "--code",
                 code if code is not None else code_of(env, username, at), "--json",
                 env=shell, check=check, input=password + "\n")
    return shell, proc


def token_path(env: dict[str, str]) -> Path:
    import getpass

    return Path(env["YINQI_HOME"]) / "sessions" / f"{getpass.getuser()}.token"
