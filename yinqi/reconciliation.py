"""Reconciliation matches: which statement lines explain which payments, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MatchRule(StrEnum):
    EXACT_REFERENCE = "exact_reference"
    BATCH_BOOKING = "batch_booking"
    AMOUNT_ACCOUNT_DATE_NAME = "amount_account_date_name"
    AMOUNT_PLUS_FEE = "amount_plus_fee"
    RETURN = "return"
    MANUAL = "manual"


class MatchStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    WRITTEN_OFF = "written_off"


@dataclass(frozen=True, slots=True)
class Match:
    rule: MatchRule
    score: float  # an explanation weight in [0, 1], never money
    payment_ids: tuple[int, ...]
    statement_line_ids: tuple[int, ...]
    status: MatchStatus = MatchStatus.PROPOSED
    note: str | None = None
