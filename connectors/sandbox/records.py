"""Plain records the sandbox bank's dialect codecs read and write.

The bank's logic works on these; the ISO 20022 and Chinese direct-connect codecs translate
them to and from bytes. Amounts are ``Decimal`` in the currency's units, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    """One payment inside an incoming payment order (pain.001 CdtTrfTxInf)."""

    end_to_end_id: str
    instr_id: str | None
    amount: Decimal
    currency: str
    creditor_name: str
    creditor_account: str          # IBAN or the Othr/Id account number, as given
    creditor_agent_bic: str | None = None
    creditor_agent_cnaps: str | None = None   # ClrSysMmbId/MmbId (CNAPS 12 digits)
    remittance: str | None = None             # RmtInf/Ustrd, joined with " "


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """One PmtInf block: one debtor account, one execution date."""

    pmt_inf_id: str
    debtor_name: str
    debtor_account: str
    debtor_agent_bic: str | None
    requested_execution_date: date
    transfers: tuple[CreditTransfer, ...]
    urgent: bool = False           # PmtTpInf/InstrPrty HIGH
    batch_booking: bool = False    # BtchBookg: one debit entry for the whole block


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    """A parsed pain.001 message."""

    version: str                   # "pain.001.001.03" or "pain.001.001.09"
    msg_id: str
    created_at: datetime
    declared_count: int            # GrpHdr/NbOfTxs as written
    declared_sum: Decimal | None   # GrpHdr/CtrlSum as written, if any
    initiating_party: str
    payments: tuple[PaymentInfo, ...]

    @property
    def transfers(self) -> tuple[CreditTransfer, ...]:
        return tuple(t for p in self.payments for t in p.transfers)


@dataclass(frozen=True, slots=True)
class TransferStatus:
    """The status of one payment in a pain.002 (TxInfAndSts)."""

    end_to_end_id: str
    instr_id: str | None
    status: str                    # ACTC, ACSP, ACSC, RJCT, PDNG ...
    reason_code: str | None = None # AC01, AC04, AM04, AM02, RR04, DUPL, FF01, ...
    reason_text: str | None = None
    pmt_inf_id: str | None = None  # the PmtInfId of the block it came in (OrgnlPmtInfId)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What the bank says about one payment order (a pain.002)."""

    msg_id: str                    # the report's own MsgId
    created_at: datetime
    original_msg_id: str
    original_msg_name: str         # "pain.001.001.09"
    group_status: str | None       # ACTC, ACSP, ACSC, PART, RJCT, or None
    group_reason_code: str | None = None
    group_reason_text: str | None = None
    transfers: tuple[TransferStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class EntryDetail:
    """One transaction inside a (possibly batch-booked) statement entry."""

    end_to_end_id: str | None
    amount: Decimal
    currency: str
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One booked statement entry (camt Ntry / MT940 :61:)."""

    amount: Decimal                # positive magnitude
    currency: str
    credit: bool                   # True: money in (CRDT); False: money out (DBIT)
    booking_date: date
    value_date: date
    bank_reference: str            # AcctSvcrRef
    reversal: bool = False         # RvslInd
    kind: str = "transfer"         # transfer | fee | return | opening
    details: tuple[EntryDetail, ...] = ()   # one per payment; several for a batch booking


@dataclass(frozen=True, slots=True)
class AccountStatement:
    """A statement, intraday report or notification for one account (camt.053/052/054, MT940)."""

    statement_id: str
    electronic_sequence: int
    created_at: datetime
    from_time: datetime
    to_time: datetime
    account: str
    currency: str
    owner_name: str
    servicer_bic: str
    opening_balance: Decimal | None    # signed: negative for a debit balance
    closing_balance: Decimal | None
    opening_date: date | None = None
    closing_date: date | None = None
    entries: tuple[Entry, ...] = field(default_factory=tuple)
