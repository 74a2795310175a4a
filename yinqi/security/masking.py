"""Account numbers and secrets as operators may see them: ``****1234``, never whole.

Masking happens where text leaves Yinqi (CLI, logs, Prefect logs and artifacts, alerts, audit
details); :class:`RedactingFilter` is the safety net under it for log records that slipped a
number in through an exception message or a bank's free text.
"""

from __future__ import annotations

import logging
import re

# Bank account numbers are 8 to 34 characters; CN accounts are digits only, IBANs start with
# two letters and two check digits. Shorter digit runs (amounts, ids, dates) stay readable.
_LONG_NUMBER = re.compile(r"(?<![0-9A-Za-z.,])(?:[A-Z]{2}[0-9]{2}[0-9A-Za-z]{4,30}|[0-9][0-9 -]{6,40}[0-9])"
                          r"(?![0-9A-Za-z]|[.,][0-9])")
_KEEP = 4


def mask_account(number: str | None) -> str:
    """``6222021234567890`` -> ``****7890``; short or empty values are masked whole."""
    if not number:
        return ""
    digits = re.sub(r"[\s-]", "", str(number))
    if len(digits) <= _KEEP:
        return "****"
    return "****" + digits[-_KEEP:]


def mask_name(name: str | None) -> str:
    """A payee name shown to people who do not need it whole: first character and length."""
    if not name:
        return ""
    return name[0] + "*" * min(len(name) - 1, 8)


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"[\s-]", "", text)
    # A date (2026-11-25), a time or an amount with separators is not an account number.
    if len(digits) < 8 or not any(c.isdigit() for c in digits[-4:]):
        return text
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) or re.fullmatch(r"\d{8}", digits) and \
            digits.startswith(("19", "20")) and len(text) == 8:
        return text
    return mask_account(digits)


def redact(text: str) -> str:
    """Every account-number-like run in free text masked to its last four digits."""
    return _LONG_NUMBER.sub(_mask_match, text)


class RedactingFilter(logging.Filter):
    """Masks account numbers in every record's final message before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not stop logging
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
