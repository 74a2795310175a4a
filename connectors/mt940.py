"""SWIFT MT940 end-of-day statements and MT942 interim reports, read strictly.

Every file either parses into exactly what it states or is refused with a `FormatError`
naming the line. Numbers are never repaired: where a statement does not add up, the
`Statement` carries the numbers as written and a warning says what is off.

Decisions a reader of these files has to make, taken once here:

- Two-digit years: 80-99 are 1980-1999, 00-79 are 2000-2079.
- The :61: entry date (MMDD) takes the year that puts it closest to the value date, so
  value 991231 with entry 0102 is 2000-01-02. SWIFT makes the entry date optional; where a
  line has none, ``booking_date`` is None rather than a copy of the value date, because
  inventing a booking date would be a correction.
- :25: keeps the account as written, except that a trailing currency code equal to the
  statement currency (ING "NL..EUR", Rabobank "NL.. EUR") is cut off, with a warning.
- :86: free text joins its lines with one space, except after a line that fills the
  65-character field width without ending in a space: the bank wrapped it mid-word, so it
  joins with nothing. Structured :86: (``/EREF/..`` or German ``166?20..``) is delimited by
  its own markers, so there every line break is wrapping and joins with nothing. Several
  :86: fields after one :61: (old Rabobank files) are read as lines of one field.
- An amount without the mandatory decimal comma ("500", as Knab writes it) is read as the
  whole number it can only mean, with a warning; anything else not shaped like SWIFT's
  "digits, comma, decimals" is refused.
- Control characters become U+FFFD, not '?': '?' is the German :86: subfield marker, and
  a control character followed by two digits must not become a subfield.
- ``end_to_end_id`` is the :86: EREF, else its KREF, else the :61: customer reference;
  NONREF and NOTPROVIDED mean none. The :61: supplementary details (its second line) are
  kept only where they are a lone IBAN and :86: names no counterparty account (Rabobank).
- A line holding only '-' ends the statement, unless more text of the same field follows
  it (ING wraps :86: around such lines); then it is text, with a warning.
- The message type comes from SWIFT block 2 or a '940'/':940:' header; without one, a
  statement with :34F:/:13D:/:90D:/:90C:, or with no balances at all, is an MT942.
- An MT940 missing its opening or closing balance is refused, naming the line where the
  balance was due: a statement cut short cannot be reconciled.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from yinqi.bankdata import Statement, StatementLine
from yinqi.errors import InvalidValue, MoneyError
from yinqi.money import Money

_WIDTH = 65  # SWIFT's line width for :86: and other multi-line fields
_MAX_REFERENCE = 16

_TAG = re.compile(r":([0-9]{2}[A-Z]?):")
_MT_HEADER = re.compile(r":(94[02]):")
# Lines some banks put before a statement: the message type (ABN AMRO "940", ING "940 00"),
# the sender's BIC (ABN AMRO), and ING's "0000 01INGBNL2AXXXX00001" transmission header.
_HEADER_LINES = (
    re.compile(r"(?P<mt>94[02])(?: [0-9]{2})?"),
    re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?"),
    re.compile(r"0000 [0-9]{2}[A-Z0-9]+"),
)
_BLOCK = re.compile(r"\{([0-9A-Z]+):((?:[^{}]|\{[^{}]*\})*)\}")
_ENDS = ("-", "-XXX")

_MT940_ORDER = {
    "20": 0, "21": 1, "25": 2, "25P": 2, "28": 3, "28C": 3, "60F": 4, "60M": 4,
    "61": 5, "62F": 6, "62M": 6, "64": 7, "65": 8,
}
_MT942_ORDER = {
    "20": 0, "21": 1, "25": 2, "25P": 2, "28C": 3, "34F": 4, "13D": 5,
    "61": 6, "90D": 7, "90C": 8,
}
_REPEATABLE = frozenset({"61", "65", "34F"})
_MT942_ONLY = frozenset({"34F", "13D", "90D", "90C"})
_KNOWN_TAGS = frozenset(_MT940_ORDER) | frozenset(_MT942_ORDER) | {"86"}

_BALANCE = re.compile(r"(?P<mark>[CD])(?P<date>[0-9]{6})(?P<ccy>[A-Z]{3})(?P<amount>[0-9,.]+)")
_FLOOR = re.compile(r"(?P<ccy>[A-Z]{3})(?P<mark>[CD]?)(?P<amount>[0-9,.]+)")
_TOTAL = re.compile(r"(?P<count>[0-9]{1,5})(?P<ccy>[A-Z]{3})(?P<amount>[0-9,.]+)")
_DATETIME = re.compile(r"([0-9]{6})([0-9]{2})([0-9]{2})([+-])([0-9]{2})([0-9]{2})")
_SEQUENCE = re.compile(r"[0-9]+(?:/[0-9]+)?")

_AMOUNT = re.compile(r"(?P<whole>[0-9]+)(?:,(?P<fraction>[0-9]*))?")
_VALUE_DATE = re.compile(r"[0-9]{6}")
_ENTRY_DATE = re.compile(r"[0-9]{4}")
_MARK = re.compile(r"RC|RD|C|D")
_FUNDS_CODE = re.compile(r"[A-Z](?=[0-9,.])")
_AMOUNT_TEXT = re.compile(r"[0-9,.]+")
_TRANSACTION_TYPE = re.compile(r"[NFS][A-Z0-9]{3}")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")
_NO_REFERENCE = frozenset({"", "NONREF", "NOTPROVIDED"})

_GERMAN = re.compile(r"[0-9]{3}([?>])[0-9]{2}")
_DUTCH_KEYS = (
    "EREF", "KREF", "PREF", "MARF", "CSID", "CNTP", "REMI", "NAME", "IBAN", "BIC", "ADDR",
    "BENM", "ORDP", "ISDT", "RTRN", "TRCD", "PURP", "ULTC", "ULTD", "ULTB", "SVCL", "BUSP",
    "EXCH", "OCMT", "CHGS", "SUM", "ID",
)
_DUTCH_KEY = re.compile(r"/(" + "|".join(_DUTCH_KEYS) + r")/")
_GERMAN_WIDTH = 27
_SEPA_KEYWORD = re.compile(r"(?:EREF|KREF|MREF|CRED|DEBT|SVWZ|ABWA|ABWE|COAM|OAMT|PURP|IBAN|BIC)\+")


class FormatError(InvalidValue):
    """The file is not a readable MT940/MT942; ``str()`` is one line naming the line."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source}: line {line}: {problem}")


class _Problem(Exception):
    """A field's content is wrong; the line is filled in by whoever knows it (see `_at`)."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(problem)
        self.line = line


@contextmanager
def _at(line: int) -> Iterator[None]:
    try:
        yield
    except _Problem as problem:
        if problem.line is None:
            problem.line = line
        raise


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- lines to raw statements ---------------------------------------------------------------


@dataclass
class _Field:
    tag: str
    line: int
    lines: list[str]

    def text(self) -> str:
        """Content of a single-value field: wrapped lines carry one value, so join with ''."""
        return "".join(part.strip() for part in self.lines)

    def single_line(self) -> str:
        if any(part.strip() for part in self.lines[1:]):
            raise _Problem(f":{self.tag}: continues on a second line, which it may not",
                           self.line)
        return self.lines[0].strip()


@dataclass
class _Block:
    """One statement's fields as read, before any field is interpreted."""

    start: int
    mt_type: str | None
    fields: list[_Field] = field(default_factory=list)
    # The statement's last line: its terminator, or else its last field's last line.
    end: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    def note(self, key: str, message: str) -> None:
        # Once per problem: the first occurrence names its line, later ones add nothing.
        self.notes.setdefault(key, message)


def _decode(data: bytes) -> tuple[str, list[str]]:
    try:
        text, notes = data.decode("utf-8"), []
    except UnicodeDecodeError:
        # Latin-1 maps every byte, so a file is never refused for its encoding alone.
        text, notes = data.decode("latin-1"), ["file is not UTF-8; read as Latin-1"]
    # A byte-order mark and DOS's end-of-file mark (Ctrl-Z) are file framing, not content.
    text = text.removeprefix("\ufeff").rstrip("\x1a")
    return text.replace("\r\n", "\n").replace("\r", "\n"), notes


def _clean(line: str) -> str:
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in line)


def _is_header(line: str) -> bool:
    return bool(_MT_HEADER.fullmatch(line)) or any(p.fullmatch(line) for p in _HEADER_LINES)


def _header_type(line: str) -> str | None:
    match = _MT_HEADER.fullmatch(line) or _HEADER_LINES[0].fullmatch(line)
    return match.group(1) if match else None


class _Reader:
    """Splits the text into statements: envelopes and headers out, fields and lines in."""

    def __init__(self, lines: Sequence[str], source: str) -> None:
        self.lines = [_clean(line) for line in lines]
        self.dirty = {index for index, line in enumerate(lines) if line != self.lines[index]}
        self.source = source
        self.blocks: list[_Block] = []
        self.current: _Block | None = None
        self.mt_type: str | None = None
        self.blank_line: int | None = None

    def read(self) -> list[_Block]:
        for index, line in enumerate(self.lines):
            self._line(index, line)
            if index in self.dirty and self.current is not None:
                self.current.note("control", f"line {index + 1}: control characters replaced "
                                             "by U+FFFD")
        self._close()
        return self.blocks

    def _fail(self, line: int, problem: str) -> FormatError:
        return FormatError(self.source, line, problem)

    def _close(self) -> None:
        if self.current is not None:
            self.blocks.append(self.current)
        self.current = None
        # A blank line just before a statement ends only separates statements.
        self.blank_line = None

    def _line(self, index: int, line: str) -> None:
        number = index + 1
        stripped = line.strip()
        if not line or (not stripped and self.current is None):
            if self.current is not None and self.blank_line is None:
                self.blank_line = number
            return
        if stripped.startswith("{"):
            self._close()
            rest = self._envelope(stripped, number)
            if rest:
                self._line(index, rest)
            return
        if stripped in _ENDS or stripped.startswith("-}"):
            self._end(index, line, stripped)
            return
        tag = _TAG.match(line)
        if tag:
            self._field(number, tag.group(1), line[tag.end():])
            return
        if self.current is None or _MT_HEADER.fullmatch(stripped):
            # Rabobank's ':940:' starts a file, so one inside a file starts a concatenated one.
            self._close()
            self._header(number, stripped)
            return
        self._continue(number, line)

    def _header(self, number: int, line: str) -> None:
        if not _is_header(line):
            raise self._fail(number, f"{_shown(line)} is not an MT940/MT942 field or header")
        self.mt_type = _header_type(line) or self.mt_type

    def _continue(self, number: int, line: str) -> None:
        assert self.current is not None
        self._note_blank_line()
        self.current.fields[-1].lines.append(line)
        self.current.end = number

    def _note_blank_line(self) -> None:
        if self.current is not None and self.blank_line is not None:
            self.current.note("blank", f"line {self.blank_line}: empty line inside the "
                                       "statement skipped")
        self.blank_line = None

    def _field(self, number: int, tag: str, content: str) -> None:
        if tag == "20":
            self._close()
            self.current = _Block(start=number, mt_type=self.mt_type)
        elif self.current is None:
            raise self._fail(number, f":{tag}: stands outside a statement (no :20: before it)")
        elif tag not in _KNOWN_TAGS:
            raise self._fail(number, f":{tag}: is not an MT940/MT942 field")
        self._note_blank_line()
        self.current.fields.append(_Field(tag, number, [content]))
        self.current.end = number

    def _end(self, index: int, line: str, stripped: str) -> None:
        number = index + 1
        if stripped.startswith("-}"):
            trailer = stripped[2:]
            if _BLOCK.sub("", trailer):
                raise self._fail(number, f"{_shown(stripped)} ends the message with "
                                         "unreadable text")
        elif stripped == "-" and self.current is not None and not self._boundary_after(index):
            # SWIFT forbids a lone '-' inside a field, but ING's files wrap :86: text there
            # (".../MARF/MND" "-" "EV01//CSID..."): with no new statement after it, it is text.
            self.current.note("dash", f"line {number}: a line holding only '-' read as field "
                                      "text, not as the end of the statement")
            self._continue(number, line)
            return
        if self.current is not None:
            self.current.end = number
        self._close()

    def _boundary_after(self, index: int) -> bool:
        for following in self.lines[index + 1:]:
            text = following.strip()
            if text:
                return (text.startswith(("{", "-")) or bool(_TAG.match(following))
                        or _is_header(text))
        return True

    def _envelope(self, line: str, number: int) -> str:
        """Reads SWIFT blocks {1:}{2:}{3:} and returns what follows '{4:' on the line."""
        position = 0
        while position < len(line):
            if line.startswith("{4:", position):
                return line[position + 3:]
            block = _BLOCK.match(line, position)
            if block is None:
                raise self._fail(number, f"{_shown(line[position:])} is not a SWIFT block")
            if block.group(1) == "2":
                self.mt_type = self._message_type(block.group(2), number)
            position = block.end()
        return ""

    def _message_type(self, application_header: str, number: int) -> str:
        mt = application_header[1:4]
        if application_header[:1] not in ("I", "O") or mt not in ("940", "942"):
            raise self._fail(number, f"SWIFT block {{2:{application_header}}} is not an "
                                     "MT940 or MT942")
        return mt


# --- values ------------------------------------------------------------------------------


def _year(yy: int) -> int:
    return 2000 + yy if yy < 80 else 1900 + yy


def _date(text: str, what: str) -> date:
    try:
        return date(_year(int(text[:2])), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise _Problem(f"{what} {text!r} is not a date YYMMDD") from None


def _entry_date(value_date: date, mmdd: str) -> date:
    month, day = int(mmdd[:2]), int(mmdd[2:])
    candidates = []
    for year in (value_date.year - 1, value_date.year, value_date.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue
    if not candidates:
        raise _Problem(f"entry date {mmdd!r} is not a date MMDD")
    return min(candidates, key=lambda candidate: abs(candidate - value_date))


def _amount(text: str, currency: str, block: _Block, line: int) -> Money:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise _Problem(f"amount {text!r} is not a SWIFT amount "
                       "(digits, a decimal comma, decimals)", line)
    if match.group("fraction") is None:
        block.note("comma", f"line {line}: amount {text!r} has no decimal comma; read as {text},")
    number = Decimal(f"{match.group('whole')}.{match.group('fraction') or '0'}")
    try:
        return Money.of(number, currency)
    except MoneyError as error:
        raise _Problem(f"amount {text!r}: {error}", line) from None


@dataclass(frozen=True)
class _Balance:
    money: Money
    on: date


def _balance(content: str, block: _Block, line: int) -> _Balance:
    match = _BALANCE.fullmatch(content)
    if match is None:
        raise _Problem(f"balance {_shown(content)} is not C/D, date YYMMDD, currency, amount")
    money = _amount(match.group("amount"), match.group("ccy"), block, line)
    on = _date(match.group("date"), "balance date")
    return _Balance(-money if match.group("mark") == "D" else money, on)


# --- :61: and :86: -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Information:
    end_to_end_id: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance: str | None = None


def _information(lines: list[str]) -> _Information:
    lines = [line for line in lines if line.strip()]
    if not lines:
        return _Information()
    start = lines[0].lstrip()
    if _DUTCH_KEY.match(start):
        return _dutch("".join([start, *lines[1:]]).strip())
    if _GERMAN.match(start):
        return _german("".join([start, *lines[1:]]).strip())
    return _Information(remittance=_free_text(lines))


def _free_text(pieces: Iterable[str], width: int = _WIDTH) -> str:
    """Pieces that fill the width were cut mid-word and join with nothing, others with a space."""
    text = ""
    wrapped = False
    for piece in pieces:
        if not piece.strip():
            wrapped = False
            continue
        text = text + piece if wrapped else f"{text.rstrip()} {piece.lstrip()}"
        wrapped = len(piece) >= width and not piece[-1].isspace()
    return text.strip()


def _reference(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value in _NO_REFERENCE else value


def _dutch(text: str) -> _Information:
    """/KEY/value fields as ING, Rabobank and ABN AMRO write them."""
    keys = list(_DUTCH_KEY.finditer(text))
    values: dict[str, str] = {}
    for key, following in zip(keys, [*keys[1:], None]):
        value = text[key.end():following.start() if following else len(text)]
        # ING closes each value with '/' before the next '/KEY/'.
        values.setdefault(key.group(1), value.removesuffix("/"))
    name, account = values.get("NAME"), values.get("IBAN")
    if "CNTP" in values:
        # CNTP is account/BIC/name/city.
        parts = values["CNTP"].split("/")
        account = parts[0]
        name = parts[2] if len(parts) > 2 else None
    remittance = values.get("REMI", "")
    if remittance.startswith("USTD//"):
        remittance = remittance[len("USTD//"):]
    elif remittance.startswith("STRD/"):
        remittance = remittance.split("/", 2)[-1]
    return _Information(
        end_to_end_id=_reference(values.get("EREF")) or _reference(values.get("KREF")),
        counterparty_name=(name or "").strip() or None,
        counterparty_account=(account or "").strip() or None,
        remittance=remittance.strip() or text,
    )


def _german(text: str) -> _Information:
    """The German ZKA layout: a 3-digit business code, then ?NN subfields."""
    separator = text[3]
    pieces = re.split(re.escape(separator) + r"([0-9]{2})", text[3:])
    subfields: dict[int, str] = {}
    for code, value in zip(pieces[1::2], pieces[2::2]):
        subfields[int(code)] = subfields.get(int(code), "") + value
    # Remittance (?20-?29, ?60-?63) and name (?32, ?33) come in pieces of 27 characters.
    purpose = [subfields[code] for code in [*range(20, 30), *range(60, 64)] if code in subfields]
    name = _free_text([subfields.get(32, ""), subfields.get(33, "")], _GERMAN_WIDTH)
    return _Information(
        end_to_end_id=_sepa_value(purpose, "EREF") or _sepa_value(purpose, "KREF"),
        counterparty_name=name or None,
        counterparty_account=subfields.get(31, "").strip() or None,
        remittance=_free_text(purpose, _GERMAN_WIDTH) or text,
    )


def _sepa_value(purpose: Sequence[str], keyword: str) -> str | None:
    """A SEPA keyword's value: it starts a subfield and runs on only through full ones."""
    for index, piece in enumerate(purpose):
        if not piece.startswith(keyword + "+"):
            continue
        value = piece[len(keyword) + 1:]
        for previous, following in zip(purpose[index:], purpose[index + 1:]):
            if len(previous) < _GERMAN_WIDTH or _SEPA_KEYWORD.match(following):
                break
            value += following
        return _reference(value)
    return None


class _Cursor:
    """Reads a :61: line piece by piece so a refusal names the piece that is wrong."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        found = self.maybe(pattern)
        if found is None:
            raise _Problem(f":61: {_shown(self.text)} has no {what} at position "
                           f"{self.position + 1}")
        return found

    def maybe(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.position)
        if match is None:
            return None
        self.position = match.end()
        return match.group()

    def rest(self) -> str:
        return self.text[self.position:]


@dataclass(frozen=True)
class _Entry:
    line: StatementLine
    debit: bool


def _statement_line(f61: _Field, info: list[str], currency: str, block: _Block) -> _Entry:
    cursor = _Cursor(f61.lines[0].rstrip())
    value_date = _date(cursor.take(_VALUE_DATE, "value date YYMMDD"), "value date")
    entry = cursor.maybe(_ENTRY_DATE)
    mark = cursor.take(_MARK, "debit/credit mark (C, D, RC or RD)")
    funds = cursor.maybe(_FUNDS_CODE)
    if funds is not None and funds != currency[2]:
        block.note("funds", f"line {f61.line}: :61: funds code {funds!r} is not the last "
                            f"letter of the statement currency {currency}")
    amount = _amount(cursor.take(_AMOUNT_TEXT, "amount"), currency, block, f61.line)
    cursor.take(_TRANSACTION_TYPE, "transaction type (N, F or S and 3 letters or digits)")
    reference, bank_reference, same_line_details = _references(cursor.rest())
    for value in (reference, bank_reference):
        if value and len(value) > _MAX_REFERENCE:
            block.note("reference", f"line {f61.line}: :61: reference {value!r} is longer "
                                    f"than {_MAX_REFERENCE} characters")
    details = same_line_details or "".join(part.strip() for part in f61.lines[1:])
    information = _information(info)
    # RD undoes a debit (money comes back in); RC undoes a credit (money goes out).
    debit = mark in ("D", "RC")
    account = information.counterparty_account
    if account is None and _IBAN_SHAPE.fullmatch(details):
        # Rabobank gives the counterparty's IBAN only in the supplementary details.
        account = details
    return _Entry(
        StatementLine(
            amount=-amount if debit else amount,
            booking_date=_entry_date(value_date, entry) if entry else None,
            value_date=value_date,
            end_to_end_id=information.end_to_end_id or _reference(reference),
            bank_reference=_reference(bank_reference),
            counterparty_name=information.counterparty_name,
            counterparty_account=account,
            remittance=information.remittance,
            is_reversal=mark.startswith("R"),
        ),
        debit,
    )


def _references(text: str) -> tuple[str, str | None, str]:
    """Customer reference, bank reference (after '//') and details left on the same line."""
    reference, separator, bank_reference = text.partition("//")
    if separator:
        return reference.strip(), bank_reference.strip(), ""
    # Old Rabobank files pad the reference to 16 characters and write the counterparty's
    # name after it on the same line.
    if len(reference) > _MAX_REFERENCE and reference[_MAX_REFERENCE - 1] == " ":
        return reference[:_MAX_REFERENCE].strip(), None, reference[_MAX_REFERENCE:].strip()
    return reference.strip(), None, ""


# --- raw statements to Statement ---------------------------------------------------------


def _kind(block: _Block) -> str:
    if block.mt_type is not None:
        return f"mt{block.mt_type}"
    tags = {f.tag for f in block.fields}
    if tags & _MT942_ONLY:
        return "mt942"
    if tags & {"60F", "60M", "62F", "62M", "64", "65"}:
        return "mt940"
    # Nothing says 940 and there are no balances: an interim report.
    return "mt942"


def _check_order(fields: Sequence[_Field], order: dict[str, int], kind: str) -> None:
    previous: _Field | None = None
    for f in fields:
        if f.tag == "86":
            continue
        if f.tag not in order:
            raise _Problem(f":{f.tag}: does not belong in an {kind.upper()}", f.line)
        if previous is not None:
            if order[f.tag] < order[previous.tag]:
                raise _Problem(f":{f.tag}: is out of order: it comes after :{previous.tag}:",
                               f.line)
            if order[f.tag] == order[previous.tag] and (
                f.tag not in _REPEATABLE or f.tag != previous.tag
            ):
                raise _Problem(f":{f.tag}: repeats :{previous.tag}:, which may appear only once",
                               f.line)
        previous = f


def _adds_up(opening: _Balance, closing: _Balance, lines: Sequence[StatementLine]) -> list[str]:
    notes = []
    movement = Money.sum((line.amount for line in lines), opening.money.currency)
    expected = opening.money + movement
    if expected != closing.money:
        notes.append(
            f"does not add up: opening balance {opening.money} plus entries {movement} is "
            f"{expected}, but the closing balance is {closing.money} "
            f"(difference {closing.money - expected})"
        )
    if closing.on < opening.on:
        notes.append(f"closing balance date {closing.on} is before the opening balance date "
                     f"{opening.on}")
    return notes


def _account(text: str, currency: str) -> tuple[str, str | None]:
    """The account, without a trailing currency equal to the statement's (ING, Rabobank)."""
    head = text[: -len(currency)]
    if text.endswith(currency) and head and head[-1] in "0123456789 ":
        account = head.rstrip()
        return account, f":25: account {text!r} ends in the statement currency; read as {account!r}"
    return text, None


class _Statement:
    """Turns one block's fields into a Statement, checking what it can without fixing."""

    def __init__(self, block: _Block, source: str, file_notes: Sequence[str]) -> None:
        self.block = block
        self.source = source
        self.file_notes = file_notes
        self.kind = _kind(block)
        self.order = _MT940_ORDER if self.kind == "mt940" else _MT942_ORDER

    def build(self) -> Statement:
        try:
            return self._statement()
        except _Problem as problem:
            raise FormatError(self.source, problem.line or self.block.start, str(problem)) from None

    def _note(self, key: str, message: str) -> None:
        self.block.note(key, message)

    def _one(self, *tags: str) -> _Field | None:
        return next((f for f in self.block.fields if f.tag in tags), None)

    def _all(self, *tags: str) -> list[_Field]:
        return [f for f in self.block.fields if f.tag in tags]

    def _required(self, what: str, *tags: str) -> _Field:
        found = self._one(*tags)
        if found is not None:
            return found
        # Name the line where the field was due: the first later field, else the end.
        rank = self.order[tags[0]]
        later = [f.line for f in self.block.fields if self.order.get(f.tag, -1) > rank]
        raise _Problem(f"statement has no {what}", later[0] if later else self.block.end)

    def _statement(self) -> Statement:
        _check_order(self.block.fields, self.order, self.kind)
        f20 = self.block.fields[0]
        statement_id = f20.text()
        if not statement_id:
            raise _Problem(":20: statement reference is empty", f20.line)
        if len(statement_id) > _MAX_REFERENCE:
            self._note("id", f":20: reference {statement_id!r} is longer than SWIFT's "
                             f"{_MAX_REFERENCE} characters")
        f25 = self._required("account (:25:)", "25", "25P")
        # :25P: is the account, then the account servicer's BIC on a second line.
        account = f25.lines[0].strip() if f25.tag == "25P" else f25.text()
        if not account:
            raise _Problem(":25: account is empty", f25.line)
        f28 = self._required("statement number (:28C:)", "28C", "28")
        sequence = f28.text()
        if not _SEQUENCE.fullmatch(sequence):
            raise _Problem(f":{f28.tag}: {_shown(sequence)} is not a statement number "
                           "like 00001 or 00001/001", f28.line)
        if self.kind == "mt940":
            return self._mt940(statement_id, account, sequence)
        return self._mt942(statement_id, account, sequence)

    def _entries(self, currency: str) -> list[_Entry]:
        pairs: list[tuple[_Field, list[_Field]]] = []
        after_61 = False
        for f in self.block.fields:
            if f.tag == "86":
                # Only an :86: right after a :61: describes it; others describe the statement.
                if after_61:
                    if pairs[-1][1]:
                        self._note("86", f"line {f.line}: several :86: fields for one :61: "
                                         "read as one")
                    pairs[-1][1].append(f)
                continue
            after_61 = f.tag == "61"
            if after_61:
                pairs.append((f, []))
        entries = []
        for f61, infos in pairs:
            with _at(f61.line):
                lines = [line for info in infos for line in info.lines]
                entries.append(_statement_line(f61, lines, currency, self.block))
        return entries

    def _balance(self, f: _Field, currency: str | None) -> _Balance:
        with _at(f.line):
            balance = _balance(f.single_line(), self.block, f.line)
        if currency is not None and balance.money.currency.code != currency:
            raise _Problem(f":{f.tag}: is in {balance.money.currency.code} but the statement "
                           f"is in {currency}", f.line)
        return balance

    def _mt940(self, statement_id: str, account: str, sequence: str) -> Statement:
        f60 = self._required("opening balance (:60F: or :60M:)", "60F", "60M")
        f62 = self._required("closing balance (:62F: or :62M:)", "62F", "62M")
        opening = self._balance(f60, None)
        currency = opening.money.currency.code
        closing = self._balance(f62, currency)
        for f in self._all("64", "65"):
            self._balance(f, currency)
        if f60.tag == "60M":
            self._note("60M", f"line {f60.line}: opening balance is intermediate (:60M:): this "
                              "page continues an earlier one")
        if f62.tag == "62M":
            self._note("62M", f"line {f62.line}: closing balance is intermediate (:62M:): the "
                              "statement continues on a later page")
        lines = tuple(entry.line for entry in self._entries(currency))
        account, stripped = _account(account, currency)
        warnings = [*self.file_notes, *([stripped] if stripped else []),
                    *self.block.notes.values(), *_adds_up(opening, closing, lines)]
        return Statement(
            account=account, currency=currency, statement_id=statement_id, sequence=sequence,
            opening_balance=opening.money, closing_balance=closing.money, lines=lines,
            from_date=opening.on, to_date=closing.on, kind="mt940", warnings=tuple(warnings),
        )

    def _mt942(self, statement_id: str, account: str, sequence: str) -> Statement:
        if self.block.mt_type != "942" and not {f.tag for f in self.block.fields} & _MT942_ONLY:
            what = "balances (:60F:/:62F:, MT940) or floor limit (:34F:, MT942)"
        else:
            what = "floor limit (:34F:)"
        floors = [self._required(what, "34F"), *self._all("34F")[1:]]
        if len(floors) > 2:
            raise _Problem(":34F: appears more than twice", floors[2].line)
        currency = ""
        for f in floors:
            match = _FLOOR.fullmatch(f.single_line())
            if match is None:
                raise _Problem(f":34F: {_shown(f.single_line())} is not currency, D/C, amount",
                               f.line)
            currency = currency or match.group("ccy")
            if match.group("ccy") != currency:
                raise _Problem(f":34F: is in {match.group('ccy')} but the report is in {currency}",
                               f.line)
            _amount(match.group("amount"), currency, self.block, f.line)
        f13 = self._required("date-time indication (:13D:)", "13D")
        with _at(f13.line):
            created_at = _datetime(f13.single_line())
        entries = self._entries(currency)
        for tag, debit in (("90D", True), ("90C", False)):
            f = self._one(tag)
            if f is not None:
                self._total(f, currency, [e.line for e in entries if e.debit == debit])
        account, stripped = _account(account, currency)
        warnings = [*self.file_notes, *([stripped] if stripped else []),
                    *self.block.notes.values()]
        return Statement(
            account=account, currency=currency, statement_id=statement_id, sequence=sequence,
            opening_balance=None, closing_balance=None,
            lines=tuple(entry.line for entry in entries), created_at=created_at, kind="mt942",
            warnings=tuple(warnings),
        )

    def _total(self, f: _Field, currency: str, lines: Sequence[StatementLine]) -> None:
        match = _TOTAL.fullmatch(f.single_line())
        if match is None:
            raise _Problem(f":{f.tag}: {_shown(f.single_line())} is not count, currency, amount",
                           f.line)
        if match.group("ccy") != currency:
            raise _Problem(f":{f.tag}: is in {match.group('ccy')} but the report is in {currency}",
                           f.line)
        stated = _amount(match.group("amount"), currency, self.block, f.line)
        found = abs(Money.sum((line.amount for line in lines), currency))
        side = "debit" if f.tag == "90D" else "credit"
        if int(match.group("count")) != len(lines) or stated != found:
            self._note(f.tag, f"line {f.line}: :{f.tag}: says {int(match.group('count'))} {side} "
                              f"entries totalling {stated}, but the report holds {len(lines)} "
                              f"totalling {found}")


def _datetime(text: str) -> datetime:
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise _Problem(f":13D: {_shown(text)} is not YYMMDDHHMM and a UTC offset like +0100")
    day, hour, minute, sign, offset_hours, offset_minutes = match.groups()
    on = _date(day, ":13D: date")
    offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
    try:
        zone = timezone(-offset if sign == "-" else offset)
        return datetime(on.year, on.month, on.day, int(hour), int(minute), tzinfo=zone)
    except ValueError:
        raise _Problem(f":13D: {text!r} is not a valid date and time") from None


# --- entry point -------------------------------------------------------------------------


def parse_mt940(data: bytes, source: str = "<bytes>") -> list[Statement]:
    """Every statement in an MT940/MT942 file, or a `FormatError` naming the line."""
    text, file_notes = _decode(data)
    lines = text.split("\n")
    blocks = _Reader(lines, source).read()
    if not blocks:
        last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=1)
        raise FormatError(source, last, "no MT940/MT942 statement (no :20: field)")
    return [_Statement(block, source, file_notes).build() for block in blocks]


__all__ = ["FormatError", "parse_mt940"]
