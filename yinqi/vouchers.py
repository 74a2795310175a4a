"""Voucher intake, the pure part: read an ERP export, map its columns, check every row.

Nothing here touches the database or the clock. A file comes in as bytes and leaves as an
:class:`IntakeResult` in which every input row is either an accepted :class:`VoucherLine` or a
:class:`Quarantined` row with all of its problems in one line, so nothing is dropped in silence.
``yinqi.store.intake`` then stores the result.

Reasons name the file's own column (for the default layout the Chinese one), because that is
what the treasury clerk who fixes the row in the ERP sees.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from yinqi.currency import CNY, Currency
from yinqi.errors import ConfigError, CurrencyError, InvalidValue, MoneyError
from yinqi.identifiers import CnAccountNumber, CnapsCode, mask
from yinqi.money import Money
from yinqi.payments import Category
from yinqi.security.masking import redact

# --- reading ------------------------------------------------------------------------------


class Rows(list[dict[str, str]]):
    """A file's rows (column -> text) plus what a plain list cannot carry.

    ``numbers[i]`` is row i's number as the operator finds it: the spreadsheet row (header =
    1) for CSV and XLSX, the 1-based position for JSON. ``flaws`` holds, per row number, the
    cells whose text cannot be trusted (a JSON float, a spreadsheet number that lost digits),
    each with its reason; column ``""`` is a problem of the whole row. ``header`` is the
    header row, or None where the file has none (JSON).
    """

    def __init__(
        self,
        rows: Iterable[dict[str, str]] = (),
        *,
        numbers: Iterable[int] | None = None,
        header: Sequence[str] | None = None,
        flaws: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(rows)
        self.numbers = list(numbers) if numbers is not None else list(range(2, len(self) + 2))
        if len(self.numbers) != len(self):
            raise ValueError(f"{len(self)} rows but {len(self.numbers)} row numbers")
        self.header = tuple(header) if header is not None else None
        self.flaws = {row: dict(cells) for row, cells in (flaws or {}).items()}

    def columns(self) -> set[str]:
        if self.header is not None:
            return set(self.header)
        return {column for row in self for column in row}


class _JsonFloat(str):
    """A JSON number with a fraction or exponent, kept as the text the file has."""


_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
# Excel keeps 15 significant digits (DBL_DIG) of any number typed into a cell.
_SPREADSHEET_DIGITS = 15
# JavaScript and many JSON libraries hold numbers as doubles: beyond 2**53 digits change.
_JSON_SAFE_INT = 2**53


def read_rows(data: bytes, file_name: str) -> Rows:
    """The rows of a CSV, XLSX or JSON voucher file, recognised by content, not by name."""
    if not data.strip():
        raise InvalidValue(f"{file_name}: the file is empty")
    if data.startswith(_XLSX_MAGIC):
        return _read_xlsx(data, file_name)
    if data.startswith(_XLS_MAGIC):
        raise InvalidValue(
            f"{file_name}: an Excel 97-2003 .xls workbook; save it as .xlsx or CSV first"
        )
    text = _decode(data, file_name)
    if text.lstrip()[:1] in ("{", "["):
        return _read_json(text, file_name)
    return _read_csv(text, file_name)


def _decode(data: bytes, file_name: str) -> str:
    """UTF-16 or UTF-8 by their byte-order marks, else strict UTF-8, else strict GB18030."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" export.
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _undecodable(file_name, "UTF-16", exc) from None
    if b"\x00" in data:
        raise InvalidValue(f"{file_name}: contains NUL bytes; not a CSV or JSON text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        if _mostly_utf8(data):
            # Real UTF-8 with a damaged byte would decode as GB18030 into plausible-looking
            # nonsense: refuse rather than guess.
            raise _undecodable(file_name, "UTF-8", utf8_error) from None
    try:
        # GB18030 is a superset of GBK and GB2312, what Excel writes in a Chinese locale.
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise InvalidValue(
            f"{file_name}: neither UTF-8 nor GBK/GB18030 text "
            f"(byte {data[exc.start]:#04x} at offset {exc.start}); save it as UTF-8 CSV"
        ) from None


def _mostly_utf8(data: bytes) -> bool:
    decoded = data.decode("utf-8", errors="replace")
    broken = decoded.count("\ufffd")
    fine = sum(1 for char in decoded if char > "\x7f") - broken
    return fine > broken


def _undecodable(file_name: str, encoding: str, exc: UnicodeDecodeError) -> InvalidValue:
    return InvalidValue(
        f"{file_name}: {encoding} text with an invalid byte {exc.object[exc.start]:#04x} "
        f"at offset {exc.start}; fix the file's encoding"
    )


def _read_csv(text: str, file_name: str) -> Rows:
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    flaws: dict[int, dict[str, str]] = {}
    number = 1
    try:
        header = _header(next(records, []), file_name)
        for number, record in enumerate(records, start=2):
            if not any(cell.strip() for cell in record):
                continue  # a blank spreadsheet row carries no voucher
            cells, flaw = _fit(record, header)
            if flaw:
                flaws[number] = {"": flaw}
            rows.append(cells)
            numbers.append(number)
    except csv.Error as exc:
        raise InvalidValue(f"{file_name}: row {number + 1}: not valid CSV ({exc})") from None
    return Rows(rows, numbers=numbers, header=[h for h in header if h], flaws=flaws)


def _header(cells: Sequence[object], file_name: str) -> list[str]:
    header = [("" if c is None else str(c)).strip().lstrip("\ufeff") for c in cells]
    if not any(header):
        raise InvalidValue(f"{file_name}: row 1 must be the header row, but it is empty")
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name and name in seen:
            raise InvalidValue(
                f"{file_name}: column {name!r} appears twice in the header "
                f"(columns {seen[name]} and {position})"
            )
        seen[name] = position
    return header


def _fit(record: Sequence[str], header: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """The record as column -> text; a reason if it has data beyond the header's columns."""
    extra = [cell for cell in record[len(header):] if cell.strip()]
    flaw = (f"row has {len(record)} cells but the header has {len(header)} columns"
            if extra else None)
    cells = {name: record[i] if i < len(record) else ""
             for i, name in enumerate(header) if name}
    return cells, flaw


def _read_xlsx(data: bytes, file_name: str) -> Rows:
    import openpyxl

    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    flaws: dict[int, dict[str, str]] = {}
    try:
        # data_only: a formula cell gives the value Excel computed and saved, never the
        # formula; nothing in the file is ever evaluated here.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl has no one error type for a damaged workbook
        raise InvalidValue(f"{file_name}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        # The sheet size stored in the file may be wrong; read every row that is there.
        sheet.reset_dimensions()
        records = sheet.iter_rows(values_only=True)
        header = _header(next(records, ()), file_name)
        for number, record in enumerate(records, start=2):
            texts = [_cell_text(value) for value in record]
            if not any(text.strip() for text, _ in texts):
                continue
            cells, flaw = _fit([text for text, _ in texts], header)
            row_flaws = {header[i]: f"{header[i]} {_shown(text)}: {why}"
                         for i, (text, why) in enumerate(texts)
                         if why and i < len(header) and header[i]}
            if flaw:
                row_flaws[""] = flaw
            if row_flaws:
                flaws[number] = row_flaws
            rows.append(cells)
            numbers.append(number)
    except InvalidValue:
        raise
    except Exception as exc:  # a damaged sheet fails while it is streamed, not when opened
        raise InvalidValue(f"{file_name}: not a readable .xlsx workbook ({exc})") from None
    finally:
        book.close()
    return Rows(rows, numbers=numbers, header=[h for h in header if h], flaws=flaws)


def _cell_text(value: object) -> tuple[str, str | None]:
    """A cell as text, and why that text cannot be trusted (None when it can)."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, datetime):
        return (value.date().isoformat() if value.time() == time() else value.isoformat(" ")), None
    if isinstance(value, date | time):
        return value.isoformat(), None
    return str(value), None


def _float_text(value: float) -> tuple[str, str | None]:
    # openpyxl returns every numeric cell as a binary float. repr() gives the shortest text
    # that reads back as the same float, and a double tells apart all decimals of up to 15
    # significant digits (DBL_DIG), so a number typed with <= 15 significant digits comes
    # back digit for digit: Decimal(repr(x)) is exact for it, where Decimal(x) would expose
    # the binary approximation (1665931.34 -> 1665931.3400000000838190317153930664...).
    text = repr(value)
    if not math.isfinite(value):
        return text, "not a number"
    number = Decimal(text)
    if abs(number) >= 10**_SPREADSHEET_DIGITS:
        return (f"{number:f}", f"a number with more than {_SPREADSHEET_DIGITS} digits has lost "
                "its last digits in the spreadsheet: format the column as text and retype it")
    if len(number.normalize().as_tuple().digits) > _SPREADSHEET_DIGITS:
        return (f"{number:f}", "not an exact decimal but a calculation's binary noise: round "
                "it in the sheet or format the column as text")
    if number == number.to_integral_value():
        # 755912345610808.0 is an account number typed as a number: keep it digits only.
        return str(int(number)), None
    return f"{number:f}", None


def _read_json(text: str, file_name: str) -> Rows:
    try:
        doc = json.loads(text, parse_float=_JsonFloat, parse_constant=_JsonFloat)
    except json.JSONDecodeError as exc:
        raise InvalidValue(
            f"{file_name}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    items = doc.get("vouchers") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidValue(
            f'{file_name}: expected {{"vouchers": [...]}} or a list of voucher objects'
        )
    rows: list[dict[str, str]] = []
    flaws: dict[int, dict[str, str]] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            rows.append({})
            flaws[number] = {"": f"item is {_json_kind(item)}, not an object of fields"}
            continue
        cells: dict[str, str] = {}
        for key, value in item.items():
            column = str(key).strip()
            cells[column], why = _json_text(value)
            if why:
                flaws.setdefault(number, {})[column] = f"{column} {cells[column]}: {why}"
        rows.append(cells)
    return Rows(rows, numbers=range(1, len(rows) + 1), flaws=flaws)


def _json_text(value: object) -> tuple[str, str | None]:
    if isinstance(value, _JsonFloat):
        return str(value), ("a JSON float, and floats lose cents: write the value as a "
                            'string, e.g. "1234.50"')
    if isinstance(value, str):
        return value, None
    if value is None:
        return "", None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int):
        if abs(value) > _JSON_SAFE_INT:
            return str(value), ("a JSON number this long may have lost digits on the way "
                                "(JavaScript keeps 15-16): write it as a string")
        return str(value), None
    shown = json.dumps(value, ensure_ascii=False)
    return shown, f"is {_json_kind(value)}, but values must be strings or integers"


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             type(None): "null", int: "a number", _JsonFloat: "a number"}
    return kinds.get(type(value), type(value).__name__)


# --- mapping ------------------------------------------------------------------------------

_REQUIRED = frozenset({"external_ref", "voucher_date", "debtor_account", "creditor_name",
                       "creditor_account", "amount", "purpose", "category"})


@dataclass(frozen=True, kw_only=True)
class ColumnMapping:
    """Which column of a layout holds each voucher field; None: the layout has no such column.

    Optional fields fall back: no currency -> the debtor account's, no requested date -> the
    voucher date, not urgent, no maker -> whoever imports the file.
    """

    name: str
    external_ref: str
    voucher_date: str
    debtor_account: str
    creditor_name: str
    creditor_account: str
    creditor_bank_name: str | None = None
    creditor_cnaps: str | None = None
    amount: str
    currency: str | None = None
    purpose: str
    category: str
    urgent: str | None = None
    maker: str | None = None
    requested_date: str | None = None

    def column(self, field_name: str) -> str | None:
        value: str | None = getattr(self, field_name)
        return value

    def label(self, field_name: str) -> str:
        """The column name for messages; the field's own name where the layout lacks it."""
        return self.column(field_name) or field_name

    def required_columns(self) -> list[str]:
        return [getattr(self, name) for name in CANONICAL_FIELDS if name in _REQUIRED]


CANONICAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ColumnMapping) if f.name != "name")

ERP_CN = ColumnMapping(
    name="erp-cn", external_ref="单据编号", voucher_date="单据日期", debtor_account="付款账号",
    creditor_name="收款户名", creditor_account="收款账号", creditor_bank_name="收款银行",
    creditor_cnaps="联行号", amount="金额", currency="币种", purpose="用途", category="类别",
    urgent="加急", maker="制单人", requested_date="期望付款日",
)
ERP_EN = ColumnMapping(
    name="erp-en", external_ref="voucher_no", voucher_date="date",
    debtor_account="debtor_account", creditor_name="payee_name",
    creditor_account="payee_account", creditor_bank_name="payee_bank", creditor_cnaps="cnaps",
    amount="amount", currency="currency", purpose="purpose", category="category",
    urgent="urgent", maker="maker", requested_date="value_date",
)
BUILT_IN_MAPPINGS: Mapping[str, ColumnMapping] = {m.name: m for m in (ERP_CN, ERP_EN)}
DEFAULT_MAPPING = ERP_CN.name
MAPPINGS_FILE = "voucher_mappings.toml"


def load_mappings(config_dir: Path | None) -> dict[str, ColumnMapping]:
    """The built-in mappings plus those of ``voucher_mappings.toml`` in ``config_dir``."""
    mappings = dict(BUILT_IN_MAPPINGS)
    path = config_dir / MAPPINGS_FILE if config_dir is not None else None
    if path is None or not path.exists():
        return mappings
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    unknown = sorted(set(doc) - {"mappings"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (expected [mappings.<name>])")
    tables = doc.get("mappings", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: mappings: must be tables like [mappings.<name>]")
    for name, table in tables.items():
        mappings[name] = _mapping_from_toml(path, name, table)
    return mappings


def _mapping_from_toml(path: Path, name: str, table: object) -> ColumnMapping:
    where = f"{path}: mappings.{name}"
    if name in BUILT_IN_MAPPINGS:
        raise ConfigError(f"{where}: {name!r} is a built-in mapping; choose another name")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table of field = \"column name\"")
    for key, value in table.items():
        if key not in CANONICAL_FIELDS:
            raise ConfigError(
                f"{where}.{key}: unknown field (fields: {', '.join(CANONICAL_FIELDS)})"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key}: must be a column name in quotes (got {value!r})")
    missing = [f for f in CANONICAL_FIELDS if f in _REQUIRED and f not in table]
    if missing:
        raise ConfigError(f"{where}: missing required field(s): {', '.join(missing)}")
    return ColumnMapping(name=name, **{key: value.strip() for key, value in table.items()})


# --- validation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoucherLine:
    """One accepted voucher row, every field checked and typed."""

    row: int
    external_ref: str
    end_to_end_id: str
    fields: dict[str, str]
    voucher_date: date
    debtor_account: CnAccountNumber
    creditor_name: str
    creditor_account: CnAccountNumber
    creditor_bank_name: str
    creditor_cnaps: CnapsCode | None
    amount: Money
    purpose: str
    category: Category
    urgent: bool
    maker: str | None
    requested_date: date


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A row that failed its checks, with every problem found; ``external_ref`` may be ''."""

    row: int
    reason: str
    fields: dict[str, str]
    external_ref: str = ""


@dataclass(frozen=True, slots=True)
class IntakeResult:
    source: str
    accepted: list[VoucherLine] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.accepted) + len(self.quarantined)


# What a bank accepts and the store holds. 140 is ISO 20022's Max140Text, the longest any
# dialect carries; a dialect with a shorter limit (70 for some Chinese banks' payee names)
# has to check it where its message is built.
MAX_NAME = 140
MAX_PURPOSE = 140
MAX_REF = 64  # vouchers.external_ref
MAX_MAKER = 64  # payments.maker
_MAX_MINOR = 2**63 - 1  # payments.amount_minor is a BIGINT

_CATEGORIES = {"供应商": Category.SUPPLIER, "supplier": Category.SUPPLIER,
               "工资": Category.PAYROLL, "payroll": Category.PAYROLL,
               "报销": Category.EXPENSE, "expense": Category.EXPENSE}
_UNKNOWN_CATEGORY = f"unknown category (known: {', '.join(_CATEGORIES)})"
_URGENT = {"是": True, "否": False, "yes": True, "no": False, "true": True, "false": False,
           "1": True, "0": False}
# What Chinese ERPs write instead of an ISO code; each one names exactly one currency.
_CURRENCY_ALIASES = {"RMB": "CNY", "人民币": "CNY", "美元": "USD", "港币": "HKD", "港元": "HKD",
                     "欧元": "EUR"}
_DATE = re.compile(
    r"(?P<y>\d{4})[-/.年](?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_COMPACT_DATE = re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})")
_ACCOUNT_SEPARATORS = re.compile(r"[\s\-]+")
# Characters a bank cannot print and an operator cannot see: control and format characters
# (bidi overrides, zero-width spaces), lone surrogates from JSON escapes, private-use code
# points, line and paragraph separators. Ordinary and ideographic spaces are fine.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def validate_rows(
    rows: Sequence[Mapping[str, str]],
    mapping: ColumnMapping,
    *,
    own_accounts: Mapping[str, str],
    source: str,
) -> IntakeResult:
    """Check every row; ``own_accounts`` maps each company account number to its currency.

    A plain list of rows is numbered like a spreadsheet under a header (2, 3, ...). Raises
    InvalidValue when the file lacks a column the mapping requires: then no row could pass.
    A voucher number seen again in the file quarantines the later rows; the first one stands.
    """
    table = rows if isinstance(rows, Rows) else Rows([dict(r) for r in rows])
    _check_columns(table, mapping)
    layout = _Layout(mapping)
    result = IntakeResult(source=source)
    first_row: dict[str, int] = {}
    seen: Counter[str] = Counter()
    for number, raw in zip(table.numbers, table, strict=True):
        cells = _Cells(raw, layout, table.flaws.get(number, {}))
        line = _check_row(cells, number, own_accounts, source)
        ref = cells.ref
        if ref:
            seen[ref] += 1
            first = first_row.setdefault(ref, number)
            if seen[ref] > 1:
                times = "twice" if seen[ref] == 2 else f"{seen[ref]} times"
                cells.problems.append(f"{layout.labels['external_ref']} {ref}: appears {times} "
                                      f"in this file (first on row {first})")
        if line is not None and not cells.problems:
            result.accepted.append(line)
        else:
            result.quarantined.append(
                Quarantined(number, "; ".join(cells.problems), raw, ref or "")
            )
    return result


def _check_columns(table: Rows, mapping: ColumnMapping) -> None:
    if table.header is None and not table:
        return  # an empty JSON list: nothing to check the layout against
    present = table.columns()
    missing = [c for c in mapping.required_columns() if c not in present]
    if missing:
        raise InvalidValue(
            f"missing column(s) {', '.join(missing)} that mapping {mapping.name!r} needs"
            # A file without a header row has a voucher there: its account numbers masked.
            + (f"; the file has: {redact(', '.join(table.header))}" if table.header else "")
        )


class _Layout:
    """A mapping looked up once per file instead of once per cell."""

    def __init__(self, mapping: ColumnMapping) -> None:
        self.columns = {name: mapping.column(name) for name in CANONICAL_FIELDS}
        self.labels = {name: mapping.label(name) for name in CANONICAL_FIELDS}


_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class _Bad:
    """Why a value is refused, and the value as the reason quotes it."""

    shown: str
    why: str


class _Cells:
    """One row seen through the mapping, collecting every problem found in it."""

    def __init__(self, raw: dict[str, str], layout: _Layout, flaws: Mapping[str, str]) -> None:
        self.raw, self.layout, self.flaws = raw, layout, flaws
        self.problems: list[str] = [flaws[""]] if "" in flaws else []
        self.ref: str | None = None

    def text(self, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
        """The field's stripped text; None (with a problem noted if it matters) if unusable."""
        column = self.layout.columns[name]
        if column is None:
            value = ""
        elif column in self.flaws:
            # A flaw quotes the cell as read (an account typed as a number): masked.
            flaw = self.flaws[column]
            self.problems.append(redact(flaw) if name.endswith("_account") else flaw)
            return None
        else:
            value = (self.raw.get(column) or "").strip()
        if not value:
            if required:
                self.problems.append(f"{self.layout.labels[name]}: missing")
            return None
        # isprintable() runs in C and holds for nearly every cell; it is false for spaces
        # other than ' ' too, so only then look at each character's category.
        if not value.isprintable():
            hidden = next((c for c in value if unicodedata.category(c) in _INVISIBLE), None)
            if hidden is not None:
                self.problems.append(f"{self.layout.labels[name]}: contains the invisible or "
                                     f"control character U+{ord(hidden):04X}")
                return None
        if limit is not None and len(value) > limit:
            self.problems.append(f"{self.layout.labels[name]}: {len(value)} characters, more "
                                 f"than the {limit} a bank accepts")
            return None
        return value

    def fault(self, name: str, shown: str, why: str) -> None:
        self.problems.append(f"{self.layout.labels[name]} {shown}: {why}")

    def parsed(self, name: str, value: _V | _Bad) -> _V | None:
        if isinstance(value, _Bad):
            self.fault(name, value.shown, value.why)
            return None
        return value


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:39] + "…")


def _check_row(cells: _Cells, number: int, own_accounts: Mapping[str, str],
               source: str) -> VoucherLine | None:
    ref = cells.ref = cells.text("external_ref", required=True, limit=MAX_REF)
    voucher_date = _date(cells, "voucher_date", required=True)
    requested_date = _date(cells, "requested_date") or voucher_date
    if voucher_date and requested_date and requested_date < voucher_date:
        cells.fault("requested_date", _shown(requested_date.isoformat()),
                    f"before the voucher date {voucher_date.isoformat()}")
    debtor, account_currency = _debtor(cells, own_accounts)
    currency = _currency(cells, debtor, account_currency)
    amount = _amount(cells, currency)
    creditor_name = cells.text("creditor_name", required=True, limit=MAX_NAME)
    creditor_account = _creditor_account(cells, debtor)
    cnaps = _cnaps(cells, currency)
    bank_name = cells.text("creditor_bank_name", limit=MAX_NAME) or ""
    purpose = cells.text("purpose", required=True, limit=MAX_PURPOSE)
    category = _lookup(cells, "category", _CATEGORIES, required=True, why=_UNKNOWN_CATEGORY)
    urgent = _lookup(cells, "urgent", _URGENT, why="must be 是/否, yes/no, true/false or 1/0")
    maker = cells.text("maker", limit=MAX_MAKER)
    if cells.problems:
        return None
    # Every required value is set when no problem was noted; the asserts tell the type checker.
    assert ref and voucher_date and requested_date and debtor and amount and creditor_name
    assert creditor_account and purpose and category
    return VoucherLine(
        row=number, external_ref=ref, end_to_end_id=end_to_end_id_for(source, ref),
        fields=cells.raw, voucher_date=voucher_date, debtor_account=debtor,
        creditor_name=creditor_name, creditor_account=creditor_account,
        creditor_bank_name=bank_name, creditor_cnaps=cnaps, amount=amount, purpose=purpose,
        category=category, urgent=bool(urgent), maker=maker, requested_date=requested_date,
    )


def _date(cells: _Cells, name: str, *, required: bool = False) -> date | None:
    value = cells.text(name, required=required)
    return None if value is None else cells.parsed(name, _parse_date(value))


# Dates, codes and account numbers repeat from row to row, so their parsing is cached.
@lru_cache(maxsize=4096)
def _parse_date(value: str) -> date | _Bad:
    match = _DATE.fullmatch(value) or _COMPACT_DATE.fullmatch(value)
    if match is None:
        return _Bad(_shown(value), "not a date like 2026-11-24")
    try:
        return date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return _Bad(_shown(value), "no such day in the calendar")


def _debtor(cells: _Cells, own_accounts: Mapping[str, str]
            ) -> tuple[CnAccountNumber | None, str | None]:
    value = cells.text("debtor_account", required=True)
    if value is None:
        return None, None
    compact = _compact_account(value)
    if compact not in own_accounts:
        cells.fault("debtor_account", mask(compact), "not one of the company's accounts")
        return None, None
    return CnAccountNumber(compact), own_accounts[compact]


@lru_cache(maxsize=1024)
def _compact_account(value: str) -> str:
    return _ACCOUNT_SEPARATORS.sub("", value)


def _currency(cells: _Cells, debtor: str | None, account_currency: str | None
              ) -> Currency | None:
    value = cells.text("currency")
    if value is None:
        return Currency.of(account_currency) if account_currency else None
    currency = cells.parsed("currency", _parse_currency(value))
    if currency is not None and account_currency is not None \
            and currency.code != account_currency:
        cells.fault("currency", currency.code,
                    f"account {mask(debtor or '')} is a {account_currency} account")
        return None
    return currency


@lru_cache(maxsize=256)
def _parse_currency(value: str) -> Currency | _Bad:
    try:
        return Currency.of(_CURRENCY_ALIASES.get(value.upper(), value))
    except CurrencyError:
        return _Bad(_shown(value), "not a currency code Yinqi can pay in")


def _amount(cells: _Cells, currency: Currency | None) -> Money | None:
    value = cells.text("amount", required=True)
    if value is None:
        return None
    if value.startswith("-"):
        cells.fault("amount", _shown(value), "amount must be positive")
        return None
    if currency is None:
        return None  # its precision depends on a currency already reported as wrong
    try:
        money = Money.of(value, currency)
    except MoneyError:
        decimals = _decimals(value)
        if decimals is not None and decimals > currency.minor_units:
            cells.fault("amount", _shown(value),
                        f"{decimals} decimals but {currency.code} has {currency.minor_units}")
        else:
            cells.fault("amount", _shown(value), "not an amount like 1234.56 or 1,234.56")
        return None
    if not money.is_positive:
        cells.fault("amount", _shown(value), "amount must be positive")
        return None
    if money.minor > _MAX_MINOR:
        cells.fault("amount", _shown(value), "larger than any payment can be")
        return None
    return money


def _decimals(value: str) -> int | None:
    """Significant decimal places of a plain number such as '1,234.567'; None if not one."""
    whole, dot, fraction = value.partition(".")
    if not dot or not fraction.isdigit() or not whole.lstrip("+").replace(",", "").isdigit():
        return None
    return len(fraction.rstrip("0"))


def _creditor_account(cells: _Cells, debtor: str | None) -> CnAccountNumber | None:
    value = cells.text("creditor_account", required=True)
    if value is None:
        return None
    compact = _compact_account(value)
    if not compact.isdecimal() or not compact.isascii():
        cells.fault("creditor_account", mask(compact), "an account number has digits only")
        return None
    if not 8 <= len(compact) <= 32:
        cells.fault("creditor_account", mask(compact),
                    f"has {len(compact)} digits, Chinese account numbers have 8 to 32")
        return None
    account = CnAccountNumber(compact)
    if account == debtor:
        cells.fault("creditor_account", account.masked,
                    f"the same account as {cells.layout.labels['debtor_account']}")
        return None
    return account


def _cnaps(cells: _Cells, currency: Currency | None) -> CnapsCode | None:
    value = cells.text("creditor_cnaps")
    if value is not None:
        return cells.parsed("creditor_cnaps", _parse_cnaps(value))
    if currency == CNY and cells.layout.columns["creditor_cnaps"] not in cells.flaws:
        cells.problems.append(f"{cells.layout.labels['creditor_cnaps']}: missing (a CNY "
                              "payment needs the payee bank's 12-digit CNAPS code)")
    return None


@lru_cache(maxsize=4096)
def _parse_cnaps(value: str) -> CnapsCode | _Bad:
    compact = "".join(value.split())
    if not compact.isdecimal() or not compact.isascii():
        return _Bad(_shown(value), "a CNAPS code is 12 digits")
    if len(compact) != 12:
        return _Bad(_shown(value), f"has {len(compact)} digits, a CNAPS code has 12")
    return CnapsCode(compact)


def _lookup(cells: _Cells, name: str, table: Mapping[str, _V], *, why: str,
            required: bool = False) -> _V | None:
    """The table's entry for the field's text, case-insensitively."""
    value = cells.text(name, required=required)
    if value is None:
        return None
    found = table.get(value.lower())
    if found is None:
        cells.fault(name, _shown(value), why)
    return found


# --- corrections of rejected payments ----------------------------------------------------


def check_correction(changes: Mapping[str, str], *, currency: str) -> dict[str, object]:
    """An operator's corrections checked like a voucher row's; values as the store keeps them
    (amounts in minor units). Raises InvalidValue naming the field and the fault."""
    out: dict[str, object] = {}
    for name, raw in changes.items():
        value = " ".join(str(raw).split())
        if name == "amount":
            try:
                money = Money.of(value, currency)
            except MoneyError as exc:
                raise InvalidValue(f"amount {value!r}: {exc}") from None
            if not money.is_positive or money.minor > _MAX_MINOR:
                raise InvalidValue(f"amount {value!r}: must be positive and plausible")
            out[name] = money.minor
        elif name == "creditor_account":
            compact = _compact_account(value)
            if not (compact.isdecimal() and compact.isascii() and 8 <= len(compact) <= 32):
                raise InvalidValue(f"creditor_account {mask(compact)}: Chinese account numbers "
                                   "have 8 to 32 digits")
            out[name] = compact
        elif name == "creditor_cnaps":
            parsed = _parse_cnaps(value)
            if isinstance(parsed, _Bad):
                raise InvalidValue(f"creditor_cnaps {value!r}: a CNAPS code is 12 digits")
            out[name] = str(parsed)
        elif name == "creditor_bic":
            out[name] = value.upper() or None
        else:
            if name in ("creditor_name",) and not value:
                raise InvalidValue(f"{name}: must not be empty")
            out[name] = value[:200]
    return out


# --- payment identifiers ------------------------------------------------------------------

_E2E_PREFIX = "YQ"
_E2E_HEX_DIGITS = 32  # 128 bits: no collision in any number of vouchers a company will have


def end_to_end_id_for(source: str, external_ref: str) -> str:
    """The payment's end-to-end ID: the same voucher always gets the same 34-character ID.

    Upper-case letters and digits only, which every bank dialect accepts; the unit separator
    keeps ("a", "bc") and ("ab", "c") apart.
    """
    digest = hashlib.sha256(f"{source}\x1f{external_ref}".encode()).hexdigest()
    return _E2E_PREFIX + digest[:_E2E_HEX_DIGITS].upper()


__all__ = [
    "BUILT_IN_MAPPINGS",
    "CANONICAL_FIELDS",
    "DEFAULT_MAPPING",
    "ERP_CN",
    "ERP_EN",
    "MAPPINGS_FILE",
    "ColumnMapping",
    "IntakeResult",
    "Quarantined",
    "Rows",
    "VoucherLine",
    "check_correction",
    "end_to_end_id_for",
    "load_mappings",
    "read_rows",
    "validate_rows",
]
