"""The sandbox bank's own configuration file (TOML).

It describes the banks the server plays, their customers' accounts, limits, calendars and
the faults to inject. It is the bank's configuration, not Yinqi's: the two only meet on the
wire.
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from yinqi.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).parent / "default.toml"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _money(value: object) -> Decimal:
    if isinstance(value, float):
        raise ValueError("write amounts as quoted strings (\"1000.00\"): floats lose cents")
    return Decimal(str(value))


class AccountSpec(_Model):
    number: str
    name: str
    currency: str = "CNY"
    balance: Decimal = Decimal("0")
    overdraft: Decimal = Decimal("0")
    per_transaction_limit: Decimal | None = None
    daily_limit: Decimal | None = None
    status: Literal["open", "closed", "blocked"] = "open"

    _amounts = field_validator("balance", "overdraft", "per_transaction_limit", "daily_limit",
                               mode="before")(lambda v: None if v is None else _money(v))

    @field_validator("number")
    @classmethod
    def _digits(cls, v: str) -> str:
        if not v.isdigit() or not 6 <= len(v) <= 34:
            raise ValueError(f"account number {v!r} must be 6-34 digits")
        return v


class BankSpec(_Model):
    name: str
    dialect: Literal["iso20022", "cn-h2h"]
    bic: str
    cnaps: str
    timezone: str = "Asia/Shanghai"
    cutoff: time = time(16, 30)
    holidays: tuple[date, ...] = ()
    # Certificates (PEM files) of enterprise signers this bank accepts payment orders from.
    signers: tuple[Path, ...] = ()
    blacklist: tuple[str, ...] = ()
    # Charged to the debtor for each payment to another bank, booked as its own entry.
    fee_per_external_transfer: Decimal = Decimal("0")
    accounts: tuple[AccountSpec, ...] = ()

    _fee = field_validator("fee_per_external_transfer", mode="before")(lambda v: _money(v))


class FaultSpec(_Model):
    """Probabilities (0..1) per request of each fault; all zero by default."""

    seed: int = 0
    latency_ms: Annotated[int, Field(ge=0)] = 0
    latency_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    http_5xx_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    reset_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    timeout_after_booking_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    timeout_hold_seconds: Annotated[float, Field(gt=0)] = 30.0
    duplicate_status_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    out_of_order_status_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    tampered_answer_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    unsigned_answer_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    maintenance_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    maintenance_retry_after: Annotated[int, Field(ge=1)] = 5
    statement_twice_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    statement_gap_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    return_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    return_after_days: Annotated[int, Field(ge=1)] = 2
    expired_server_certificate: bool = False


class SandboxConfig(_Model):
    # Where the bank keeps its database, CA and keys; relative paths are relative to the
    # config file's folder unless given on the command line.
    state_dir: Path = Path("sandbox-state")
    database_url: str | None = None
    settle_after_seconds: Annotated[float, Field(ge=0)] = 2.0
    clock: Literal["system", "fake", "shifted"] = "system"
    fake_clock_start: datetime | None = None
    # /_sandbox/* endpoints that move the clock, inject faults and audit the ledger: for tests.
    control_api: bool = False
    faults: FaultSpec = FaultSpec()
    banks: dict[str, BankSpec]

    @field_validator("banks")
    @classmethod
    def _some_bank(cls, banks: dict[str, BankSpec]) -> dict[str, BankSpec]:
        if not banks:
            raise ValueError("configure at least one bank")
        return banks


def load_sandbox_config(path: Path | None = None) -> tuple[SandboxConfig, Path]:
    """The config and the folder its relative paths are relative to."""
    path = path or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sandbox config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return SandboxConfig.model_validate(raw), path.parent
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = len(exc.errors()) - 1
        tail = f" (and {more} more problems in this file)" if more else ""
        raise ConfigError(f"{path}: {key}: {first['msg']}{tail}") from None
