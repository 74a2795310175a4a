"""Account numbers and secrets as operators may see them: ``****1234``, never whole.

Masking happens where text leaves Yinqi (CLI, logs, Prefect logs and artifacts, alerts, audit
details); :class:`RedactingFilter` is the safety net under it for log records that slipped a
number in through an exception message or a bank's free text. :func:`install_redaction` puts
it on the loggers of a process once.

Prefect renders markdown artifacts *and* the text cells of table artifacts as markdown, so
text from vouchers, banks or operators goes into them through :func:`escape_markdown`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

_KEEP = 4

# Countries that issue IBANs (two letters, two check digits, then 11-30 letters and digits).
# A fixed list keeps identifiers such as Yinqi's end-to-end IDs ("YQ30CA35...") readable.
_IBAN_COUNTRIES = frozenset(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE "
    "GI GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT "
    "MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG "
    "XK YE".split())

# Bank account numbers: CN accounts are 8 to 32 digits, printed whole or in groups ("6222 0212
# 3456 7890", "6222-0212-..."); IBANs compact or in groups of four. A run inside a word (an
# end-to-end ID, a hash), after "*" (masked already) or after a decimal point is something
# else, and so is a run followed by a decimal part (an amount: ".5", ",50"). "_" separates
# words in file names ("camt053_<account>_20261126.xml"): a number there is masked.
_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z.*])"
    r"(?:(?P<iban>[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?))"
    r"|(?P<grouped>[0-9]{3,6}(?:[ -][0-9]{3,6}){1,8})"
    r"|(?P<digits>[0-9]{8,}))"
    r"(?![0-9A-Za-z]|\.[0-9]|,[0-9]{1,2}(?![0-9]))"
)
_SEPARATORS = re.compile(r"[\s-]")
_MIN_DIGITS = 8


def mask_account(number: str | None) -> str:
    """``6222021234567890`` -> ``****7890``; short or empty values are masked whole."""
    if not number:
        return ""
    digits = _SEPARATORS.sub("", str(number))
    if len(digits) <= _KEEP:
        return "****"
    return "****" + digits[-_KEEP:]


def mask_name(name: str | None) -> str:
    """A payee name shown to people who do not need it whole: first character and length."""
    if not name:
        return ""
    return name[0] + "*" * min(len(name) - 1, 8)


def account_label(bank: str, name: str, number: str) -> str:
    """How an operator tells our accounts apart without the number: bank, name, last four."""
    return " ".join(part for part in (bank, name, mask_account(number)) if part)


def _is_compact_date(digits: str) -> bool:
    # 20261126 is a day, not an 8-digit account number; logs and IDs are full of them.
    if len(digits) != 8 or not digits.startswith(("19", "20")):
        return False
    month, day = int(digits[4:6]), int(digits[6:8])
    return 1 <= month <= 12 and 1 <= day <= 31


def _is_archive_stamp(match: re.Match[str]) -> bool:
    # The archive names files "<folder>/<HHMMSSffffff>-<kind>-...": a time, not an account.
    start, end, whole = match.start(), match.end(), match.string
    return (len(match.group(0)) == 12 and start > 0 and whole[start - 1] in "/\\"
            and whole[end:end + 1] == "-")


def _is_iban(text: str) -> bool:
    """An IBAN's country, and its check digits right (ISO 13616, mod 97) or a BBAN of digits
    only: a bank reference such as ``BE45A1B2C3D4E5F6`` stays readable."""
    compact = text.replace(" ", "")
    if compact[:2] not in _IBAN_COUNTRIES:
        return False
    if compact[4:].isdigit():
        return True
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group("iban") is not None:
        return mask_account(text) if _is_iban(text) else text
    digits = _SEPARATORS.sub("", text)
    if len(digits) < _MIN_DIGITS or _is_compact_date(digits) or _is_archive_stamp(match):
        return text
    return mask_account(digits)


def redact(text: str) -> str:
    """Every account-number-like run in free text masked to its last four digits."""
    if not text:
        return text
    return _CANDIDATE.sub(_mask_match, text)


def redact_deep(value: Any) -> Any:
    """:func:`redact` applied to every string inside dicts, lists and tuples (JSON documents)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_deep(v) for v in value]
    return value


# Characters that start markdown constructs (emphasis, links, code, tables, headings,
# strikethrough) are backslash-escaped; <, > and & become entities, so no tag or entity of
# the input survives whether or not the renderer allows raw HTML.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#|!~])")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_LINE_START = re.compile(r"[-+=]")
_MD_ORDERED = re.compile(r"([0-9]{1,9})[.)](?:\s|$)")


def escape_markdown(text: object) -> str:
    """``text`` as literal characters inside markdown: one line, no link, tag or formatting."""
    plain = " ".join(str(text).split())
    plain = re.sub(r"[&<>]", lambda m: _MD_ENTITIES[m.group(0)], plain)
    plain = _MD_SPECIAL.sub(r"\\\1", plain)
    # At the start of a line these can make a list item, a rule or a heading underline.
    if _MD_LINE_START.match(plain):
        return "\\" + plain
    ordered = _MD_ORDERED.match(plain)
    return f"{ordered[1]}\\{plain[len(ordered[1]):]}" if ordered else plain


def markdown_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact: text cells redacted and escaped, numbers as they are
    (the Prefect UI renders every text cell as markdown)."""
    return [{k: escape_markdown(redact(v)) if isinstance(v, str) else v for k, v in r.items()}
            for r in rows]


class RedactingFilter(logging.Filter):
    """Masks account numbers in every record's final message, its exception text and its
    stack before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not stop logging
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is printed masked.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: Loggers whose records leave the process: Yinqi's own and Prefect's (the run loggers send
#: to the Prefect API, and "prefect" covers the engine's messages about runs).
REDACTED_LOGGERS = ("yinqi", "connectors", "tasks", "flows", "prefect", "prefect.flow_runs",
                    "prefect.task_runs", "prefect.extra")
_TREES = ("yinqi.", "connectors.", "tasks.", "flows.")
_FILTER = RedactingFilter()


def install_redaction(names: Iterable[str] = REDACTED_LOGGERS) -> None:
    """Put the one :class:`RedactingFilter` on ``names``, on the loggers already created under
    Yinqi's packages, and on every handler they and the root logger have now.

    A logger's filter only sees records logged on that very logger, while a handler's sees
    every record that reaches it, children's included; both are set. Idempotent: call it
    after Prefect configured logging (handlers made later are covered by the next call).
    """
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    loggers += [lg for name, lg in list(logging.Logger.manager.loggerDict.items())
                if isinstance(lg, logging.Logger) and name.startswith(_TREES)]
    handlers: list[logging.Handler] = [logging.lastResort] if logging.lastResort else []
    for logger in loggers:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        handlers += logger.handlers
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


__all__ = ["REDACTED_LOGGERS", "RedactingFilter", "account_label", "escape_markdown",
           "install_redaction", "markdown_table", "mask_account", "mask_name", "redact",
           "redact_deep"]
