"""risk_rules.toml: checks every payment passes before it is sent, one table per rule."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from config.fields import (
    ClockTime,
    ConfigModel,
    Count,
    CurrencyCode,
    Flag,
    Money,
    Text,
    TimeZoneName,
)

RiskAction = Literal["alert", "hold", "freeze"]
"""alert: notify and go on; hold: wait for a person to release; freeze: block until cleared."""


class RiskRule(ConfigModel):
    enabled: Flag
    action: RiskAction


class AmountRule(RiskRule):
    threshold: Money


class WithinDaysRule(RiskRule):
    within_days: Count


class SplitPaymentsRule(RiskRule):
    threshold: Money
    within_hours: Count


class BlacklistRule(RiskRule):
    accounts: tuple[Text, ...] = ()
    names: tuple[Text, ...] = ()


class OutOfHoursRule(RiskRule):
    start: ClockTime
    end: ClockTime
    timezone: TimeZoneName

    @model_validator(mode="after")
    def _window_is_forward(self) -> OutOfHoursRule:
        if self.start >= self.end:
            raise ValueError(
                f"start {self.start:%H:%M} must be earlier than end {self.end:%H:%M}"
            )
        return self


class RepeatedFailuresRule(RiskRule):
    count: Count
    within_hours: Count


class RiskRules(ConfigModel):
    currency: CurrencyCode
    large_single_amount: AmountRule
    daily_total_per_payee: AmountRule
    new_payee: RiskRule
    payee_account_changed: WithinDaysRule
    duplicate_payment: WithinDaysRule
    split_payments: SplitPaymentsRule
    blacklist: BlacklistRule
    out_of_hours: OutOfHoursRule
    repeated_failures: RepeatedFailuresRule
    new_login_location: RiskRule
