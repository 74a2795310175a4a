"""Seeds from ``--chaos-seeds N`` (see tests/conftest.py) and the brief's one-line summary."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        n = metafunc.config.getoption("--chaos-seeds")
        metafunc.parametrize("seed", range(1, n + 1))


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    from chaos.harness import TALLY, Tally

    # Each seed's counts travel on its test report, so seeds run by xdist workers count too.
    total = Tally()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, counts in getattr(report, "user_properties", ()):
                if name == "chaos" and getattr(report, "when", None) == "call":
                    for key, value in counts.items():
                        setattr(total, key, getattr(total, key) + value)
    for problem in TALLY.problems[:20]:
        terminalreporter.write_line(problem)
    if total.seeds:
        terminalreporter.write_line(total.line())
