"""Value types shared by the config files and the settings.

Each validator raises ``ValueError`` with a message that already shows the bad value, so the
loader can print it as is after ``<file>: <key>:``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

_CENT = Decimal("0.01")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class ConfigModel(BaseModel):
    """Base of every config-file model: read-only, and a misspelled key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _money(value: object) -> Decimal:
    # Binary floats cannot hold most cent amounts exactly, so refuse them rather than round.
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} is a TOML float, which can lose cents; "
            f'write the amount in quotes, e.g. "{value:.2f}"'
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'must be an amount in quotes like "50000.00" (got {value!r})')
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"must be an amount greater than 0 (got {value!r})")
        if amount.as_tuple().exponent < -2:  # type: ignore[operator]  # finite, so an int
            raise ValueError(f"must have at most 2 decimal places (got {value!r})")
        return amount.quantize(_CENT)
    except InvalidOperation:
        raise ValueError(f'must be an amount like "50000.00" (got {value!r})') from None


def _currency(code: str) -> str:
    if not _CURRENCY.fullmatch(code):
        raise ValueError(
            f"must be a 3-letter ISO 4217 currency code like 'CNY' (got {code!r})"
        )
    return code


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone this machine knows, else raise ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'Asia/Shanghai'"
        ) from None
    return name


def _clock(value: object) -> time:
    # A TOML local time (16:30:00, unquoted) is as clear as the string form, so take both.
    if isinstance(value, time) and value.tzinfo is None:
        return value
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'must be a 24-hour time "HH:MM" like "16:30" (got {value!r})')
    return time(int(match[1]), int(match[2]))


def _day(value: object) -> date:
    # Lax pydantic dates would read an integer as a Unix timestamp; a holiday never is one.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a date like 2026-10-01 (got {value!r})")


def _text(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _non_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _path(value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(f"must be a file path in quotes (got {value!r})")
    return Path(str(value).strip()).expanduser()


Money = Annotated[Decimal, BeforeValidator(_money)]
"""A positive amount with at most 2 decimals, from a TOML string or integer (never a float)."""

Count = Annotated[int, Strict(), Field(gt=0)]
"""A positive whole number; strict so that ``"5000"`` or ``true`` are not quietly accepted."""

Seconds = Annotated[float, Strict(), Field(gt=0)]
"""A positive duration in seconds, integer or decimal."""

Flag = Annotated[bool, Strict()]
"""``true`` or ``false``, nothing that merely looks like it."""

Text = Annotated[str, Strict(), BeforeValidator(_text), AfterValidator(_non_blank)]
"""A non-empty string, surrounding blanks removed."""

CurrencyCode = Annotated[str, Strict(), AfterValidator(_currency)]
TimeZoneName = Annotated[str, Strict(), AfterValidator(check_timezone)]
ClockTime = Annotated[time, BeforeValidator(_clock)]
Day = Annotated[date, BeforeValidator(_day)]
FilePath = Annotated[Path, BeforeValidator(_path)]
