"""Chaos: random bank faults and SIGKILLed workers; nothing paid twice, nothing lost, nothing
paid without its approvals. Every 10th seed runs on PostgreSQL; seeds 5, 15, 25 ... kill the
Prefect payment flow's own process instead of the plain worker loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from chaos.harness import TALLY, Chaos, run_seed, start

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server the flow processes report to (started on first use)."""
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("chaos-prefect"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        assert url, "the Prefect test server has no API URL"
        yield url


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with start(tmp_path_factory.mktemp("chaos")) as running:
        yield running


def test_no_duplicate_no_loss_no_unapproved_payment(
        chaos: Chaos, seed: int, request: pytest.FixtureRequest,
        record_property: Callable[[str, object], None]) -> None:
    url = request.getfixturevalue("pg_database") if seed % 10 == 0 else None
    api = request.getfixturevalue("prefect_api") if seed % 10 == 5 else None
    before = TALLY.counts()
    result = run_seed(chaos, seed, database_url=url, prefect_api=api)
    # Carried on the report, so the summary adds up seeds run in other (xdist) processes too.
    record_property("chaos", {k: v - before[k] for k, v in TALLY.counts().items()})
    assert result.payments > 0
    assert not result.duplicates, result.duplicates
    assert not result.unapproved, result.unapproved
    assert not result.lost, result.lost


