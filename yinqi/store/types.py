"""Column types shared by the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from yinqi.errors import SecurityError
from yinqi.security.fields import FieldCrypto

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, UTC on disk, on both databases.

    SQLite has no time zones, and a naive datetime is a bug waiting for a daylight change.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def field_crypto(dialect: Dialect) -> FieldCrypto:
    """The field keys of the engine this dialect belongs to (see ``make_engine(fields=...)``)."""
    crypto = getattr(dialect, "yinqi_fields", None)
    if crypto is None:
        raise SecurityError(
            "this database connection has no field keys: account numbers and names are "
            "encrypted, open the database through Yinqi (the master secret is needed)"
        )
    return crypto


class SealedText(TypeDecorator[str]):
    """Text stored encrypted (deterministic, so equality and uniqueness still work in SQL).

    ``domain`` names what the value is ("account", "name"): values of one domain compare
    equal across tables, values of different domains never do.
    """

    impl = Text
    cache_ok = True

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.domain = domain

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return field_crypto(dialect).seal(value, self.domain)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return field_crypto(dialect).open(value, self.domain)


class SealedJSON(TypeDecorator[Any]):
    """A JSON document stored encrypted with a fresh nonce: never searched, only read back."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return field_crypto(dialect).seal_bytes(data, self.context)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(field_crypto(dialect).open_bytes(bytes(value), self.context))
