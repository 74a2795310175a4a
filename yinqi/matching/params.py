"""What the matcher may accept: windows, thresholds, fees and tolerances."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from yinqi.currency import CURRENCIES

# End-to-end IDs as Yinqi makes them: "YQ" + 32 hex digits, or a rerun's "YQ" + 30 hex + "Rnn".
DEFAULT_REFERENCE_PATTERN = (r"(?<![0-9A-Za-z])YQ[0-9A-F]{30}(?:[0-9A-F]{2}|R[0-9]{2})"
                             r"(?![0-9A-Za-z])")
# A line's remittance text that says it is the charge for a transfer (not an account fee).
DEFAULT_FEE_PATTERN = r"手续费|汇划费|转账费|(?i:\bcharges?\b|\btransfer fee\b|\bcommission\b)"

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class MatchParams:
    """Knobs of :func:`yinqi.matching.match`. Amounts are integer minor units of the line's
    currency; the per-currency mappings override the flat value for the currencies they name.
    """

    #: Days either side of a payment's value (execution) date its line may carry, for the
    #: rules without a reference (batch by sum, amount + name, amount + fee).
    date_window_days: int = 3
    #: Smallest bigram similarity (0..1) of the normalised payee names for a match without a
    #: reference (see :mod:`yinqi.matching.names`).
    name_similarity_min: float = 0.85
    #: The largest bank charge a line may add to a payment (fee included in the line), the
    #: largest separate fee line, and the largest charge a return may be short by.
    max_fee_minor: int = 10_000
    #: How far a matched amount may be from the payment's; 0 is exact (the default).
    amount_tolerance_minor: int = 0
    max_fee_minor_by_currency: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    amount_tolerance_minor_by_currency: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    #: Days after the payment's value date within which a return without a reference
    #: (matched by amount and the payee's account) may arrive.
    return_window_days: int = 30
    #: Where a line's remittance text may carry an end-to-end ID (fee and return lines do).
    reference_pattern: str = DEFAULT_REFERENCE_PATTERN
    #: Remittance text of a separate fee line that belongs to the transfer next to it.
    fee_pattern: str = DEFAULT_FEE_PATTERN
    #: How many suggestions each unmatched line or payment gets, and the weakest one shown.
    candidates_per_item: int = 3
    candidate_min_score: float = 0.4
    #: Line statuses the rules look at (pending and information-only entries move no money).
    booked_statuses: tuple[str, ...] = ("BOOK",)
    #: Where one account has so many lines and payments of the same amount (band) that
    #: comparing each line with each payment would pass this many pairs (a payroll run of
    #: equal salaries without references), those lines are only compared with payments of
    #: the very same normalised payee name or account: memory and time stay bounded.
    max_pairs_per_amount: int = 10_000
    #: Bound on the rounds of the one-to-one assignment (each round is vectorised; real data
    #: settles in two or three). Pairs still undecided after that stay exceptions.
    max_assignment_rounds: int = 64

    def __post_init__(self) -> None:
        if self.date_window_days < 0 or self.return_window_days < 0:
            raise ValueError("date windows must not be negative")
        if not 0.0 <= self.name_similarity_min <= 1.0:
            raise ValueError("name_similarity_min must be between 0 and 1")
        for name in ("max_fee_minor", "amount_tolerance_minor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (minor units)")
        for name in ("max_fee_minor_by_currency", "amount_tolerance_minor_by_currency"):
            mapping = getattr(self, name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                   for v in mapping.values()):
                raise ValueError(f"{name}: values must be non-negative integers (minor units)")
            object.__setattr__(self, name, MappingProxyType(dict(mapping)))
        if self.candidates_per_item < 0:
            raise ValueError("candidates_per_item must not be negative")
        re.compile(self.reference_pattern)
        re.compile(self.fee_pattern)

    def max_fee_for(self, currency: str) -> int:
        return self.max_fee_minor_by_currency.get(currency, self.max_fee_minor)

    def tolerance_for(self, currency: str) -> int:
        return self.amount_tolerance_minor_by_currency.get(currency, self.amount_tolerance_minor)

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> MatchParams:
        """From ``config.reconciliation.Reconciliation`` (read by duck typing: this package
        imports nothing outside ``yinqi``): decimals per currency become minor units."""

        def minor(amounts: Mapping[str, Decimal]) -> dict[str, int]:
            out = {}
            for code, amount in amounts.items():
                units = CURRENCIES[code].minor_units if code in CURRENCIES else 2
                scaled = Decimal(amount).scaleb(units)
                if scaled != scaled.to_integral_value():
                    raise ValueError(f"{amount} {code} has more decimals than {code} allows")
                out[code] = int(scaled)
            return out

        values: dict[str, Any] = {
            "date_window_days": int(config.date_window_days),
            "name_similarity_min": float(config.name_similarity_min),
            "max_fee_minor_by_currency": minor(config.max_fee),
            "amount_tolerance_minor_by_currency": minor(config.amount_tolerance),
            # A currency the file does not list: no fee may be added, amounts match exactly.
            "max_fee_minor": 0,
            "amount_tolerance_minor": 0,
        }
        values.update(overrides)
        return cls(**values)
