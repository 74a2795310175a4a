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
"""alert: notify and go on; hold: wait for a person to release; freeze: block until two people
lift it."""

FreezeTarget = Literal["payment", "batch", "account"]
"""What a rule with ``action = "freeze"`` freezes: the payment itself, the bank message (batch)
it travels in, or the company account it is paid from."""


class RiskRule(ConfigModel):
    enabled: Flag
    action: RiskAction
    # Only read when action = "freeze"; None means "payment".
    freeze: FreezeTarget | None = None

    @model_validator(mode="after")
    def _freeze_needs_freeze_action(self) -> RiskRule:
        if self.freeze is not None and self.action != "freeze":
            raise ValueError(
                f'freeze = "{self.freeze}" is only read with action = "freeze" '
                f'(action is "{self.action}"); remove it or set action = "freeze"'
            )
        return self

    @property
    def freeze_target(self) -> FreezeTarget:
        return self.freeze or "payment"


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
    # The company's calendar day (daily totals per payee) is a day in this time zone.
    timezone: TimeZoneName = "Asia/Shanghai"
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
