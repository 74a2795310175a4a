"""The payment risk rules, pure: for every rule a case that makes it fire and cases that show
it stays quiet (the threshold itself, the edges of its window, another currency, disabled).

Time is always passed in. NOW is 11:00 in Shanghai (03:00 UTC) on Wednesday 2026-11-25.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from config.loader import DEFAULTS_DIR
from config.risk import RiskRules
from yinqi.risk import rules as r
from yinqi.risk.screen import RULES, Inputs, Stage, idle, needs, screen, verdicts

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
A, B, C = "6222021234567890", "6222029876543210", "4950597671723673"
DEFAULT: dict[str, Any] = tomllib.loads((DEFAULTS_DIR / "risk_rules.toml").read_text("utf-8"))


def rules(**changes: dict[str, Any]) -> RiskRules:
    """The shipped rules with some tables changed: rules(blacklist={"names": [...]})."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT.items()}
    for table, values in changes.items():
        data[table].update(values)
    return RiskRules.model_validate(data)


SHIPPED = rules()


def cny(amount: str) -> int:
    """Minor units of an amount with two decimals (CNY and USD alike)."""
    return r.to_minor(Decimal(amount), "CNY")


def cand(*rows: tuple[Any, ...]):  # type: ignore[no-untyped-def]
    """Candidates: (payment_id, amount, account, name[, currency])."""
    return r.frame("candidates", [(pid, cny(amount), currency[0] if currency else "CNY",
                                   account, name)
                                  for pid, amount, account, name, *currency in rows])


def recent(*rows: tuple[Any, ...]):  # type: ignore[no-untyped-def]
    """Earlier payments: (payment_id, created_at, amount, account[, currency])."""
    return r.frame("recent", [(pid, at, cny(amount), currency[0] if currency else "CNY", account)
                              for pid, at, amount, account, *currency in rows])


def fired(hits: list[r.Hit]) -> list[int]:
    return [h.payment_id for h in hits]


# --- large_single_amount ----------------------------------------------------------------------


def test_large_single_amount_fires_at_the_threshold_itself() -> None:
    hits = r.large_single_amount(cand((1, "5000000.00", A, "x")), SHIPPED.large_single_amount,
                                 currency="CNY")
    assert fired(hits) == [1]
    assert hits[0].details == {"amount": "5,000,000.00 CNY", "threshold": "5,000,000.00 CNY",
                               "account": "****7890"}
    assert A not in hits[0].message and "****7890" in hits[0].message


def test_large_single_amount_is_quiet_a_cent_below_and_in_another_currency() -> None:
    hits = r.large_single_amount(cand((1, "4999999.99", A, "x"), (2, "9000000.00", A, "x", "USD")),
                                 SHIPPED.large_single_amount, currency="CNY")
    assert hits == []


# --- daily_total_per_payee --------------------------------------------------------------------


def test_daily_total_fires_when_the_day_reaches_the_threshold() -> None:
    # 00:00 in Shanghai on the 25th is 16:00 UTC on the 24th: the first moment of the day.
    history = recent((1, datetime(2026, 11, 24, 16, 0, tzinfo=UTC), "6000000.00", A))
    hits = r.daily_total_per_payee(cand((9, "4000000.00", A, "x")), history,
                                   SHIPPED.daily_total_per_payee, currency="CNY",
                                   timezone="Asia/Shanghai", now=NOW)
    assert fired(hits) == [9]
    assert hits[0].details["total"] == "10,000,000.00 CNY"
    assert hits[0].details["day"] == "2026-11-25"


def test_daily_total_is_quiet_below_the_threshold_and_for_yesterday() -> None:
    yesterday_last = datetime(2026, 11, 24, 16, 0, tzinfo=UTC) - US   # 23:59:59.999999 local
    history = recent((1, NOW - timedelta(hours=1), "5999999.99", A),
                     (2, yesterday_last, "8000000.00", A),
                     (3, NOW - timedelta(hours=1), "8000000.00", A, "USD"),
                     (4, NOW - timedelta(hours=1), "8000000.00", B))
    hits = r.daily_total_per_payee(cand((9, "4000000.00", A, "x")), history,
                                   SHIPPED.daily_total_per_payee, currency="CNY",
                                   timezone="Asia/Shanghai", now=NOW)
    assert hits == []


def test_daily_total_inside_one_chunk_stops_the_payment_that_crosses_and_the_later_ones() -> None:
    hits = r.daily_total_per_payee(
        cand((1, "6000000.00", A, "x"), (2, "3000000.00", A, "x"), (3, "1000000.00", A, "x"),
             (4, "9000000.00", B, "y")),
        r.frame("recent"), SHIPPED.daily_total_per_payee, currency="CNY",
        timezone="Asia/Shanghai", now=NOW)
    assert fired(hits) == [3]


# --- new_payee --------------------------------------------------------------------------------


def test_new_payee_fires_for_an_account_never_paid_before() -> None:
    seen = r.frame("accounts_seen", [(B, NOW - timedelta(days=3))])
    hits = r.new_payee(cand((1, "10.00", A, "x"), (2, "20.00", A, "x")), seen,
                       SHIPPED.new_payee, now=NOW)
    assert fired(hits) == [1, 2]
    assert hits[0].message == "first payment to payee account ****7890"


def test_new_payee_is_quiet_for_a_known_account_but_not_for_one_seen_only_now() -> None:
    # Seen a microsecond before: known. Seen at this very moment (an earlier chunk of the
    # same import): still new.
    seen = r.frame("accounts_seen", [(A, NOW - US), (B, NOW)])
    hits = r.new_payee(cand((1, "10.00", A, "x"), (2, "10.00", B, "y")), seen,
                       SHIPPED.new_payee, now=NOW)
    assert fired(hits) == [2]


# --- payee_account_changed --------------------------------------------------------------------


def changed(candidates, accounts_seen, names_seen):  # type: ignore[no-untyped-def]
    return r.payee_account_changed(candidates, r.frame("accounts_seen", accounts_seen),
                                   r.frame("names_seen", names_seen),
                                   SHIPPED.payee_account_changed, now=NOW)


def test_account_changed_fires_for_a_known_name_with_a_new_account() -> None:
    hits = changed(cand((1, "10.00", A, "华信科技")), [],
                   [("华信科技", B, NOW - timedelta(days=90))])
    assert fired(hits) == [1]
    assert hits[0].details["previous_account"] == "****3210"
    assert hits[0].details["payee"] == "华***"
    assert "华信科技" not in hits[0].message


def test_account_changed_window_edge_is_inclusive() -> None:
    edge = NOW - timedelta(days=30)
    hits = changed(cand((1, "10.00", A, "华信科技")), [(A, edge)],
                   [("华信科技", B, NOW - timedelta(days=90)), ("华信科技", A, edge)])
    assert fired(hits) == [1]


def test_account_changed_is_quiet_once_the_account_is_older_than_the_window() -> None:
    old = NOW - timedelta(days=30) - US
    hits = changed(cand((1, "10.00", A, "华信科技")), [(A, old)],
                   [("华信科技", B, NOW - timedelta(days=90)), ("华信科技", A, old)])
    assert hits == []


def test_account_changed_is_quiet_for_a_name_never_paid_elsewhere_and_for_one_import() -> None:
    # Two accounts of one name first seen in the same import: neither is a change of the other.
    hits = changed(cand((1, "10.00", A, "杨磊"), (2, "10.00", B, "杨磊"), (3, "1.00", C, "刘洋")),
                   [], [("刘洋", C, NOW - timedelta(days=400))])
    assert hits == []


def test_account_changed_matches_names_whatever_their_width_case_and_spaces() -> None:
    hits = changed(cand((1, "10.00", A, "abc贸易 公司")), [],
                   [("ＡＢＣ贸易公司", B, NOW - timedelta(days=90))])
    assert fired(hits) == [1]


# --- duplicate_payment ------------------------------------------------------------------------


def duplicates(candidates, history):  # type: ignore[no-untyped-def]
    return r.duplicate_payment(candidates, history, SHIPPED.duplicate_payment, now=NOW)


def test_duplicate_fires_at_the_window_edge() -> None:
    hits = duplicates(cand((9, "1234.56", A, "x")),
                      recent((1, NOW - timedelta(days=7), "1234.56", A)))
    assert fired(hits) == [9]
    assert hits[0].details["duplicate_of"] == 1


def test_duplicate_is_quiet_past_the_window_or_for_another_amount_currency_or_payee() -> None:
    history = recent((1, NOW - timedelta(days=7) - US, "1234.56", A),
                     (2, NOW - timedelta(hours=1), "1234.57", A),
                     (3, NOW - timedelta(hours=1), "1234.56", A, "USD"),
                     (4, NOW - timedelta(hours=1), "1234.56", B))
    assert duplicates(cand((9, "1234.56", A, "x")), history) == []


def test_duplicate_inside_one_chunk_fires_on_the_later_payment_only() -> None:
    hits = duplicates(cand((5, "88.00", A, "x"), (6, "88.00", A, "x"), (7, "88.00", B, "y")),
                      r.frame("recent"))
    assert fired(hits) == [6]
    assert hits[0].details["duplicate_of"] == 5


# --- split_payments ---------------------------------------------------------------------------


def splits(candidates, history):  # type: ignore[no-untyped-def]
    return r.split_payments(candidates, history, SHIPPED.split_payments, currency="CNY", now=NOW)


def test_split_fires_when_small_payments_reach_the_threshold_at_the_window_edge() -> None:
    hits = splits(cand((9, "400000.00", A, "x")),
                  recent((1, NOW - timedelta(hours=24), "600000.00", A)))
    assert fired(hits) == [9]
    assert hits[0].details["payments"] == 2
    assert hits[0].details["total"] == "1,000,000.00 CNY"


def test_split_is_quiet_below_the_threshold_past_the_window_and_across_currencies() -> None:
    history = recent((1, NOW - timedelta(hours=1), "599999.99", A),
                     (2, NOW - timedelta(hours=24) - US, "900000.00", A),
                     (3, NOW - timedelta(hours=1), "900000.00", A, "USD"),
                     # A payment at or above the threshold is no part of a split.
                     (4, NOW - timedelta(hours=1), "1000000.00", A))
    assert splits(cand((9, "400000.00", A, "x")), history) == []


def test_split_counts_only_payments_below_the_threshold() -> None:
    assert splits(cand((9, "1000000.00", A, "x")), r.frame("recent")) == []
    hits = splits(cand((1, "500000.00", A, "x"), (2, "500000.00", A, "x")), r.frame("recent"))
    assert fired(hits) == [2]


# --- blacklist --------------------------------------------------------------------------------


def test_blacklist_fires_on_an_account_or_a_name_however_it_is_written() -> None:
    listed = rules(blacklist={"accounts": ["6222 0212-3456 7890"],
                              "names": ["ＡＢＣ 贸易公司", "黑名单 有限公司"]}).blacklist
    hits = r.blacklist(cand((1, "1.00", A, "someone"), (2, "1.00", B, "abc贸易公司"),
                            (3, "1.00", C, "黑名单有限公司 "), (4, "1.00", C, "白名单有限公司")),
                       listed)
    assert fired(hits) == [1, 2, 3]
    assert [h.details["matched"] for h in hits] == ["account", "name", "name"]
    assert all(A not in h.message for h in hits)


def test_blacklist_is_quiet_when_empty_or_not_matching() -> None:
    assert r.blacklist(cand((1, "1.00", A, "abc")), SHIPPED.blacklist) == []
    listed = rules(blacklist={"accounts": [B], "names": ["abcd"]}).blacklist
    assert r.blacklist(cand((1, "1.00", A, "abc")), listed) == []


# --- out_of_hours -----------------------------------------------------------------------------


def at_local(hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 11, 25, hh, mm, ss, us, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize("moment", [at_local(7, 59, 59, 999999), at_local(20, 0), at_local(23, 30)])
def test_out_of_hours_fires_before_start_and_from_end_on(moment: datetime) -> None:
    hits = r.out_of_hours(cand((1, "1.00", A, "x")), SHIPPED.out_of_hours, now=moment,
                          doing="approved")
    assert fired(hits) == [1]
    assert hits[0].message.startswith("approved at 2026-11-2")
    assert hits[0].details["business_hours"] == "08:00-20:00 Asia/Shanghai"


@pytest.mark.parametrize("moment", [at_local(8, 0), at_local(19, 59, 59, 999999)])
def test_out_of_hours_is_quiet_inside_business_hours(moment: datetime) -> None:
    assert r.out_of_hours(cand((1, "1.00", A, "x")), SHIPPED.out_of_hours, now=moment) == []


# --- repeated_failures ------------------------------------------------------------------------


def failures(*rows: tuple[str, datetime]):  # type: ignore[no-untyped-def]
    return r.frame("failures", list(rows))


def test_repeated_failures_fires_at_the_count_with_the_window_edge_inside() -> None:
    history = failures((A, NOW - timedelta(hours=24)), (A, NOW - timedelta(hours=2)), (A, NOW))
    hits = r.repeated_failures(cand((1, "1.00", A, "x")), history, SHIPPED.repeated_failures,
                               now=NOW)
    assert fired(hits) == [1]
    assert hits[0].details["failures"] == 3


def test_repeated_failures_is_quiet_below_the_count_past_the_window_or_for_another_payee() -> None:
    history = failures((A, NOW - timedelta(hours=24) - US), (A, NOW - timedelta(hours=2)),
                       (A, NOW), (B, NOW), (B, NOW), (B, NOW))
    assert r.repeated_failures(cand((1, "1.00", A, "x")), history, SHIPPED.repeated_failures,
                               now=NOW) == []


# --- the screen: stages, disabled rules, verdicts ---------------------------------------------


def everything() -> Inputs:
    """One candidate that every payment rule fires on (at 23:00 local)."""
    return Inputs(
        candidates=cand((9, "6000000.00", A, "华信科技"), (10, "500000.00", C, "x"),
                        (11, "500000.00", C, "x")),
        recent=recent((1, NOW - timedelta(hours=1), "6000000.00", A),
                      (2, NOW - timedelta(hours=1), "500000.00", C)),
        accounts_seen=r.frame("accounts_seen", []),
        names_seen=r.frame("names_seen", [("华信科技", B, NOW - timedelta(days=90))]),
        failures=failures((A, NOW), (A, NOW), (A, NOW)),
    )


LATE = at_local(23, 0)
LISTED = {"blacklist": {"accounts": [A]}}


def test_every_intake_rule_fires_on_the_kitchen_sink() -> None:
    hits = screen(everything(), rules(**LISTED), now=LATE, stage=Stage.INTAKE)
    assert {h.rule for h in hits} == set(RULES[Stage.INTAKE])


@pytest.mark.parametrize("rule", RULES[Stage.INTAKE])
def test_a_disabled_rule_stays_quiet(rule: str) -> None:
    off = rules(**{**LISTED, rule: {**LISTED.get(rule, {}), "enabled": False}})
    hits = screen(everything(), off, now=LATE, stage=Stage.INTAKE)
    assert rule not in {h.rule for h in hits}
    assert {h.rule for h in hits} == set(RULES[Stage.INTAKE]) - {rule}


def test_approval_and_failure_stages_run_only_their_rules() -> None:
    assert {h.rule for h in screen(everything(), rules(**LISTED), now=LATE,
                                   stage=Stage.APPROVAL)} == {"out_of_hours"}
    assert {h.rule for h in screen(everything(), rules(**LISTED), now=LATE,
                                   stage=Stage.FAILURE)} == {"repeated_failures"}


def test_verdicts_take_the_strongest_action_and_name_the_freeze_target() -> None:
    custom = rules(repeated_failures={"freeze": "account"}, **LISTED)
    hits = screen(everything(), custom, now=LATE, stage=Stage.INTAKE)
    decided = verdicts(hits, custom)
    assert decided[9].action == "freeze"
    assert decided[9].freezes == (("blacklist", "payment"), ("repeated_failures", "account"))
    assert decided[11].action == "hold" and decided[11].stops     # duplicate of 10
    quiet = verdicts([h for h in hits if h.rule in ("new_payee", "split_payments")], custom)
    assert {v.action for v in quiet.values()} == {"alert"}
    assert not any(v.stops for v in quiet.values())


def test_needs_loads_only_what_enabled_rules_read() -> None:
    everything_off = rules(**{name: {"enabled": False} for name in RULES[Stage.INTAKE]})
    assert needs(everything_off, Stage.INTAKE, NOW) == type(needs(SHIPPED, Stage.INTAKE, NOW))()
    shipped = needs(SHIPPED, Stage.INTAKE, NOW)
    assert shipped.recent_since == NOW - timedelta(days=7)
    assert shipped.seen and shipped.names
    assert shipped.failures_since == NOW - timedelta(hours=24)
    assert needs(SHIPPED, Stage.APPROVAL, NOW).recent_since is None


# --- names, and the rules' config -------------------------------------------------------------


def test_names_and_accounts_are_normalised() -> None:
    assert r.normalise_name(" ＡＢＣ\u3000贸易 公司 ") == "abc贸易公司"
    assert r.normalise_account("6222 0212-3456 7890") == "6222021234567890"


def test_a_freeze_target_needs_the_freeze_action() -> None:
    with pytest.raises(ValidationError, match='only read with action = "freeze"'):
        rules(large_single_amount={"freeze": "account"})
    assert rules(blacklist={"freeze": "account"}).blacklist.freeze_target == "account"
    assert SHIPPED.blacklist.freeze_target == "payment"


def test_a_stage_is_idle_only_when_no_enabled_rule_could_fire() -> None:
    assert idle(SHIPPED, Stage.APPROVAL, at_local(10, 0))
    assert not idle(SHIPPED, Stage.APPROVAL, at_local(21, 0))
    assert not idle(SHIPPED, Stage.INTAKE, at_local(10, 0))
    assert idle(rules(out_of_hours={"enabled": False}), Stage.APPROVAL, at_local(21, 0))
