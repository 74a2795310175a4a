"""reconciliation.toml: how statements are matched against payments, and when it runs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from config._problems import Problem
from config.fields import ConfigModel, Count, CurrencyCode, Money, Text, TimeZoneName

Share = Annotated[Decimal, Field(ge=0, le=1)]


class Schedule(ConfigModel):
    """A daily reconciliation of a group of accounts (cron in the given time zone)."""

    name: Text
    cron: Text
    timezone: TimeZoneName
    accounts: Annotated[tuple[Text, ...], Field(min_length=1)]


class Reconciliation(ConfigModel):
    # Days either side of the payment's execution date a statement line may be booked on.
    date_window_days: Annotated[int, Field(ge=0, le=31)] = 3
    # How alike the payee's name on the statement must be (0..1) for a match without a
    # reference: a string like "0.85" (not a float: config numbers are exact).
    name_similarity_min: Share = Decimal("0.85")
    # The largest bank fee, per currency, a line may add to a payment and still match it.
    max_fee: dict[CurrencyCode, Money] = Field(default_factory=lambda: {"CNY": Decimal("100")})
    # A matched amount may differ by this much (per currency); 0 means exact.
    amount_tolerance: dict[CurrencyCode, Money] = Field(default_factory=dict)
    # Days a settled payment may wait for its statement line before it becomes an exception.
    exception_after_days: Count = 2
    schedules: tuple[Schedule, ...] = ()


def reconciliation_problems(config: Reconciliation, accounts: set[str]) -> Iterator[Problem]:
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    for n, schedule in enumerate(config.schedules):
        try:
            CronSim(schedule.cron, datetime(2026, 1, 1))
        except CronSimError as exc:
            yield Problem(("schedules", n, "cron"),
                          f"{schedule.cron!r} is not a cron expression ({exc})")
        for account in schedule.accounts:
            if account not in accounts:
                yield Problem(("schedules", n, "accounts"),
                              f"{account} is not one of the company's accounts")
