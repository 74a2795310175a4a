"""Exact amounts of money in one currency.

All arithmetic runs on integer minor units, so no operation depends on the decimal
context's precision or rounding mode and no minor unit is ever created or lost.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from yinqi.currency import Currency
from yinqi.errors import CurrencyError, MoneyError, PrecisionError

# Thousands separators are allowed only in well-formed groups, so a European decimal
# comma such as '1,23' or '0,500' is refused instead of being read as a thousand-fold amount.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[1-9][0-9]{0,2}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")

# No real payment needs more, and the bound keeps Decimal('1E+999999999') from
# building a billion-digit integer.
MAX_INTEGER_DIGITS = 30


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _as_currency(currency: object) -> Currency:
    if isinstance(currency, Currency):
        return currency
    if isinstance(currency, str):
        return Currency.of(currency)
    raise CurrencyError(
        f"currency {currency!r} is a {type(currency).__name__}; give a code like 'CNY'"
    )


def _as_decimal(amount: object) -> tuple[Decimal, str]:
    """The amount as a Decimal plus the text to quote in error messages."""
    # bool before int: True is an int to Python but never an amount to a bank.
    if isinstance(amount, bool):
        raise MoneyError(f"amount {amount!r} is a bool; give the amount as text or Decimal")
    if isinstance(amount, float):
        raise MoneyError(
            f"amount {amount!r} is a float; amounts must be given as text or Decimal, never float"
        )
    if isinstance(amount, Decimal):
        shown = str(amount)
        if not amount.is_finite():
            raise MoneyError(f"amount {shown!r} is not a finite number")
        return amount, shown
    if isinstance(amount, int):
        return Decimal(amount), str(amount)
    if isinstance(amount, str):
        text = amount.strip()
        if not _PLAIN_NUMBER.fullmatch(text):
            raise MoneyError(
                f"amount {text!r} is not a plain decimal number like '1234.56' or '1,234.56'"
            )
        return Decimal(text.replace(",", "")), text
    raise MoneyError(
        f"amount {amount!r} is a {type(amount).__name__}; give the amount as text or Decimal"
    )


def _to_minor(amount: object, currency: Currency) -> int:
    number, shown = _as_decimal(amount)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked in _as_decimal
    if not any(digits):
        return 0
    if number.adjusted() >= MAX_INTEGER_DIGITS:
        raise MoneyError(
            f"amount {shown!r} has more than {MAX_INTEGER_DIGITS} integer digits; "
            "no payment is that large, check the input"
        )
    # Trailing zeros carry no value, so '12.300' is a valid CNY amount.
    trailing_zeros = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing_zeros += 1
    significant = digits[: len(digits) - trailing_zeros]
    exponent += trailing_zeros
    decimals = max(0, -exponent)
    if decimals > currency.minor_units:
        raise PrecisionError(
            f"amount {shown!r} has {_plural(decimals, 'decimal')} "
            f"but {currency.code} has {currency.minor_units}"
        )
    coefficient = int("".join(map(str, significant)))
    minor = coefficient * 10 ** (exponent + currency.minor_units)
    return -minor if sign else minor


def _from_minor(minor: int, minor_units: int) -> Decimal:
    # Built from the digit tuple so the exponent is exactly -minor_units with no
    # context rounding; zero is always positive so '-0.00' never appears.
    digits = tuple(int(d) for d in str(abs(minor)))
    return Decimal((1 if minor < 0 else 0, digits, -minor_units))


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: Currency

    def __post_init__(self) -> None:
        currency = _as_currency(self.currency)
        minor = _to_minor(self.amount, currency)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "amount", _from_minor(minor, currency.minor_units))

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str | Currency) -> Money:
        return cls(amount, currency)  # type: ignore[arg-type]  # __post_init__ parses it

    @classmethod
    def from_minor(cls, minor: int, currency: str | Currency) -> Money:
        if isinstance(minor, bool) or not isinstance(minor, int):
            raise MoneyError(
                f"minor units {minor!r} must be a whole number (int), not {type(minor).__name__}"
            )
        cur = _as_currency(currency)
        return cls(_from_minor(minor, cur.minor_units), cur)

    @classmethod
    def zero(cls, currency: str | Currency) -> Money:
        return cls.from_minor(0, currency)

    @classmethod
    def sum(cls, items: Iterable[Money], currency: str | Currency) -> Money:
        cur = _as_currency(currency)
        total = 0
        for item in items:
            if not isinstance(item, Money):
                raise MoneyError(f"cannot sum {item!r} into a {cur.code} total: it is not Money")
            if item.currency != cur:
                raise CurrencyError(
                    f"cannot sum {item} into a {cur.code} total: "
                    f"currencies differ ({item.currency.code} vs {cur.code})"
                )
            total += item.minor
        return cls.from_minor(total, cur)

    @property
    def minor(self) -> int:
        sign, digits, _ = self.amount.as_tuple()
        value = int("".join(map(str, digits)))
        return -value if sign else value

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    @property
    def is_negative(self) -> bool:
        return self.minor < 0

    def _require_same_currency(self, other: Money, verb: str) -> None:
        if self.currency != other.currency:
            raise CurrencyError(
                f"cannot {verb} {self} and {other}: currencies differ "
                f"({self.currency.code} vs {other.currency.code}); convert one first"
            )

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "add")
        return Money.from_minor(self.minor + other.minor, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "subtract")
        return Money.from_minor(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money.from_minor(-self.minor, self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money.from_minor(abs(self.minor), self.currency)

    def __mul__(self, factor: object) -> Money:
        # Only whole factors keep the result exact; fractions go through allocate().
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Money.from_minor(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "compare")
        return self.minor < other.minor

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "compare")
        return self.minor <= other.minor

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "compare")
        return self.minor > other.minor

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._require_same_currency(other, "compare")
        return self.minor >= other.minor

    def allocate(self, ratios: Sequence[int | Decimal]) -> list[Money]:
        weights = _weights(ratios)
        whole = builtins.sum(weights)
        magnitude = abs(self.minor)
        shares = [magnitude * weight / whole for weight in weights]
        parts = [share.numerator // share.denominator for share in shares]
        leftover = magnitude - builtins.sum(parts)
        # Largest remainder first; on a tie the earlier part wins, so the result is
        # the same on every run and every machine.
        by_remainder = sorted(range(len(parts)), key=lambda i: (parts[i] - shares[i], i))
        for index in by_remainder[:leftover]:
            parts[index] += 1
        sign = -1 if self.minor < 0 else 1
        return [Money.from_minor(sign * part, self.currency) for part in parts]

    def split(self, n: int) -> list[Money]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise MoneyError(f"cannot split {self} into {n!r} parts; give a whole number >= 1")
        return self.allocate([1] * n)

    def format(self, grouping: bool = True) -> str:
        spec = ",f" if grouping else "f"
        return f"{self.amount:{spec}} {self.currency.code}"

    def to_json(self) -> dict[str, str]:
        return {"amount": f"{self.amount:f}", "currency": self.currency.code}

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency.code}"

    def __repr__(self) -> str:
        return f"Money('{self.amount:f}', '{self.currency.code}')"


def _weights(ratios: Sequence[Any]) -> list[Fraction]:
    # Fractions keep Decimal ratios such as Decimal('0.3') exact in the share arithmetic.
    weights: list[Fraction] = []
    for ratio in ratios:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, Decimal)):
            raise MoneyError(
                f"ratio {ratio!r} is a {type(ratio).__name__}; ratios must be int or Decimal"
            )
        if isinstance(ratio, Decimal) and not ratio.is_finite():
            raise MoneyError(f"ratio {str(ratio)!r} is not a finite number")
        if ratio < 0:
            raise MoneyError(f"ratio {str(ratio)!r} is negative; ratios must be 0 or more")
        weights.append(Fraction(ratio))
    if builtins.sum(weights) <= 0:
        shown = [str(r) for r in ratios]
        raise MoneyError(f"ratios {shown} sum to zero; at least one must be positive")
    return weights


__all__ = ["MAX_INTEGER_DIGITS", "Money"]
