from __future__ import annotations

from datetime import date

import pytest

from yinqi.errors import IllegalTransition
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.states import (
    BOOKED,
    FINAL,
    IN_FLIGHT,
    NEVER_RESEND,
    TRANSITIONS,
    PaymentState as S,
    can_transition,
    check_transition,
)

HAPPY_PATH = [S.REQUESTED, S.PENDING_APPROVAL, S.APPROVED, S.BATCHED, S.SIGNED, S.SUBMITTING,
              S.ACCEPTED, S.SETTLED, S.RECEIPTED, S.RECONCILED]

LEGAL = list(zip(HAPPY_PATH, HAPPY_PATH[1:], strict=False)) + [
    (S.REQUESTED, S.HELD),
    (S.HELD, S.PENDING_APPROVAL),
    (S.PENDING_APPROVAL, S.REJECTED),
    (S.SUBMITTING, S.UNKNOWN),
    (S.UNKNOWN, S.SUBMITTING),
    (S.UNKNOWN, S.SETTLED),
    (S.UNKNOWN, S.FAILED),
    (S.ACCEPTED, S.FAILED),
    (S.SETTLED, S.RETURNED),
    (S.RECONCILED, S.RETURNED),
    (S.FAILED, S.APPROVED),
    (S.FAILED, S.PENDING_APPROVAL),
    (S.SIGNED, S.CANCELLED),
]

ILLEGAL = [
    (S.REQUESTED, S.APPROVED),         # skipping approval
    (S.PENDING_APPROVAL, S.BATCHED),   # skipping the policy
    (S.HELD, S.APPROVED),              # a risk hold never approves by itself
    (S.REQUESTED, S.SUBMITTING),
    (S.SUBMITTING, S.CANCELLED),       # the bytes may have left
    (S.UNKNOWN, S.CANCELLED),
    (S.UNKNOWN, S.APPROVED),           # would allow a second message for an unknown payment
    (S.ACCEPTED, S.SUBMITTING),
    (S.SETTLED, S.FAILED),
    (S.SETTLED, S.APPROVED),
    (S.RETURNED, S.APPROVED),
    (S.REJECTED, S.PENDING_APPROVAL),
    (S.CANCELLED, S.REQUESTED),
    (S.RECONCILED, S.SETTLED),
]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions(current: S, target: S) -> None:
    assert check_transition(current, target) is target
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transitions_raise_with_a_readable_message(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition) as err:
        check_transition(current, target, subject="payment E2E-1")
    message = str(err.value)
    assert f"from {current} to {target}" in message
    assert "payment E2E-1" in message
    assert "\n" not in message


def test_every_state_has_a_row_and_targets_are_states() -> None:
    assert set(TRANSITIONS) == set(S)
    for targets in TRANSITIONS.values():
        assert targets <= set(S)


def test_terminal_states_have_no_way_out() -> None:
    for state in (S.REJECTED, S.CANCELLED, S.RETURNED):
        assert TRANSITIONS[state] == frozenset()


def test_nothing_that_may_have_reached_the_bank_can_be_cancelled_or_reapproved() -> None:
    for state in IN_FLIGHT | BOOKED:
        assert S.CANCELLED not in TRANSITIONS[state]
        assert S.APPROVED not in TRANSITIONS[state]
        assert S.PENDING_APPROVAL not in TRANSITIONS[state]
    assert NEVER_RESEND.isdisjoint({S.FAILED, S.APPROVED})


def test_every_state_is_reachable_from_requested() -> None:
    seen, frontier = {S.REQUESTED}, [S.REQUESTED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(S)


def test_final_states_are_exactly_the_polling_stops() -> None:
    assert FINAL.isdisjoint(IN_FLIGHT)
    assert BOOKED <= FINAL


def test_unknown_state_names_are_refused() -> None:
    with pytest.raises(IllegalTransition, match="unknown payment state"):
        check_transition("PAID", S.SETTLED)


def test_payment_records_its_history_and_refuses_illegal_moves() -> None:
    p = Payment(end_to_end_id="E2E-1", debtor_account="1202021209900123456",
                creditor_name="杨磊", creditor_account="49505976717236739",
                amount=Money.of("41728.21", "CNY"), purpose="11月工资",
                category=Category.PAYROLL, maker="wu.maker", requested_date=date(2026, 11, 25))
    p.move_to(S.PENDING_APPROVAL)
    with pytest.raises(IllegalTransition):
        p.move_to(S.SUBMITTING)
    assert p.state is S.PENDING_APPROVAL
    p.move_to(S.REJECTED, "duplicate invoice")
    assert p.history == [(S.REQUESTED, S.PENDING_APPROVAL, None),
                         (S.PENDING_APPROVAL, S.REJECTED, "duplicate invoice")]
