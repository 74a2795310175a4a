"""Putting a sandbox bank together from its config file, and serving it over mutual TLS."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from starlette.applications import Starlette

from connectors.sandbox.bank import Sandbox, resolve
from connectors.sandbox.clock import Clock, FakeClock, ShiftedClock, SystemClock
from connectors.sandbox.faults import FaultPlan
from connectors.sandbox.pki import ensure_ca, fingerprint, issue_client_cert, server_ssl_kwargs
from connectors.sandbox.server import Identity, build_app, close_receipt_pool
from connectors.sandbox.settings import SandboxConfig, load_sandbox_config

SETTLE_INTERVAL_SECONDS = 0.25
log = logging.getLogger("yinqi.sandbox")


@dataclass
class Running:
    config: SandboxConfig
    state_dir: Path
    sandbox: Sandbox
    identity: Identity
    app: Starlette


def _engine(url: str) -> Engine:
    # The bank's own database; deliberately not Yinqi's store code: it is another bank.
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL",
                       "busy_timeout=60000"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        # Writers take the write lock up front (no deadlock when two would upgrade a read);
        # Sandbox.reads sessions only read, and in WAL mode a deferred transaction reads the
        # last committed state without waiting for any writer.
        read_only = conn.get_execution_options().get("sandbox_read", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _identity(state_dir: Path, sandbox: Sandbox, config_base: Path) -> Identity:
    ensure_ca(state_dir)
    cert, key = state_dir / "bank-signing.pem", state_dir / "bank-signing.key"
    if not cert.exists() or not key.exists():
        issue_client_cert(state_dir, "Yinqi Sandbox Bank signing", cert, key, days=3650)
    secret_file = state_dir / "receipt.secret"
    if not secret_file.exists():
        import os
        import secrets

        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    cert_pem = cert.read_bytes()
    identity = Identity(key_pem=key.read_bytes(), cert_pem=cert_pem,
                        fingerprint=fingerprint(cert_pem), receipt_secret=secret_file.read_bytes())
    for code, bank in sandbox.banks.items():
        # Signers come from the config and from PEM files handed to the bank in its folder.
        files = [resolve(config_base, p) for p in bank.spec.signers]
        folder = state_dir / "signers" / code
        folder.mkdir(parents=True, exist_ok=True)
        identity.signers[code] = {fingerprint(f.read_bytes()): f.read_bytes() for f in files}
        identity.signer_folders[code] = folder
        identity.trusted(code)
    return identity


def open_sandbox(config_path: Path | None = None, state_dir: Path | None = None) -> Running:
    config, base = load_sandbox_config(config_path)
    state = (state_dir or resolve(base, config.state_dir)).resolve()
    state.mkdir(parents=True, exist_ok=True)
    fake = FakeClock(config.fake_clock_start or datetime.now(UTC))
    clock: Clock = fake if config.clock == "fake" else SystemClock()
    sandbox = Sandbox(config, _engine(config.database_url or f"sqlite:///{state / 'bank.db'}"),
                      clock, FaultPlan(config.faults))
    floor = sandbox.clock_floor()
    if config.clock == "fake" and floor is not None and floor > fake.now():
        # A restarted fake clock resumes where the bank's books end: time never runs back.
        fake.set(floor)
    if config.clock == "shifted":
        start = config.fake_clock_start or datetime.now(UTC)
        sandbox.clock = ShiftedClock(max(start, floor) if floor is not None else start)
    sandbox.setup()
    identity = _identity(state, sandbox, base)
    return Running(config, state, sandbox, identity,
                   build_app(sandbox, identity, control_api=config.control_api))


def _settle_forever(sandbox: Sandbox, stop: threading.Event) -> None:
    while not stop.wait(SETTLE_INTERVAL_SECONDS):
        try:
            sandbox.settle_due()
        except Exception:
            # A database hiccup must not end settlement for the server's lifetime.
            log.exception("sandbox: settlement round failed; retrying")


def serve(config_path: Path | None, *, host: str, port: int, state_dir: Path | None) -> None:
    import uvicorn

    running = open_sandbox(config_path, state_dir)
    stop = threading.Event()
    if not isinstance(running.sandbox.clock, FakeClock):
        threading.Thread(target=_settle_forever, args=(running.sandbox, stop), daemon=True,
                         name="sandbox-settlement").start()
    ssl_kwargs = server_ssl_kwargs(
        running.state_dir, expired=running.config.faults.expired_server_certificate)
    try:
        uvicorn.run(running.app, host=host, port=port, log_level="warning", **ssl_kwargs)
    finally:
        stop.set()
        close_receipt_pool()
        running.sandbox.engine.dispose()
