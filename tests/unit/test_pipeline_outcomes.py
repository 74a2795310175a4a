"""What the bank's word means for a payment and its batch; poll pacing; rerun IDs.

Pure rules (yinqi.pipeline.outcomes, yinqi.pipeline.reruns.rerun_end_to_end_id): no database,
no Prefect, no bank.
"""

from __future__ import annotations

import random
from datetime import timedelta
from statistics import mean

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yinqi.errors import InvalidValue
from yinqi.payments import BatchState as B
from yinqi.pipeline.outcomes import (
    IN_PROGRESS,
    REJECTED,
    SETTLED,
    batch_state_for,
    next_poll_delay,
    target_for,
)
from yinqi.pipeline.reruns import _original, rerun_end_to_end_id
from yinqi.states import BOOKED, FINAL, IN_FLIGHT, PaymentState as S, can_transition
from yinqi.vouchers import end_to_end_id_for

ALL_STATUSES = sorted(IN_PROGRESS | SETTLED | REJECTED)
#: Payments the bank cannot know yet (or never will): nothing it says moves them.
NOT_SENT = (S.REQUESTED, S.PENDING_APPROVAL, S.APPROVED, S.BATCHED, S.SIGNED, S.HELD,
            S.REJECTED, S.CANCELLED)


# --- target_for: one report -------------------------------------------------------------------


@pytest.mark.parametrize("current", [S.SUBMITTING, S.UNKNOWN, S.ACCEPTED])
@pytest.mark.parametrize("status", ["ACSC", "ACCC"])
def test_a_settlement_settles_whatever_we_knew_in_flight(current: S, status: str) -> None:
    assert target_for(current, status) is S.SETTLED


@pytest.mark.parametrize("current", [S.SUBMITTING, S.UNKNOWN])
@pytest.mark.parametrize("status", sorted(IN_PROGRESS))
def test_a_progress_report_means_the_bank_has_it(current: S, status: str) -> None:
    assert target_for(current, status) is S.ACCEPTED


@pytest.mark.parametrize("status", sorted(IN_PROGRESS))
def test_a_second_progress_report_changes_nothing(status: str) -> None:
    assert target_for(S.ACCEPTED, status) is None


@pytest.mark.parametrize("current", [S.SUBMITTING, S.UNKNOWN, S.ACCEPTED])
@pytest.mark.parametrize("status", ["RJCT", "CANC"])
def test_a_rejection_before_settlement_is_a_failure(current: S, status: str) -> None:
    assert target_for(current, status) is S.FAILED


@pytest.mark.parametrize("current", sorted(BOOKED))
def test_a_rejection_after_settlement_is_a_return(current: S) -> None:
    assert target_for(current, "RJCT") is S.RETURNED
    assert can_transition(current, S.RETURNED)


@pytest.mark.parametrize("current", sorted(BOOKED))
@pytest.mark.parametrize("status", sorted(IN_PROGRESS | SETTLED))
def test_a_late_or_repeated_report_never_moves_a_booked_payment_back(current: S,
                                                                   status: str) -> None:
    # ACSP after ACSC (out of order), or ACSC twice (duplicate): nothing changes.
    assert target_for(current, status) is None


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_nothing_the_bank_says_reopens_a_failure_or_a_return(status: str) -> None:
    assert target_for(S.FAILED, status) is None
    assert target_for(S.RETURNED, status) is None


@pytest.mark.parametrize("current", NOT_SENT)
@pytest.mark.parametrize("status", ALL_STATUSES)
def test_a_report_about_a_payment_not_sent_moves_nothing(current: S, status: str) -> None:
    assert target_for(current, status) is None


@pytest.mark.parametrize("status", [None, "", "ACSX", "acsc", "NOTFOUND"])
@pytest.mark.parametrize("current", sorted(IN_FLIGHT | BOOKED))
def test_a_status_nobody_knows_moves_nothing(current: S, status: str | None) -> None:
    assert target_for(current, status) is None


def test_states_may_be_given_as_their_names() -> None:
    assert target_for("SUBMITTING", "ACSP") is S.ACCEPTED
    assert target_for("RECEIPTED", "RJCT") is S.RETURNED


@given(st.sampled_from(list(S)), st.sampled_from([*ALL_STATUSES, None, "XXXX"]))
def test_every_move_is_a_legal_transition(current: S, status: str | None) -> None:
    target = target_for(current, status)
    assert target is None or can_transition(current, target)


@given(st.lists(st.sampled_from(ALL_STATUSES), min_size=1, max_size=12))
def test_reports_in_any_order_or_repeated_only_move_forward(statuses: list[str]) -> None:
    """Applying a stream of reports (shuffled, duplicated) never leaves a final state."""
    state = S.SUBMITTING
    for status in statuses:
        target = target_for(state, status)
        if target is None:
            continue
        assert state not in FINAL or (state in BOOKED and target is S.RETURNED)
        state = target
    settled_first = next((s for s in statuses if s in SETTLED | REJECTED), None)
    if settled_first in SETTLED:
        # Once settled, only a return (a later RJCT/CANC) can change it.
        assert state in (S.SETTLED, S.RETURNED)
    elif settled_first in REJECTED:
        assert state is S.FAILED
    else:
        assert state is S.ACCEPTED


def test_out_of_order_acsp_after_acsc_and_a_duplicate_acsc() -> None:
    state = S.SUBMITTING
    for status in ("ACSP", "ACSC", "ACSP", "ACSC", "ACTC"):
        state = target_for(state, status) or state
    assert state is S.SETTLED
    assert target_for(state, "RJCT") is S.RETURNED


# --- batch_state_for ------------------------------------------------------------------------


@pytest.mark.parametrize(("states", "refused", "expected"), [
    ([S.FAILED, S.FAILED], True, B.REJECTED),
    ([S.FAILED, S.SETTLED], True, B.COMPLETED),     # a refusal that spares some is not one
    ([S.FAILED, S.FAILED], False, B.COMPLETED),     # each rejected on its own: done
    ([S.UNKNOWN, S.SUBMITTING, S.ACCEPTED], False, B.UNKNOWN),
    ([S.UNKNOWN, S.SETTLED], False, B.UNKNOWN),
    ([S.SUBMITTING, S.ACCEPTED], False, B.SUBMITTING),
    ([S.ACCEPTED, S.ACCEPTED], False, B.ACCEPTED),
    ([S.ACCEPTED, S.SETTLED], False, B.PARTIAL),
    ([S.ACCEPTED, S.FAILED], False, B.PARTIAL),
    ([S.SETTLED, S.FAILED, S.RECEIPTED], False, B.COMPLETED),
    ([S.RECEIPTED, S.RETURNED, S.RECONCILED], False, B.COMPLETED),
    (["SETTLED", "ACCEPTED"], False, B.PARTIAL),
])
def test_a_batch_state_from_its_payments(states: list[S | str], refused: bool,
                                         expected: B) -> None:
    assert batch_state_for(states, refused=refused) is expected
    assert batch_state_for(iter(states), refused=refused) is expected


@given(st.lists(st.sampled_from(sorted(IN_FLIGHT | FINAL)), min_size=1, max_size=20),
       st.booleans())
def test_a_batch_is_finished_exactly_when_no_payment_is_in_flight(states: list[S],
                                                                  refused: bool) -> None:
    done = batch_state_for(states, refused=refused) in (B.COMPLETED, B.REJECTED)
    assert done == (not set(states) & IN_FLIGHT)


# --- next_poll_delay ------------------------------------------------------------------------


def _delays(n: int, *, base: float = 1.0, ceiling: float = 300.0, k: int = 400,
            seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [next_poll_delay(n, rng, base=base, ceiling=ceiling).total_seconds()
            for _ in range(k)]


def test_the_delay_grows_with_the_number_of_questions_asked() -> None:
    means = [mean(_delays(n)) for n in range(0, 9)]   # 2**8 = 256 < 300: still growing
    assert means == sorted(means)
    assert means[-1] > 20 * means[0]
    tops = [max(_delays(n)) for n in range(0, 9)]
    assert tops == sorted(tops)


@pytest.mark.parametrize("n", [0, 1, 3, 8, 9, 12, 20, 21, 64, 10_000])
def test_the_delay_stays_between_half_the_base_and_the_ceiling(n: int) -> None:
    got = _delays(n, base=1.0, ceiling=300.0)
    assert all(0.5 <= d <= min(300.0, 2.0 ** min(n, 20)) for d in got)


def test_the_delay_is_jittered_so_workers_do_not_ask_in_step() -> None:
    late = _delays(30, k=200)
    assert len(set(late)) > 150                      # not one fixed value
    assert max(late) <= 300.0 and max(late) > 250.0  # spread up to the ceiling
    assert min(late) < 100.0
    # Two workers with their own generators do not pick the same moments.
    assert _delays(5, seed=1, k=20) != _delays(5, seed=2, k=20)


def test_the_same_generator_gives_the_same_delays() -> None:
    assert _delays(6, seed=3, k=30) == _delays(6, seed=3, k=30)


@given(st.integers(min_value=0, max_value=10_000),
       st.floats(min_value=0.01, max_value=1000.0),
       st.floats(min_value=0.01, max_value=1000.0),
       st.integers(min_value=0, max_value=2**32))
def test_the_ceiling_holds_for_any_pacing(n: int, base: float, ceiling: float,
                                          seed: int) -> None:
    delay = next_poll_delay(n, random.Random(seed), base=base, ceiling=ceiling)
    assert isinstance(delay, timedelta)
    assert timedelta(0) < delay <= timedelta(seconds=ceiling)


# --- rerun_end_to_end_id --------------------------------------------------------------------

ORIGINALS = [end_to_end_id_for("erp", "FK2026000001"), end_to_end_id_for("oa", "X-1"),
             "E2E-1", "A" * 35, "B" * 33]


@pytest.mark.parametrize("original", ORIGINALS)
def test_the_first_round_keeps_the_original_id(original: str) -> None:
    assert rerun_end_to_end_id(original, 1) == original
    assert rerun_end_to_end_id(original, 0) == original


@pytest.mark.parametrize("original", ORIGINALS)
def test_rerun_ids_fit_the_field_differ_per_round_and_are_stable(original: str) -> None:
    ids = [rerun_end_to_end_id(original, n) for n in range(1, 100)]
    assert all(len(i) <= 35 for i in ids)
    assert len(set(ids)) == 99                            # one per round, original included
    assert ids == [rerun_end_to_end_id(original, n) for n in range(1, 100)]   # stable
    assert all(i.isascii() and i.isalnum() for i in ids[1:] if original.isalnum())


def test_a_yinqi_id_gets_a_readable_round_suffix() -> None:
    original = end_to_end_id_for("erp", "FK2026000001")
    assert len(original) == 34
    second = rerun_end_to_end_id(original, 2)
    assert second == original[:32] + "R02" and len(second) == 35
    assert rerun_end_to_end_id(original, 42).endswith("R42")
    # A rerun of a rerun counts from the original, as reruns.rerun_batch does.
    assert _original(second) == original[:32]
    assert rerun_end_to_end_id(_original(second), 3) == rerun_end_to_end_id(original, 3)


def test_rerun_ids_of_different_payments_stay_different() -> None:
    originals = [end_to_end_id_for("erp", f"FK{i:010d}") for i in range(500)]
    for n in (1, 2, 17):
        assert len({rerun_end_to_end_id(o, n) for o in originals}) == 500


def test_the_hundredth_send_is_refused() -> None:
    original = end_to_end_id_for("erp", "FK2026000001")
    assert rerun_end_to_end_id(original, 99).endswith("R99")
    with pytest.raises(InvalidValue, match="no further rerun"):
        rerun_end_to_end_id(original, 100)
