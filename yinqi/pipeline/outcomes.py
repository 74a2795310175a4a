"""What a bank's word means for a payment and its batch: pure rules, no I/O.

The bank speaks ISO 20022 transaction statuses (the direct-connect dialect is mapped onto them
by its connector). Reports may come twice or out of order, so a report only ever moves a
payment forward: an ``ACSP`` arriving after ``ACSC`` changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import timedelta

from yinqi.payments import BatchState
from yinqi.states import BOOKED, FINAL, IN_FLIGHT, PaymentState

S = PaymentState

#: Statuses that say the bank has the payment and is still working on it.
IN_PROGRESS = frozenset({"RCVD", "ACTC", "ACCP", "ACSP", "ACWC", "ACWP", "PDNG", "PART"})
SETTLED = frozenset({"ACSC", "ACCC"})
REJECTED = frozenset({"RJCT", "CANC"})


def target_for(current: PaymentState | str, tx_status: str | None) -> PaymentState | None:
    """The state a payment in ``current`` moves to on ``tx_status``; None if it stays.

    A rejection of a payment that already settled is a return (退票): the money came back.
    """
    cur = PaymentState(current)
    if tx_status in SETTLED:
        return S.SETTLED if cur in IN_FLIGHT else None
    if tx_status in REJECTED:
        if cur in IN_FLIGHT:
            return S.FAILED
        if cur in BOOKED:
            return S.RETURNED
        return None
    if tx_status in IN_PROGRESS:
        return S.ACCEPTED if cur in (S.SUBMITTING, S.UNKNOWN) else None
    return None


def batch_state_for(states: Iterable[PaymentState | str], *, refused: bool = False) -> BatchState:
    """A batch's state from its payments': done when every payment has the bank's last word."""
    seen = {PaymentState(s) for s in states}
    if refused and seen <= {S.FAILED}:
        return BatchState.REJECTED
    if S.UNKNOWN in seen:
        return BatchState.UNKNOWN
    if S.SUBMITTING in seen:
        return BatchState.SUBMITTING
    if seen & IN_FLIGHT:
        return BatchState.PARTIAL if seen & FINAL else BatchState.ACCEPTED
    return BatchState.COMPLETED


def next_poll_delay(poll_count: int, rng: random.Random, *, base: float = 1.0,
                    ceiling: float = 300.0) -> timedelta:
    """Exponential back-off with full jitter: asks often at first, then rarely, never in step
    with other workers."""
    cap = min(ceiling, base * (2 ** min(poll_count, 20)))
    return timedelta(seconds=min(ceiling, max(base / 2, rng.uniform(0, cap))))
