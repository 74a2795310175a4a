"""What banks send back: status reports, receipts (电子回单) and statements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from yinqi.money import Money


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A bank's answer about a message or one payment in it (pain.002 or a dialect's status)."""

    msg_id: str
    group_status: str | None
    end_to_end_id: str | None = None
    tx_status: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    bank_reference: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    end_to_end_id: str
    bank_reference: str
    verification_code: str
    content: bytes
    signature_valid: bool


@dataclass(frozen=True, slots=True)
class BatchDetail:
    """One payment inside a batch-booked entry (camt TxDtls): what the one line is made of."""

    amount: Money | None
    end_to_end_id: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance: str | None = None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One entry; ``amount`` is signed: positive for money in, negative for money out."""

    amount: Money
    booking_date: date | None
    value_date: date | None
    end_to_end_id: str | None = None
    bank_reference: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance: str | None = None
    is_reversal: bool = False
    entry_ref: str | None = None
    # BOOK (booked), PDNG (pending), INFO (information only), as the file says.
    status: str = "BOOK"
    # Fees the bank charged within this entry, when the file itemises them.
    charges: Money | None = None
    details: tuple[BatchDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class Statement:
    account: str
    currency: str
    statement_id: str
    sequence: str | None
    opening_balance: Money | None
    closing_balance: Money | None
    lines: tuple[StatementLine, ...] = field(default_factory=tuple)
    created_at: datetime | None = None
    from_date: date | None = None
    to_date: date | None = None
    # camt.053, camt.052, camt.054, mt940, mt942: which kind of report this came from.
    kind: str = ""
    msg_id: str | None = None
    # What does not add up or was read leniently, said once per problem; never "fixed".
    warnings: tuple[str, ...] = ()

    def movement(self) -> Money | None:
        """The sum of the booked entries (pending and information-only ones move nothing)."""
        if self.opening_balance is None:
            return None
        currency = self.opening_balance.currency
        return Money.sum((line.amount for line in self.lines
                          if line.status == "BOOK" and line.amount.currency == currency),
                         currency)

    def balances_add_up(self) -> bool | None:
        """Opening + entries == closing, or None when the file gives no balances (camt.054)."""
        if self.opening_balance is None or self.closing_balance is None:
            return None
        movement = self.movement()
        assert movement is not None
        return self.opening_balance + movement == self.closing_balance
