"""What ``yinqi up`` starts, decided from the configuration alone (no process is touched)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost")
#: The Prefect server's database when these are set (the second is Prefect's older name).
PREFECT_DATABASE_VARS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL",
                         "PREFECT_API_DATABASE_CONNECTION_URL")
#: Inherited variables a child must not see: a session token would clash with the service
#: identity the children run as.
DROPPED_VARS = ("YINQI_SESSION",)


@dataclass(frozen=True)
class SandboxPlan:
    """The sandbox bank processes to run (one per port) and the banks that are not the
    sandbox's (real banks: nothing is started for them)."""

    ports: dict[int, list[str]]
    elsewhere: list[str]


def sandbox_plan(endpoints: Mapping[str, str], sandbox_banks: Collection[str]) -> SandboxPlan:
    """``endpoints``: bank id -> endpoint URL from banks.toml; ``sandbox_banks``: the bank
    codes the sandbox plays (its URL paths, ``/banks/<code>``). A bank is the sandbox's when
    its endpoint is on loopback and ends in one of those codes."""
    ports: dict[int, list[str]] = {}
    elsewhere = []
    for bank, endpoint in sorted(endpoints.items()):
        parts = urlsplit(endpoint)
        code = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if parts.hostname in LOOPBACK and code in sandbox_banks:
            ports.setdefault(parts.port or 443, []).append(bank)
        else:
            elsewhere.append(bank)
    return SandboxPlan(ports, elsewhere)


def child_env(base: Mapping[str, str], *, home: Path, prefect_home: Path, api_url: str,
              ui_url: str, host: str, port: int) -> dict[str, str]:
    """The environment of every child: this one, plus the Yinqi home, the service identity
    (the children do routine work only) and the Prefect server's address and home."""
    env = {k: v for k, v in base.items() if k not in DROPPED_VARS}
    env.update({
        "YINQI_HOME": str(home),
        "YINQI_ACTOR": "service",
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_URL": ui_url,
        # `prefect server start` takes its address from these; with `--port` alone its UI
        # would call the API on the default port.
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    })
    return env


def prefect_database(env: Mapping[str, str], prefect_home: Path) -> str:
    """Where the Prefect server keeps its state, for the operator (no password shown)."""
    for name in PREFECT_DATABASE_VARS:
        url = env.get(name, "").strip()
        if url:
            from sqlalchemy import make_url

            try:
                parsed = make_url(url)
            except Exception:  # noqa: BLE001 - shown, not used: Prefect itself judges it
                return f"{name} (unreadable URL)"
            if parsed.get_backend_name() == "sqlite":
                return f"SQLite {parsed.database}"
            return (f"PostgreSQL {parsed.host or 'localhost'}:{parsed.port or 5432}/"
                    f"{parsed.database or ''}")
    return f"SQLite {prefect_home / 'prefect.db'}"
