"""Find, read and check the config files; the result is one read-only :class:`YinqiConfig`."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from config._problems import Problem, file_error, problems_from
from config.accounts import AccountConfig, AccountsFile, Company, account_problems
from config.alerts import AlertsConfig, alerts_problems
from config.backup import BackupConfig, backup_problems
from config.banks import BankConfig, BanksFile
from config.policy import ApprovalPolicy, policy_problems
from config.reconciliation import Reconciliation, reconciliation_problems
from config.risk import RiskRules
from config.settings import Settings, load_settings
from yinqi.errors import ConfigError, InvalidValue

DEFAULTS_DIR = Path(__file__).parent / "defaults"

# Part name -> file name, in load order: accounts are checked against the banks.
FILES: dict[str, str] = {
    "banks": "banks.toml",
    "accounts": "accounts.toml",
    "approval_policy": "approval_policy.toml",
    "risk_rules": "risk_rules.toml",
    "reconciliation": "reconciliation.toml",
    "alerts": "alerts.toml",
    "backup": "backup.toml",
}

_TOML_POSITION = re.compile(r"(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)")
_TOML_AT_END = re.compile(r"(?P<what>.*) \(at end of document\)")

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class YinqiConfig:
    """Everything the config files say, checked, with the file each part came from."""

    banks: dict[str, BankConfig]
    company: Company
    accounts: list[AccountConfig]
    approval_policy: ApprovalPolicy
    risk_rules: RiskRules
    reconciliation: Reconciliation
    alerts: AlertsConfig
    backup: BackupConfig
    sources: dict[str, Path]

    def account(self, number: str) -> AccountConfig:
        """The company's own account ``number``; InvalidValue if it is not one of them."""
        for account in self.accounts:
            if account.number == number:
                return account
        raise InvalidValue(
            f"account {number!r} is not one of the company's accounts in {self.sources['accounts']}"
        )

    def bank_for_account(self, number: str) -> BankConfig:
        """The bank holding the company's own account ``number``."""
        return self.banks[self.account(number).bank]


def load_config(settings: Settings | None = None) -> YinqiConfig:
    """Read and check every config file; ConfigError (one line) on the first bad file."""
    settings = settings if settings is not None else load_settings()
    sources = _locate(settings.config_dir)
    banks = _load(sources["banks"], BanksFile).banks
    accounts = _load(
        sources["accounts"], AccountsFile, lambda file: account_problems(file, banks)
    )
    return YinqiConfig(
        banks=banks,
        company=accounts.company,
        accounts=list(accounts.accounts),
        approval_policy=_load(sources["approval_policy"], ApprovalPolicy, policy_problems),
        risk_rules=_load(sources["risk_rules"], RiskRules),
        reconciliation=_load(sources["reconciliation"], Reconciliation,
                             lambda file: reconciliation_problems(
                                 file, {a.number for a in accounts.accounts})),
        alerts=_load(sources["alerts"], AlertsConfig, alerts_problems),
        backup=_load(sources["backup"], BackupConfig, backup_problems),
        sources=sources,
    )


# Read by the parts that use them (voucher column mappings: yinqi.vouchers.load_mappings).
OPTIONAL_FILES = ("voucher_mappings.toml",)


def _locate(config_dir: Path | None) -> dict[str, Path]:
    """Each file from ``config_dir`` when it holds one by that name, else the shipped default."""
    if config_dir is None:
        return {part: DEFAULTS_DIR / name for part, name in FILES.items()}
    # A misnamed override (bank.toml) would be ignored in silence and the demo banks used.
    known = (*FILES.values(), *OPTIONAL_FILES)
    for path in sorted(config_dir.glob("*.toml")):
        if path.name not in known:
            raise ConfigError(
                f"{path}: not a Yinqi config file; expected one of {', '.join(known)}"
            )
    return {
        part: config_dir / name if (config_dir / name).exists() else DEFAULTS_DIR / name
        for part, name in FILES.items()
    }


def _load(
    path: Path,
    model: type[_Model],
    check: Callable[[_Model], Iterable[Problem]] = lambda _: (),
) -> _Model:
    data = _read_toml(path)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems = problems_from(exc, model)
    else:
        problems = list(check(parsed))
        if not problems:
            return parsed
    raise file_error(path, problems)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}") from None
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_position(str(exc))}") from None


def _toml_position(message: str) -> str:
    # Python 3.11's TOMLDecodeError has the position only inside its message.
    if match := _TOML_POSITION.fullmatch(message):
        return f"line {match['line']}, column {match['column']}: {match['what']}"
    if match := _TOML_AT_END.fullmatch(message):
        return f"end of file: {match['what']}"
    return message
