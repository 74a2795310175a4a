"""The approval gate's pure rules: tiers, order of levels, maker-checker, roles, one-time codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.policy import ApprovalPolicy
from yinqi.approval import (
    Case,
    Fill,
    Given,
    Reason,
    Refusal,
    check_user,
    decide,
    judge,
    levels_for,
    next_level,
    verify_code,
)
from yinqi.approvals import Decision, Role, User
from yinqi.money import Money

POLICY = ApprovalPolicy.model_validate({
    "currency": "CNY",
    "maker_checker": True,
    "distinct_approvers_per_level": True,
    "escalate_after_hours": 24,
    "tiers": [
        {"up_to": "50000.00", "levels": ["approver"]},
        {"up_to": "1000000.00", "levels": ["approver", "finance_manager"]},
        {"levels": ["approver", "finance_manager", "cfo"]},
    ],
    "categories": {"payroll": {"tiers": [{"levels": ["approver", "finance_manager"]}]}},
})

A, FM, CFO = "approver", "finance_manager", "cfo"


def user(name: str, *roles: Role, active: bool = True) -> User:
    return User(name, name, frozenset(roles), active)


WU = user("wu.maker", Role.MAKER)
LI = user("li.approver", Role.APPROVER)
SUN = user("sun.approver", Role.APPROVER)
CHEN = user("chen.manager", Role.APPROVER, Role.FINANCE_MANAGER)
WANG = user("wang.cfo", Role.CFO)
ZHAO = user("zhao.auditor", Role.AUDITOR)


def case(amount: str = "1500000.00", *given: Given, category: str = "supplier",
         currency: str = "CNY", maker: str = "wu.maker",
         state: str = "PENDING_APPROVAL") -> Case:
    return Case(label="E2E-1", amount=Money.of(amount, currency), category=category,
                maker=maker, state=state, given=given)


def g(level: int, role: str, approver: str) -> Given:
    return Given(level, role, approver)


# --- tiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "category", "levels"), [
    ("0.01", "supplier", (A,)),
    ("49999.99", "supplier", (A,)),
    ("50000.00", "supplier", (A, FM)),
    ("999999.99", "supplier", (A, FM)),
    ("1000000.00", "supplier", (A, FM, CFO)),
    ("49999.99", "expense", (A,)),
    ("1000000.00", "expense", (A, FM, CFO)),
    # Payroll has its own single tier: finance checks it at any amount, never the CFO.
    ("100.00", "payroll", (A, FM)),
    ("49999.99", "payroll", (A, FM)),
    ("5000000.00", "payroll", (A, FM)),
])
def test_tiers(amount: str, category: str, levels: tuple[str, ...]) -> None:
    assert levels_for(POLICY, case(amount, category=category)) == levels


@pytest.mark.parametrize(("category", "currency", "code"), [
    ("supplier", "USD", Reason.POLICY_CURRENCY),
    ("bonus", "CNY", Reason.POLICY_CATEGORY),
])
def test_what_the_policy_cannot_rank_is_refused(category: str, currency: str, code: Reason) -> None:
    refused = judge(POLICY, case("100.00", category=category, currency=currency), LI)
    assert isinstance(refused, Refusal) and refused.code is code
    assert "E2E-1" in refused.message


# --- levels in order, roles, one level per person ---------------------------------------------


@pytest.mark.parametrize(("amount", "given", "candidate", "expected"), [
    # Level 1 first, whoever else is waiting.
    ("1500000.00", (), LI, Fill(1, A, False)),
    ("1500000.00", (), WANG, Reason.ROLE_MISSING),
    ("1500000.00", (g(1, A, "li.approver"),), CHEN, Fill(2, FM, False)),
    ("1500000.00", (g(1, A, "li.approver"),), SUN, Reason.ROLE_MISSING),
    ("1500000.00", (g(1, A, "li.approver"), g(2, FM, "chen.manager")), WANG, Fill(3, CFO, True)),
    ("1500000.00", (g(1, A, "li.approver"), g(2, FM, "chen.manager")), SUN, Reason.ROLE_MISSING),
    ("49999.99", (), SUN, Fill(1, A, True)),
    ("50000.00", (), SUN, Fill(1, A, False)),
    # A multi-role user fills whichever role the next level needs...
    ("500000.00", (), CHEN, Fill(1, A, False)),
    ("500000.00", (g(1, A, "sun.approver"),), CHEN, Fill(2, FM, True)),
    # ...but one level per payment only.
    ("500000.00", (g(1, A, "chen.manager"),), CHEN, Reason.ALREADY_APPROVED_BY_USER),
    ("1500000.00", (g(1, A, "li.approver"),), LI, Reason.ALREADY_APPROVED_BY_USER),
    # Nothing left to fill.
    ("10000.00", (g(1, A, "li.approver"),), SUN, Reason.ALREADY_COMPLETE),
    # Roles that never approve.
    ("100.00", (), ZHAO, Reason.ROLE_MISSING),
    ("100.00", (), user("liu.treasurer", Role.TREASURER), Reason.ROLE_MISSING),
    ("100.00", (), user("admin", Role.ADMIN), Reason.ROLE_MISSING),
])
def test_levels_are_filled_in_order_by_distinct_people_with_the_role(
    amount: str, given: tuple[Given, ...], candidate: User, expected: Fill | Reason
) -> None:
    verdict = judge(POLICY, case(amount, *given), candidate)
    if isinstance(expected, Fill):
        assert verdict == expected
    else:
        assert isinstance(verdict, Refusal) and verdict.code is expected, verdict


def test_role_missing_names_the_role_and_the_level() -> None:
    verdict = judge(POLICY, case("500000.00", g(1, A, "sun.approver")), LI)
    assert verdict == Refusal(
        Reason.ROLE_MISSING,
        "li.approver lacks the finance_manager role needed for level 2 of payment E2E-1")


@pytest.mark.parametrize("maker", [WU, user("sun.approver", Role.APPROVER)])
def test_the_maker_never_approves_even_with_the_role(maker: User) -> None:
    verdict = judge(POLICY, case("100.00", maker=maker.username), maker)
    assert verdict == Refusal(Reason.MAKER_CANNOT_APPROVE,
                              f"{maker.username} entered payment E2E-1 and cannot approve it")


def test_the_maker_never_rejects_either() -> None:
    sun = user("sun.approver", Role.APPROVER)
    verdict = judge(POLICY, case("100.00", maker="sun.approver"), sun, Decision.REJECTED)
    assert isinstance(verdict, Refusal) and verdict.message.endswith("cannot reject it")


def test_maker_checker_can_be_switched_off_by_policy() -> None:
    lax = POLICY.model_copy(update={"maker_checker": False})
    sun = user("sun.approver", Role.APPROVER)
    assert judge(lax, case("100.00", maker="sun.approver"), sun) == Fill(1, A, True)


@pytest.mark.parametrize("state", ["REQUESTED", "APPROVED", "REJECTED", "HELD", "CANCELLED"])
def test_only_pending_payments_are_decided(state: str) -> None:
    verdict = judge(POLICY, case("100.00", state=state), LI)
    assert isinstance(verdict, Refusal) and verdict.code is Reason.NOT_PENDING
    assert state in verdict.message


def test_a_rejection_is_judged_like_an_approval_of_the_next_level() -> None:
    assert judge(POLICY, case("500000.00", g(1, A, "li.approver")), CHEN,
                 Decision.REJECTED) == Fill(2, FM, True)
    refused = judge(POLICY, case("500000.00", g(1, A, "li.approver")), SUN, Decision.REJECTED)
    assert isinstance(refused, Refusal) and refused.code is Reason.ROLE_MISSING


def test_decide_takes_a_level_list_without_a_policy() -> None:
    assert decide(case("1.00"), ("cfo", "approver"), WANG) == Fill(1, CFO, False)
    assert decide(case("1.00", g(1, CFO, "wang.cfo")), ("cfo", "approver"), LI) == Fill(2, A, True)


def test_next_level_is_the_lowest_unfilled() -> None:
    assert next_level((A, FM, CFO), ()) == 1
    assert next_level((A, FM, CFO), (g(1, A, "x"),)) == 2
    assert next_level((A, FM, CFO), (g(2, FM, "y"),)) == 1
    assert next_level((A,), (g(1, A, "x"),)) is None


# --- the person -------------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_inactive_and_locked_users_are_refused_first() -> None:
    gone = user("li.approver", Role.APPROVER, active=False)
    refused = judge(POLICY, case("100.00"), gone)
    assert isinstance(refused, Refusal) and refused.code is Reason.USER_INACTIVE
    locked = judge(POLICY, case("100.00"), LI, locked_until=NOW + timedelta(minutes=3), now=NOW)
    assert isinstance(locked, Refusal) and locked.code is Reason.USER_LOCKED
    assert "2026-11-25 09:03:00 UTC" in locked.message
    # Even the maker check comes after: a locked person learns nothing about the payment.
    locked_maker = judge(POLICY, case("100.00", maker="li.approver"), LI,
                         locked_until=NOW + timedelta(minutes=3), now=NOW)
    assert isinstance(locked_maker, Refusal) and locked_maker.code is Reason.USER_LOCKED


def test_an_expired_lock_no_longer_refuses() -> None:
    assert check_user(LI, locked_until=NOW - timedelta(seconds=1), now=NOW) is None
    assert check_user(LI, locked_until=NOW, now=NOW) is None


# --- one-time codes ---------------------------------------------------------------------------

# Fixed, so every code below is the same on every run (all five neighbouring codes differ).
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code_at(moment: datetime, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(moment)


def test_the_current_code_returns_its_time_step() -> None:
    assert verify_code(SECRET, code_at(NOW), NOW) == int(NOW.timestamp()) // 30


@pytest.mark.parametrize(("offset", "accepted"), [
    (-60, False), (-30, True), (0, True), (30, True), (60, False),
])
def test_one_step_of_clock_drift_is_tolerated(offset: int, accepted: bool) -> None:
    shown = NOW + timedelta(seconds=offset)  # what the phone showed
    step = verify_code(SECRET, code_at(shown), NOW)
    assert step == (int(shown.timestamp()) // 30 if accepted else None)


def test_malformed_and_wrong_codes_are_refused() -> None:
    right = code_at(NOW)
    assert right == "092969"
    for bad in ("000000", "092968", "", right[:5], right + "0", "abcdef", "０９２９６９",
                f"-{right[1:]}"):
        assert verify_code(SECRET, bad, NOW) is None, bad


def test_spaces_as_an_authenticator_shows_them_are_ignored() -> None:
    right = code_at(NOW)
    assert verify_code(SECRET, f"{right[:3]} {right[3:]}", NOW) is not None


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_code(SECRET, "123456", NOW.replace(tzinfo=None))


# --- whatever order people try in -------------------------------------------------------------

# One person holding every approving role still fills one level per payment.
PEOPLE = (WU, LI, SUN, CHEN, WANG, ZHAO, user("ma.all", Role.APPROVER, Role.FINANCE_MANAGER, Role.CFO))


@given(
    amount=st.sampled_from(["49999.99", "50000.00", "999999.99", "1000000.00", "7.00"]),
    category=st.sampled_from(["payroll", "supplier", "expense"]),
    attempts=st.lists(st.sampled_from(PEOPLE), max_size=12),
)
def test_no_order_of_attempts_breaks_the_rules(
    amount: str, category: str, attempts: list[User]
) -> None:
    current = case(amount, category=category)
    levels = levels_for(POLICY, current)
    assert not isinstance(levels, Refusal)
    for person in attempts:
        verdict = judge(POLICY, current, person)
        if isinstance(verdict, Fill):
            current = replace(current, given=(*current.given,
                                              Given(verdict.level, verdict.role, person.username)))
    approvers = [x.approver for x in current.given]
    assert [x.level for x in current.given] == list(range(1, len(current.given) + 1))
    assert len(set(approvers)) == len(approvers) <= len(levels)
    assert "wu.maker" not in approvers
    for x in current.given:
        assert x.role == levels[x.level - 1]
        assert next(p for p in PEOPLE if p.username == x.approver).has_role(x.role)
