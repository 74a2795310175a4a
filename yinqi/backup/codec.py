"""Column values as stored, in a form both databases agree on, and back.

Rows are read raw (no model types, so encrypted columns stay ciphertext) and each value is
written by its column's *kind*: integers stay JSON integers (never floats), bytes are base64,
timestamps ISO 8601 in UTC, dates ISO, JSON documents their canonical JSON text (so SQL NULL
and JSON ``null`` stay apart). SQLite hands back strings for timestamps, dates and JSON and
0/1 for booleans; PostgreSQL hands back Python objects: both become the same line.
"""

from __future__ import annotations

import base64
import json
import operator
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from yinqi.backup.errors import BackupError

KINDS = ("int", "bool", "str", "bytes", "datetime", "date", "json", "float", "decimal")

# SQLAlchemy's own SQLite DATETIME storage format: restored rows read back like native ones.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def kind_of(type_: TypeEngine[Any]) -> str:
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    # Order matters: Float is a Numeric, Text a String, BigInteger an Integer.
    checks: tuple[tuple[type, str], ...] = (
        (JSON, "json"), (Boolean, "bool"), (DateTime, "datetime"), (Date, "date"),
        (Integer, "int"), (Float, "float"), (Numeric, "decimal"), (LargeBinary, "bytes"),
        (String, "str"),
    )
    for cls, kind in checks:
        if isinstance(type_, cls):
            return kind
    raise BackupError(f"column type {type_!r} has no backup encoding; add one to "
                      "yinqi.backup.codec before backing up this schema")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _enc_int(v: Any) -> int:
    if isinstance(v, float):
        raise TypeError("a float in an integer column")
    return operator.index(v)


def _enc_bool(v: Any) -> bool:
    if v not in (0, 1):  # True/False compare equal to 1/0
        raise TypeError(f"{v!r} is not a boolean")
    return bool(v)


def _enc_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{type(v).__name__} in a text column")
    return v


def _enc_bytes(v: Any) -> str:
    return base64.b64encode(bytes(v)).decode("ascii")


def _enc_datetime(v: Any) -> str:
    moment = datetime.fromisoformat(v) if isinstance(v, str) else v
    return _utc(moment).isoformat(timespec="microseconds")


def _enc_date(v: Any) -> str:
    if isinstance(v, str):
        return date.fromisoformat(v).isoformat()
    if isinstance(v, datetime):
        raise TypeError("a timestamp in a date column")
    return v.isoformat()


def _enc_json_text(v: Any) -> str:
    """SQLite keeps JSON as its text."""
    return _enc_json_value(json.loads(v))


def _enc_json_value(v: Any) -> str:
    """psycopg hands back the parsed document (a JSON string document is a Python str, so
    it must not be parsed a second time)."""
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _enc_float(v: Any) -> float:
    return float(v)


def _enc_decimal(v: Any) -> str:
    return str(v)


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "int": _enc_int, "bool": _enc_bool, "str": _enc_str, "bytes": _enc_bytes,
    "datetime": _enc_datetime, "date": _enc_date, "json": _enc_json_text, "float": _enc_float,
    "decimal": _enc_decimal,
}


def row_encoder(table: str, columns: list[tuple[str, str]], dialect: str
                ) -> Callable[[Any], list[Any]]:
    """A function from a raw database row (in ``columns`` order) to its JSON-able list."""
    encoders = [_enc_json_value if kind == "json" and dialect != "sqlite" else _ENCODERS[kind]
                for _, kind in columns]

    def encode(row: Any) -> list[Any]:
        out = []
        for (name, kind), enc, value in zip(columns, encoders, row, strict=True):
            if value is None:
                out.append(None)
                continue
            try:
                out.append(enc(value))
            except (TypeError, ValueError) as exc:
                raise BackupError(f"{table}.{name}: value of type {type(value).__name__} "
                                  f"cannot be backed up as {kind}: {exc}") from None
        return out

    return encode


def _dec_datetime_sqlite(v: str) -> str:
    return datetime.fromisoformat(v).astimezone(UTC).replace(tzinfo=None).strftime(
        _SQLITE_DATETIME)


_DECODERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sqlite": {
        "bytes": lambda v: base64.b64decode(v, validate=True),
        "datetime": _dec_datetime_sqlite,
        "bool": lambda v: 1 if v else 0,
    },
    "postgresql": {
        "bytes": lambda v: base64.b64decode(v, validate=True),
        "datetime": lambda v: datetime.fromisoformat(v).astimezone(UTC),
        "date": date.fromisoformat,
        "decimal": Decimal,
    },
}


def row_decoder(dialect: str, columns: list[tuple[str, str]]
                ) -> Callable[[list[Any]], dict[str, Any]]:
    """A function from a backup line to insert parameters ``p0, p1, ...`` for ``dialect``.

    Values that need no conversion (integers, text, JSON text, SQLite dates) pass through.
    """
    values = value_decoder(dialect, columns)
    names = [f"p{i}" for i in range(len(columns))]

    def decode(line: list[Any]) -> dict[str, Any]:
        return dict(zip(names, values(line), strict=True))

    return decode


def value_decoder(dialect: str, columns: list[tuple[str, str]]
                  ) -> Callable[[list[Any]], list[Any]]:
    """A function from a backup line to the column values for ``dialect``, in order."""
    if dialect not in _DECODERS:
        raise BackupError(f"restoring into {dialect} is not supported (SQLite or PostgreSQL)")
    table = _DECODERS[dialect]
    decoders = [table.get(kind) for _, kind in columns]

    def decode(line: list[Any]) -> list[Any]:
        return [v if d is None or v is None else d(v)
                for d, v in zip(decoders, line, strict=True)]

    return decode
