"""accounts.toml: the paying company and its own bank accounts."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict
from stdnum.cn import uscc
from stdnum.exceptions import ValidationError as StdnumError

from config._problems import Problem
from config.banks import BankConfig
from config.fields import ConfigModel, CurrencyCode, Text

_ACCOUNT_NUMBER = re.compile(r"\d{8,32}")


def _credit_code(value: str) -> str:
    try:
        return str(uscc.validate(value))
    except StdnumError as exc:
        reason = exc.message.rstrip(".")
        raise ValueError(
            f"invalid unified social credit code {value!r}: {reason[:1].lower()}{reason[1:]}"
        ) from None


def _account_number(value: object) -> str:
    # A bare TOML integer would silently lose leading zeros, so insist on quotes.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f'write the account number in quotes: "{value}"')
    if not isinstance(value, str) or not _ACCOUNT_NUMBER.fullmatch(value.strip()):
        raise ValueError(f"must be 8 to 32 digits (got {value!r})")
    return value.strip()


class Company(ConfigModel):
    """The legal entity that pays."""

    name: Text
    credit_code: Annotated[str, Strict(), AfterValidator(_credit_code)]


class AccountConfig(ConfigModel):
    """One of the company's own accounts, which payments are debited from."""

    number: Annotated[str, BeforeValidator(_account_number)]
    name: Text
    bank: Text
    currency: CurrencyCode


class AccountsFile(ConfigModel):
    company: Company
    accounts: Annotated[tuple[AccountConfig, ...], Field(min_length=1)]


def account_problems(file: AccountsFile, banks: Mapping[str, BankConfig]) -> Iterator[Problem]:
    """Checks that span entries or files: the bank exists and pays in the currency, no twins."""
    known = ", ".join(sorted(banks))
    first_seen: dict[str, int] = {}
    for index, account in enumerate(file.accounts):
        bank = banks.get(account.bank)
        if bank is None:
            yield Problem(
                ("accounts", index, "bank"), f"unknown bank {account.bank!r} (known: {known})"
            )
        elif account.currency not in bank.currencies:
            yield Problem(
                ("accounts", index, "currency"),
                f"bank {account.bank!r} does not pay in {account.currency!r} "
                f"(it lists: {', '.join(bank.currencies)})",
            )
        if account.number in first_seen:
            yield Problem(
                ("accounts", index, "number"),
                f"{account.number!r} is already listed as accounts[{first_seen[account.number]}]",
            )
        first_seen.setdefault(account.number, index)
