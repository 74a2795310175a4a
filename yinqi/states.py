"""The payment's life as a state machine (design brief, "The payment's life").

The table below is the only place that says which move is legal. Everything that changes a
payment's state goes through :func:`check_transition`, so an illegal move is refused the same
way in the domain, the store and the flows.
"""

from __future__ import annotations

from enum import StrEnum

from yinqi.errors import IllegalTransition


class PaymentState(StrEnum):
    REQUESTED = "REQUESTED"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    BATCHED = "BATCHED"
    SIGNED = "SIGNED"
    SUBMITTING = "SUBMITTING"
    ACCEPTED = "ACCEPTED"
    SETTLED = "SETTLED"
    RECEIPTED = "RECEIPTED"
    RECONCILED = "RECONCILED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    HELD = "HELD"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    RETURNED = "RETURNED"


S = PaymentState

TRANSITIONS: dict[PaymentState, frozenset[PaymentState]] = {
    S.REQUESTED: frozenset({S.PENDING_APPROVAL, S.HELD, S.CANCELLED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.HELD}),
    # A risk hold is released back into approval (never straight to APPROVED: the extra
    # approval it asked for must still be given) or ends the payment.
    S.HELD: frozenset({S.PENDING_APPROVAL, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.BATCHED, S.HELD, S.CANCELLED}),
    # Until it is signed a batch can be taken apart again (for example split at a bank limit).
    S.BATCHED: frozenset({S.SIGNED, S.APPROVED, S.CANCELLED}),
    # Nothing has left the building yet: a signed file can still be cancelled.
    S.SIGNED: frozenset({S.SUBMITTING, S.CANCELLED}),
    # Once bytes may have left, only the bank's answer decides; never CANCELLED from here on.
    S.SUBMITTING: frozenset({S.ACCEPTED, S.SETTLED, S.FAILED, S.UNKNOWN}),
    # UNKNOWN -> SUBMITTING is the resend with the *same* message ID after a status query
    # showed the bank never received it.
    S.UNKNOWN: frozenset({S.SUBMITTING, S.ACCEPTED, S.SETTLED, S.FAILED}),
    S.ACCEPTED: frozenset({S.SETTLED, S.FAILED}),
    # A receipt can arrive after the statement line, so RECONCILED is reachable from SETTLED.
    S.SETTLED: frozenset({S.RECEIPTED, S.RECONCILED, S.RETURNED}),
    S.RECEIPTED: frozenset({S.RECONCILED, S.RETURNED}),
    S.RECONCILED: frozenset({S.RETURNED}),
    # A definitive bank rejection may be corrected and sent again as a new payment message:
    # straight back to APPROVED when nothing that needs approval changed, else re-approval.
    S.FAILED: frozenset({S.APPROVED, S.PENDING_APPROVAL, S.CANCELLED}),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.RETURNED: frozenset(),
}

#: States in which the bank has not yet given its last word (status polling continues).
IN_FLIGHT: frozenset[PaymentState] = frozenset({S.SUBMITTING, S.UNKNOWN, S.ACCEPTED})

#: States that end a payment's journey through the bank (polling stops).
FINAL: frozenset[PaymentState] = frozenset(
    {S.SETTLED, S.RECEIPTED, S.RECONCILED, S.FAILED, S.REJECTED, S.CANCELLED, S.RETURNED}
)

#: States in which money has left the debtor account at the bank.
BOOKED: frozenset[PaymentState] = frozenset({S.SETTLED, S.RECEIPTED, S.RECONCILED})

#: States after which the payment must never be sent again under any message ID.
NEVER_RESEND: frozenset[PaymentState] = IN_FLIGHT | BOOKED | {S.RETURNED}


def can_transition(current: PaymentState, target: PaymentState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(
    current: PaymentState | str, target: PaymentState | str, *, subject: str = "payment"
) -> PaymentState:
    """Return ``target`` as a state if ``current -> target`` is legal, else raise."""
    try:
        cur, tgt = PaymentState(current), PaymentState(target)
    except ValueError as exc:
        raise IllegalTransition(f"{subject}: unknown payment state ({exc})") from None
    if tgt not in TRANSITIONS[cur]:
        allowed = ", ".join(sorted(TRANSITIONS[cur])) or "none (final state)"
        raise IllegalTransition(
            f"{subject}: cannot move from {cur} to {tgt} (allowed from {cur}: {allowed})"
        )
    return tgt
