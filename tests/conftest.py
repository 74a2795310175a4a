"""Fixtures shared by every test layer.

Database-backed tests run once per backend: SQLite (always) and the real PostgreSQL server.
Where PostgreSQL cannot be reached they skip with the reason, except under ``CI=true``,
where an unreachable server fails the run: CI must prove both backends.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "YINQI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# Keep every test run away from the user's own Yinqi and Prefect state.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
for _name in [k for k in os.environ if k.startswith("YINQI_")]:
    if _name != "YINQI_TEST_PG_URL":
        del os.environ[_name]
# Messages in English whatever the machine's locale says (tests read the English output);
# LANGUAGE too, for the tests that start `yinqi` with every YINQI_* variable removed.
os.environ["YINQI_LANG"] = "en"
os.environ["LANGUAGE"] = "en"
# Nor the runner's screen size: pytest imports readline, which exports COLUMNS=80 and LINES=24
# to every process started after it (xdist workers). Tests that read a table set COLUMNS.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-seeds", type=int, default=20,
                     help="How many seeds the chaos test runs (20 in `make test`, "
                          "`make chaos SEEDS=N` for more).")


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    import psycopg

    dsn = _psycopg_dsn(PG_ADMIN_URL)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip().splitlines()[0]}"
        if UNDER_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)
    return dsn


@contextmanager
def fresh_pg_database(admin_dsn: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its SQLAlchemy URL); dropped afterwards."""
    import psycopg

    name = f"yinqi_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    with fresh_pg_database(pg_admin_dsn) as url:
        yield url


def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  label: str) -> Iterator[str]:
    """Body of a module-scoped ``db_url`` fixture (params=BACKENDS): one database per module
    and backend, for modules that share one expensive world across their tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp(label) / 'yinqi.db'}"
        return
    with fresh_pg_database(request.getfixturevalue("pg_admin_dsn")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'yinqi.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    from yinqi.security.fields import FieldCrypto
    from yinqi.store import make_engine, upgrade

    eng = make_engine(db_url, fields=FieldCrypto(MASTER_SECRET.encode()))
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine):  # type: ignore[no-untyped-def]
    from yinqi.store import session_factory

    return session_factory(engine)


MASTER_SECRET = "test-master-secret-" + "x" * 32


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test Prefect server for one module (about 20 s to start), its state in a temporary
    PREFECT_HOME."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def app(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An initialised Yinqi (config, schema, company, users, keys) on the backend under test."""
    from config import load_settings
    from yinqi.bootstrap import App
    from yinqi.cli.init_cmd import run_init

    settings = load_settings(home=tmp_path / "home", database_url=db_url,
                             master_secret=MASTER_SECRET)
    application = App(settings)
    run_init(application)
    yield application
    application.close()


# --- a line in the summary that shows both backends really ran -------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    backend = params.get("db_url")
    if backend is None and (item.get_closest_marker("postgres")
                            or "pg_database" in getattr(item, "fixturenames", ())):
        backend = "postgresql"
    counted = report.when == "call" or (report.when == "setup" and report.outcome != "passed")
    if backend and counted:
        # On the report, not in this process: xdist workers' reports reach the summary too.
        report.user_properties.append(("backend", backend))
    return report


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    outcomes: Counter[tuple[str, str]] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, backend in getattr(report, "user_properties", ()):
                if name == "backend":
                    outcomes[(backend, report.outcome)] += 1
    if not outcomes:
        return
    parts = []
    for backend in ("sqlite", "postgresql"):
        counts = ", ".join(f"{n} {outcome}" for (b, outcome), n in sorted(outcomes.items())
                           if b == backend)
        parts.append(f"{backend}: {counts or 'none'}")
    terminalreporter.write_line("database backends: " + "; ".join(parts))
