"""Health checks behind ``yinqi doctor``: each says what it found and what to do about it."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from sqlalchemy import select, text

from yinqi.bootstrap import App
from yinqi.errors import YinqiError
from yinqi.ops.errors import OpsError
from yinqi.ops.state import RunLock, RunPaths, read_state
from yinqi.security.keystore import file_mode, is_encrypted_pem, load_private_key
from yinqi.store import migrate
from yinqi.store.models import Key

WARN_DAYS = 30
URGENT_DAYS = 7


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def _expiry(name: str, not_after: datetime, now: datetime) -> Check:
    days = (not_after - now).days
    if not_after <= now:
        return Check(name, Status.FAIL, f"EXPIRED on {not_after:%Y-%m-%d}: rotate it now "
                     "(docs/certificates.md)")
    if days < URGENT_DAYS:
        return Check(name, Status.WARN, f"expires in {days} days ({not_after:%Y-%m-%d}): "
                     "rotate it NOW (docs/certificates.md)")
    if days < WARN_DAYS:
        return Check(name, Status.WARN, f"expires in {days} days ({not_after:%Y-%m-%d}): rotate it")
    return Check(name, Status.OK, f"valid until {not_after:%Y-%m-%d} ({days} days)")


def check_database(app: App) -> Iterator[Check]:
    url = app.engine.url.render_as_string(hide_password=True)
    try:
        with app.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the same thing to the operator
        yield Check("database", Status.FAIL, f"{url}: cannot connect ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]})")
        return
    yield Check("database", Status.OK, f"{url} ({app.engine.dialect.name})")
    current, head = migrate.current_revision(app.engine), migrate.head_revision()
    if current == head:
        yield Check("migrations", Status.OK, f"at {head} (latest)")
    else:
        yield Check("migrations", Status.FAIL,
                    f"at {current or 'nothing'}, code needs {head}: run `yinqi init`")


def check_master_secret(app: App) -> Iterator[Check]:
    settings = app.settings
    source = "YINQI_MASTER_SECRET" if settings.master_secret else str(settings.master_secret_file)
    try:
        app.master_secret  # noqa: B018 - loading is the check
    except YinqiError as exc:
        yield Check("master secret", Status.FAIL, str(exc))
        return
    if settings.master_secret is None:
        mode = stat.S_IMODE(settings.master_secret_file.stat().st_mode)
        yield Check("master secret", Status.OK, f"{source} (mode {mode:o})")
    else:
        yield Check("master secret", Status.OK, source)


def check_keys(app: App, now: datetime) -> Iterator[Check]:
    try:
        with app.sessions() as session:
            # Field keys (purpose "fields") are derived, never files: nothing to open here.
            keys = session.execute(select(Key).where(Key.retired_at.is_(None),
                                                     Key.purpose == "signing")).scalars().all()
    except Exception:  # the database check already said why
        yield Check("signing key", Status.FAIL, "cannot read key metadata from the database")
        return
    if not keys:
        yield Check("signing key", Status.FAIL, "no active signing key: run `yinqi init`")
        return
    for key in keys:
        name = f"key {key.key_id}"
        try:
            load_private_key(Path(key.path), app.master_secret)
        except YinqiError as exc:
            yield Check(name, Status.FAIL, str(exc))
            continue
        mode = file_mode(Path(key.path))
        if mode & 0o077:
            yield Check(name, Status.WARN, f"{key.path} is readable by others (mode {mode:o}): "
                        f"run `chmod 600 {key.path}`")
            continue
        yield _expiry(name, key.not_after, now)


def check_client_key(code: str, path: Path, master: bytes) -> Check:
    """A bank channel's TLS client key: present, encrypted, opening with this master secret."""
    name = f"bank {code} client key"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Check(name, Status.WARN, f"{path} not present yet (made when the bank "
                     "connection is set up)")
    mode = file_mode(path)
    if not is_encrypted_pem(data):
        return Check(name, Status.WARN, f"client key {path} is not encrypted: run "
                     f"`yinqi keys import-tls --bank {code}` to encrypt it in place")
    try:
        load_private_key(path, master)
    except YinqiError as exc:
        return Check(name, Status.FAIL, str(exc))
    if mode & 0o077:
        return Check(name, Status.WARN, f"{path} is readable by others (mode {mode:o}): run "
                     f"`chmod 600 {path}`")
    return Check(name, Status.OK, f"{path} encrypted (mode {mode:o})")


def check_audit(app: App) -> Iterator[Check]:
    try:
        with app.sessions() as session:
            verdict = app.audit.verify(session)
    except YinqiError as exc:
        yield Check("audit chain", Status.FAIL, str(exc))
        return
    yield Check("audit chain", Status.OK if verdict.ok else Status.FAIL, str(verdict))


def check_backups(app: App, now: datetime) -> Iterator[Check]:
    """The newest backup's age and the last restore drill's verdict (from the audit trail)."""
    from sqlalchemy import select

    from yinqi.backup.chain import catalog
    from yinqi.backup.service import STALE_AFTER, backup_target
    from yinqi.store.models import AuditEventRow

    try:
        target = backup_target(app)
        entries = [e for e in catalog(target, app.master_secret) if e.created_at is not None]
    except YinqiError as exc:
        yield Check("backups", Status.FAIL, str(exc))
        return
    if not entries:
        yield Check("backups", Status.WARN, f"no backup in {target.location} yet: run `yinqi "
                    "backup create`, and serve the scheduled backups (`yinqi flows serve`)")
    else:
        newest = entries[-1]
        assert newest.created_at is not None
        hours = (now - newest.created_at).total_seconds() / 3600
        detail = f"newest {newest.name} ({newest.kind}, {hours:.0f} h ago) in {target.location}"
        stale = now - newest.created_at > STALE_AFTER
        yield Check("backups", Status.WARN if stale else Status.OK,
                    detail + (": is the nightly backup running?" if stale else ""))
    try:
        with app.sessions() as session:
            last = session.execute(select(AuditEventRow).where(
                AuditEventRow.action == "backup.drill").order_by(
                AuditEventRow.seq.desc()).limit(1)).scalar_one_or_none()
    except Exception:  # noqa: BLE001 - the database check already says what is wrong
        return
    if last is None:
        yield Check("restore drill", Status.WARN, "never run: `yinqi backup drill` proves the "
                    "newest backup restores")
    elif not (last.details or {}).get("ok"):
        problems = (last.details or {}).get("problems") or ["see the audit trail"]
        yield Check("restore drill", Status.FAIL, f"the last drill ({last.occurred_at:%Y-%m-%d})"
                    f" failed: {problems[0]}")
    else:
        yield Check("restore drill", Status.OK, f"passed on {last.occurred_at:%Y-%m-%d} "
                    f"({(last.details or {}).get('backup')})")


def check_restore_freeze(app: App) -> Iterator[Check]:
    """Accounts a restore froze and nobody released: nothing is sent from them."""
    from yinqi.backup.guard import RELEASE, still_frozen

    try:
        with app.sessions() as session:
            frozen = still_frozen(session)
    except Exception:  # noqa: BLE001 - the database check already says what is wrong
        return
    if not frozen.accounts:
        return
    taken = f" (taken {frozen.taken_at[:16].replace('T', ' ')} UTC)" if frozen.taken_at else ""
    yield Check("sending after restore", Status.FAIL,
                f"{len(frozen.accounts)} company account(s) frozen since the restore of backup "
                f"{frozen.backup or '?'}{taken}: "
                f"{', '.join(f'{a.account} (id {a.account_id})' for a in frozen.accounts)}. "
                "Nothing new is sent from them. Check each account's transactions at the bank "
                f"since then, stop what was already paid, then: {RELEASE} (docs/backup.md, "
                "After a restore)")


def check_prefect(home: Path) -> Iterator[Check]:
    """The Prefect server of PREFECT_API_URL, else the one `yinqi up` runs for ``home``: the
    operator's shell rarely has PREFECT_API_URL, and `yinqi up` does not set it there."""
    api = os.environ.get("PREFECT_API_URL", "").strip()
    if api:
        yield _prefect_health(api, "is `prefect server start` running?")
        return
    paths = RunPaths(home)
    try:
        state = read_state(paths.state)
    except OpsError as exc:
        yield Check("prefect api", Status.WARN, str(exc))
        return
    if state is None:
        yield Check("prefect api", Status.OK,
                    "local mode: flows start a temporary server (set PREFECT_API_URL for a "
                    "shared one, or run `yinqi up`)")
        return
    if not (RunLock.held(paths.lock) and RunLock.holder(paths.lock) == state.pid):
        yield Check("prefect api", Status.WARN,
                    f"yinqi up (pid {state.pid}) is not running, its {paths.state} is left "
                    "over: scheduled work does not run; `yinqi down`, then `yinqi up`")
        return
    found = _prefect_health(state.api_url, f"`yinqi status`; the server's log is in "
                                           f"{paths.logs}")
    if found.status is Status.OK:
        # Flows started from a shell without it would start a temporary server instead.
        found = Check(found.name, found.status,
                      f"{found.detail} (started by `yinqi up`; a shell needs "
                      f"PREFECT_API_URL={state.api_url} to run flows on it)")
    yield found


def _prefect_health(api: str, what_to_do: str) -> Check:
    try:
        response = httpx.get(api.rstrip("/") + "/health", timeout=3.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return Check("prefect api", Status.FAIL,
                     f"{api}: not healthy ({type(exc).__name__}); {what_to_do}")
    return Check("prefect api", Status.OK, f"{api} healthy")


def check_banks(app: App, now: datetime, timeout: float = 2.0) -> Iterator[Check]:
    home = app.settings.home
    for code, bank in sorted(app.config.banks.items()):
        parts = urlsplit(str(bank.endpoint))
        host, port = parts.hostname or "", parts.port or 443
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            yield Check(f"bank {code}", Status.OK,
                        f"{host}:{port} reachable ({bank.dialect}); `yinqi bank test {code}` "
                        "checks TLS and login")
        except OSError as exc:
            yield Check(f"bank {code}", Status.FAIL,
                        f"{host}:{port} not reachable ({exc.strerror or exc}); is the bank "
                        "(or `yinqi sandbox-bank serve`) running and the endpoint right?")
        try:
            master: bytes | None = app.master_secret
        except YinqiError:
            master = None  # the master secret check already said why
        if master is not None:
            yield check_client_key(code, bank.resolve_path(home, bank.client_key), master)
        for label, rel in (("CA", bank.ca_cert), ("client certificate", bank.client_cert),
                           ("signing certificate", bank.signing_cert)):
            path = bank.resolve_path(home, rel)
            name = f"bank {code} {label}"
            if not path.exists():
                yield Check(name, Status.WARN, f"{path} not present yet (issued when the bank "
                            "connection is set up)")
                continue
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError:
                yield Check(name, Status.FAIL, f"{path} is not a PEM certificate")
                continue
            yield _expiry(name, cert.not_valid_after_utc, now)


def run_checks(app: App, *, now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(UTC)
    steps: list[Callable[[], Iterator[Check]]] = [
        lambda: iter([Check("config", Status.OK, ", ".join(
            f"{k}: {v}" for k, v in sorted(app.config.sources.items())))]),
        lambda: check_database(app),
        lambda: check_master_secret(app),
        lambda: check_keys(app, now),
        lambda: check_audit(app),
        lambda: check_backups(app, now),
        lambda: check_restore_freeze(app),
        lambda: check_prefect(app.settings.home),
        lambda: check_banks(app, now),
    ]
    results: list[Check] = []
    for step in steps:
        results.extend(step())
    return results
