"""banks.toml: the banks Yinqi connects to, one ``[banks.<id>]`` table each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, Strict
from stdnum import bic as stdnum_bic
from stdnum.exceptions import ValidationError as StdnumError

from config.fields import (
    ClockTime,
    ConfigModel,
    Count,
    CurrencyCode,
    Day,
    FilePath,
    Seconds,
    Text,
    TimeZoneName,
)

Dialect = Literal["iso20022", "cn-h2h"]
"""How a bank's direct-connect API talks: ISO 20022 XML, or the Chinese host-to-host style."""

_BANK_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_CNAPS = re.compile(r"\d{12}")


def _bank_id(value: str) -> str:
    # Ids end up in file names (keys/client-<id>.pem), URLs and logs: keep them plain.
    if not _BANK_ID.fullmatch(value):
        raise ValueError(
            f"bank id {value!r} must be lowercase letters, digits and single hyphens, "
            "like 'icbc-sandbox'"
        )
    return value


def _bic(value: str) -> str:
    try:
        return str(stdnum_bic.validate(value))
    except StdnumError:
        raise ValueError(
            f"must be an 8- or 11-character BIC like 'ICBKCNBJXXX' (got {value!r})"
        ) from None


def _cnaps(value: str) -> str:
    if not _CNAPS.fullmatch(value):
        raise ValueError(f"must be a 12-digit CNAPS bank code (got {value!r})")
    return value


def _https(url: str) -> str:
    # Payment files and client certificates must never cross the network in clear text,
    # not even towards a test server: a config copied from the demo stays safe.
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https:// URL (got {url!r})")
    if parts.username or parts.password:
        raise ValueError(
            "must not contain a user name or password; banks authenticate us by certificate"
        )
    try:
        parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {url!r}") from None
    return url


def _distinct(codes: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(codes)) != len(codes):
        raise ValueError(f"lists a currency twice: {list(codes)}")
    return codes


BankId = Annotated[str, AfterValidator(_bank_id)]


class BankConfig(ConfigModel):
    """One bank's direct-connect channel."""

    name: Text
    dialect: Dialect
    bic: Annotated[str, Strict(), AfterValidator(_bic)]
    cnaps_code: Annotated[str, Strict(), AfterValidator(_cnaps)]
    endpoint: Annotated[str, Strict(), AfterValidator(_https)]
    timezone: TimeZoneName
    cutoff: ClockTime
    batch_size_limit: Count
    currencies: Annotated[tuple[CurrencyCode, ...], Field(min_length=1), AfterValidator(_distinct)]
    ca_cert: FilePath
    client_cert: FilePath
    client_key: FilePath
    # The bank's own signing certificate: its answers, statements and receipts must verify
    # against it. The bank hands it over with the channel certificates.
    signing_cert: FilePath
    connect_timeout_seconds: Seconds = 5.0
    read_timeout_seconds: Seconds = 30.0
    holidays: tuple[Day, ...] = ()

    @staticmethod
    def resolve_path(home: Path, p: Path) -> Path:
        """``p`` as given when absolute, else relative to ``home`` (YINQI_HOME)."""
        return p if p.is_absolute() else home / p


class BanksFile(ConfigModel):
    banks: Annotated[dict[BankId, BankConfig], Field(min_length=1)]
