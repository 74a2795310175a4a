"""Chaos: random bank faults and SIGKILLed workers; nothing paid twice, nothing lost, nothing
paid without its approvals. Every 10th seed runs on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.harness import Chaos, run_seed, start

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with start(tmp_path_factory.mktemp("chaos")) as running:
        yield running


def test_no_duplicate_no_loss_no_unapproved_payment(chaos: Chaos, seed: int,
                                                    request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_database") if seed % 10 == 0 else None
    result = run_seed(chaos, seed, database_url=url)
    assert result.payments > 0
    assert not result.duplicates, result.duplicates
    assert not result.unapproved, result.unapproved
    assert not result.lost, result.lost


