"""Vouchers, payments and batches: what a treasury asks to pay and what goes to the bank."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from yinqi.money import Money
from yinqi.states import PaymentState, check_transition


class Category(StrEnum):
    SUPPLIER = "supplier"
    PAYROLL = "payroll"
    EXPENSE = "expense"


class BatchState(StrEnum):
    """A batch is one bank message (pain.001 or one direct-connect request)."""

    BUILT = "BUILT"
    SIGNED = "SIGNED"
    SUBMITTING = "SUBMITTING"
    UNKNOWN = "UNKNOWN"
    ACCEPTED = "ACCEPTED"
    PARTIAL = "PARTIAL"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    #: Its file cannot be built (the schema or a value refuses it): nothing was signed or
    #: sent; set aside until a person dissolves it.
    INVALID = "INVALID"
    #: Taken apart before signing: its payments went back to APPROVED (or were held).
    DISSOLVED = "DISSOLVED"


#: Batch states a worker may claim to carry forward (sign, send, ask the bank about).
CLAIMABLE_BATCH_STATES: frozenset[BatchState] = frozenset(
    {BatchState.BUILT, BatchState.SIGNED, BatchState.SUBMITTING, BatchState.UNKNOWN,
     BatchState.ACCEPTED, BatchState.PARTIAL}
)


@dataclass(frozen=True, slots=True)
class Voucher:
    """One row of an ERP export, as received; ``(source, external_ref)`` is its idempotency key."""

    source: str
    external_ref: str
    row_number: int
    fields: dict[str, str]


@dataclass(slots=True)
class Payment:
    end_to_end_id: str
    debtor_account: str
    creditor_name: str
    creditor_account: str
    amount: Money
    purpose: str
    category: Category
    maker: str
    requested_date: date
    creditor_bank_name: str = ""
    creditor_cnaps: str | None = None
    creditor_bic: str | None = None
    urgent: bool = False
    state: PaymentState = PaymentState.REQUESTED
    state_reason: str | None = None
    history: list[tuple[PaymentState, PaymentState, str | None]] = field(default_factory=list)

    def move_to(self, target: PaymentState, reason: str | None = None) -> None:
        """Apply a transition, refusing any the state machine does not allow."""
        new = check_transition(self.state, target, subject=f"payment {self.end_to_end_id}")
        self.history.append((self.state, new, reason))
        self.state, self.state_reason = new, reason


@dataclass(frozen=True, slots=True)
class Batch:
    msg_id: str
    bank: str
    debtor_account: str
    currency: str
    urgent: bool
    end_to_end_ids: tuple[str, ...]
    total: Money
    state: BatchState = BatchState.BUILT
    created_at: datetime | None = None


def approval_digest(amount_minor: int, currency: str, debtor_account_id: int,
                    creditor_account: str, creditor_name: str, creditor_cnaps: str | None,
                    creditor_bic: str | None) -> str:
    """A fingerprint of what approvers approve: who pays whom, how much, through which bank.

    Purpose text and urgency are left out on purpose: correcting them never needs approval.
    """
    parts = (str(amount_minor), currency, str(debtor_account_id), creditor_account,
             creditor_name, creditor_cnaps or "", creditor_bic or "")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
