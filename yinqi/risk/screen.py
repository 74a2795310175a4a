"""Which rules run when, and what their hits add up to for each payment: pure, no I/O.

The store (:mod:`yinqi.store.risk`) loads the frames :mod:`yinqi.risk.rules` describes for
one chunk of payments, calls :func:`screen`, and carries out :func:`verdicts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from config.risk import RiskAction, RiskRule, RiskRules
from yinqi.risk import rules as r
from yinqi.risk.rules import Hit
from yinqi.risk.stages import Stage


#: Rules per stage. Login rules (new_login_location, failed logins) are screened at login.
RULES: dict[Stage, tuple[str, ...]] = {
    Stage.INTAKE: ("large_single_amount", "daily_total_per_payee", "new_payee",
                   "payee_account_changed", "duplicate_payment", "split_payments",
                   "blacklist", "out_of_hours", "repeated_failures"),
    Stage.APPROVAL: ("out_of_hours",),
    Stage.FAILURE: ("repeated_failures",),
}
RULES[Stage.CORRECTED] = RULES[Stage.INTAKE]

#: What a payment's "doing" is called in out_of_hours messages.
DOING = {Stage.INTAKE: "entered", Stage.CORRECTED: "corrected", Stage.APPROVAL: "approved",
         Stage.FAILURE: "failed"}

_STRENGTH: dict[str, int] = {"alert": 0, "hold": 1, "freeze": 2}


def enabled(rules: RiskRules, stage: Stage) -> list[str]:
    return [name for name in RULES[stage] if _rule(rules, name).enabled]


def idle(rules: RiskRules, stage: Stage, now: datetime) -> bool:
    """Whether no enabled rule of ``stage`` can fire at ``now``, whatever the payments: then
    the store need not even load them (an approval inside business hours)."""
    names = enabled(rules, stage)
    if names == ["out_of_hours"]:
        return not r.out_of_hours(r.frame("candidates", [(0, 1, "CNY", "", "")]),
                                  rules.out_of_hours, now=now)
    return not names


def _rule(rules: RiskRules, name: str) -> RiskRule:
    rule = getattr(rules, name)
    assert isinstance(rule, RiskRule)
    return rule


@dataclass(frozen=True)
class Needs:
    """What history a stage's enabled rules read, so the store loads only that."""

    recent_since: datetime | None = None
    seen: bool = False
    names: bool = False
    failures_since: datetime | None = None


def needs(rules: RiskRules, stage: Stage, now: datetime) -> Needs:
    names = set(enabled(rules, stage))
    windows: list[timedelta] = []
    if "duplicate_payment" in names:
        windows.append(timedelta(days=rules.duplicate_payment.within_days))
    if "split_payments" in names:
        windows.append(timedelta(hours=rules.split_payments.within_hours))
    if "daily_total_per_payee" in names:
        windows.append(timedelta(days=1, hours=1))  # covers the local day in any time zone
    failures = ("repeated_failures" in names
                and now - timedelta(hours=rules.repeated_failures.within_hours))
    return Needs(recent_since=now - max(windows) if windows else None,
                 seen=bool(names & {"new_payee", "payee_account_changed"}),
                 names="payee_account_changed" in names,
                 failures_since=failures or None)


@dataclass(frozen=True)
class Inputs:
    """The frames one screen reads (see :mod:`yinqi.risk.rules` for their columns)."""

    candidates: pd.DataFrame
    recent: pd.DataFrame = field(default_factory=lambda: r.frame("recent"))
    accounts_seen: pd.DataFrame = field(default_factory=lambda: r.frame("accounts_seen"))
    names_seen: pd.DataFrame = field(default_factory=lambda: r.frame("names_seen"))
    failures: pd.DataFrame = field(default_factory=lambda: r.frame("failures"))


def screen(inputs: Inputs, rules: RiskRules, *, now: datetime, stage: Stage) -> list[Hit]:
    """Every hit of every enabled rule of ``stage``, ordered by payment then rule."""
    c, cur = inputs.candidates, rules.currency
    run = {
        "large_single_amount": lambda: r.large_single_amount(
            c, rules.large_single_amount, currency=cur),
        "daily_total_per_payee": lambda: r.daily_total_per_payee(
            c, inputs.recent, rules.daily_total_per_payee, currency=cur,
            timezone=rules.timezone, now=now),
        "new_payee": lambda: r.new_payee(c, inputs.accounts_seen, rules.new_payee, now=now),
        "payee_account_changed": lambda: r.payee_account_changed(
            c, inputs.accounts_seen, inputs.names_seen, rules.payee_account_changed, now=now),
        "duplicate_payment": lambda: r.duplicate_payment(
            c, inputs.recent, rules.duplicate_payment, now=now),
        "split_payments": lambda: r.split_payments(
            c, inputs.recent, rules.split_payments, currency=cur, now=now),
        "blacklist": lambda: r.blacklist(c, rules.blacklist),
        "out_of_hours": lambda: r.out_of_hours(c, rules.out_of_hours, now=now,
                                               doing=DOING[stage]),
        "repeated_failures": lambda: r.repeated_failures(
            c, inputs.failures, rules.repeated_failures, now=now),
    }
    hits: list[Hit] = []
    if c.empty:
        return hits
    for name in enabled(rules, stage):
        hits += run[name]()
    order = {name: i for i, name in enumerate(RULES[stage])}
    return sorted(hits, key=lambda h: (h.payment_id, order[h.rule]))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the hits on one payment add up to: the strongest action wins."""

    payment_id: int
    action: RiskAction
    rules: tuple[str, ...]
    #: Rules that asked for a freeze, with what each freezes (payment, batch or account).
    freezes: tuple[tuple[str, str], ...] = ()

    @property
    def stops(self) -> bool:
        """Whether the payment must stop (HELD) instead of going on."""
        return self.action != "alert"


def action_of(rules: RiskRules, hit: Hit) -> RiskAction:
    return _rule(rules, hit.rule).action


def verdicts(hits: Iterable[Hit], rules: RiskRules) -> dict[int, Verdict]:
    by_payment: dict[int, list[Hit]] = {}
    for hit in hits:
        by_payment.setdefault(hit.payment_id, []).append(hit)
    out: dict[int, Verdict] = {}
    for pid, mine in by_payment.items():
        actions = [action_of(rules, h) for h in mine]
        strongest = max(actions, key=_STRENGTH.__getitem__)
        freezes = tuple((h.rule, _rule(rules, h.rule).freeze_target)
                        for h, a in zip(mine, actions, strict=True) if a == "freeze")
        out[pid] = Verdict(pid, strongest, tuple(h.rule for h in mine), freezes)
    return out


__all__ = ["DOING", "RULES", "Inputs", "Needs", "Stage", "Verdict", "action_of", "enabled",
           "idle", "needs", "screen", "verdicts"]
