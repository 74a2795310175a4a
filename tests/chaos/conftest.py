"""Seeds from ``--chaos-seeds N`` (see tests/conftest.py) and the brief's one-line summary."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        n = metafunc.config.getoption("--chaos-seeds")
        metafunc.parametrize("seed", range(1, n + 1))


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    from chaos.harness import TALLY

    if TALLY.seeds:
        for problem in TALLY.problems[:20]:
            terminalreporter.write_line(problem)
        terminalreporter.write_line(TALLY.line())
