"""Self-validating identifiers for parties and banks.

Each type is a ``str`` holding the compact form, so it can go anywhere a string goes
(SQL parameters, XML, JSON) and holding one proves the value passed its checks.
Messages about account numbers and IBANs show only the last four characters, because
they end up in logs and operator screens.
"""

from __future__ import annotations

import re
from typing import Self

import schwifty
from schwifty import exceptions as schwifty_errors
from stdnum import luhn
from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError

from yinqi.errors import IdentifierError

_DIGITS = re.compile(r"[0-9]+")
_ACCOUNT_SEPARATORS = re.compile(r"[\s\-]+")
_WHITESPACE = re.compile(r"\s+")


def mask(value: str, keep: int = 4) -> str:
    """``'****'`` plus the last ``keep`` characters, for logs; short values are hidden whole."""
    if keep <= 0 or len(value) <= keep:
        return "****"
    return "****" + value[-keep:]


def _clean(kind: str, value: object, separators: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        # An int would already have lost the leading zeros many account numbers have.
        raise IdentifierError(f"{kind} must be given as text, not {type(value).__name__}")
    compact = separators.sub("", value).upper()
    if not compact:
        raise IdentifierError(f"{kind} is empty")
    return compact


def _non_digits(value: str) -> str:
    return "".join(sorted({c for c in value if not "0" <= c <= "9"}))


class _Identifier(str):
    __slots__ = ()

    @property
    def compact(self) -> str:
        return str(self)


class CnAccountNumber(_Identifier):
    """A Chinese bank account or card number (银行账号 / 卡号)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        compact = _clean("account number", value, _ACCOUNT_SEPARATORS)
        if not _DIGITS.fullmatch(compact):
            raise IdentifierError(
                f"account number {mask(compact)!r} contains {_non_digits(compact)!r}; "
                "only digits 0-9 are allowed (spaces and hyphens are removed)"
            )
        # Corporate accounts run about 9-25 digits and cards 16-19; the wider band
        # admits old passbook numbers without admitting obvious garbage.
        if not 8 <= len(compact) <= 32:
            raise IdentifierError(
                f"account number {mask(compact)!r} has {len(compact)} digits; "
                "Chinese account and card numbers have 8 to 32"
            )
        return super().__new__(cls, compact)

    @property
    def masked(self) -> str:
        return mask(self)

    @property
    def luhn_valid(self) -> bool:
        # Informational only: bank cards carry a Luhn digit, but many corporate and
        # passbook accounts do not, so failing it is no reason to reject a payment.
        return bool(luhn.is_valid(str(self)))

    def __repr__(self) -> str:
        return f"CnAccountNumber({self.masked!r})"


class CnapsCode(_Identifier):
    """The 12-digit CNAPS bank code (联行号 / 支付系统行号) of a bank branch."""

    __slots__ = ()

    # The last digit is a check digit, but PBOC has not published its algorithm, so it
    # is not verified here; the branch directory is the only real proof a code exists.

    def __new__(cls, value: str) -> Self:
        compact = _clean("CNAPS code", value, _WHITESPACE)
        if not _DIGITS.fullmatch(compact):
            raise IdentifierError(
                f"CNAPS code {compact!r} contains {_non_digits(compact)!r}; "
                "it must be 12 digits 0-9"
            )
        if len(compact) != 12:
            raise IdentifierError(
                f"CNAPS code {compact!r} has {len(compact)} digits but needs 12"
            )
        return super().__new__(cls, compact)

    @property
    def bank_class(self) -> str:
        return self[0:3]

    @property
    def area_code(self) -> str:
        return self[3:7]

    @property
    def branch(self) -> str:
        return self[7:11]

    @property
    def check_digit(self) -> str:
        return self[11]

    def __repr__(self) -> str:
        return f"CnapsCode({str(self)!r})"


def _iban_problem(compact: str, error: schwifty_errors.SchwiftyException) -> str:
    shown = repr(mask(compact))
    if isinstance(error, schwifty_errors.InvalidCountryCode):
        return f"IBAN {shown} starts with {compact[:2]!r}, which is not a country that issues IBANs"
    if isinstance(error, schwifty_errors.InvalidLength):
        try:
            expected = schwifty.IBAN(compact, allow_invalid=True).spec.iban_length
        except schwifty_errors.SchwiftyException:
            return f"IBAN {shown} has {len(compact)} characters, the wrong length for its country"
        return (
            f"IBAN {shown} has {len(compact)} characters but "
            f"{compact[:2]} IBANs have {expected}"
        )
    if isinstance(error, schwifty_errors.InvalidChecksumDigits):
        return f"IBAN {shown} has check digits that do not match the rest; look for a typo"
    if isinstance(error, schwifty_errors.InvalidStructure):
        if not re.fullmatch(r"[A-Z0-9]*", compact) or len(compact) < 4:
            return f"IBAN {shown} must be a 2-letter country, 2 check digits and letters/digits"
        return f"IBAN {shown} does not follow the account layout {compact[:2]} uses"
    return f"IBAN {shown} is invalid: {type(error).__name__}"


class Iban(_Identifier):
    """An IBAN, checked by schwifty (country layout, length and check digits)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        compact = _clean("IBAN", value, _WHITESPACE)
        try:
            parsed = schwifty.IBAN(compact)
        except schwifty_errors.SchwiftyException as error:
            # Not chained: schwifty's own message quotes the full IBAN, which would
            # leak into logged tracebacks.
            raise IdentifierError(_iban_problem(compact, error)) from None
        return super().__new__(cls, parsed.compact)

    @property
    def masked(self) -> str:
        return mask(self)

    @property
    def formatted(self) -> str:
        return str(self.to_schwifty().formatted)

    @property
    def country_code(self) -> str:
        return self[0:2]

    def to_schwifty(self) -> schwifty.IBAN:
        return schwifty.IBAN(str(self))

    def __repr__(self) -> str:
        return f"Iban({self.masked!r})"


def _bic_problem(compact: str, error: schwifty_errors.SchwiftyException) -> str:
    if isinstance(error, schwifty_errors.InvalidLength):
        return f"BIC {compact!r} has {len(compact)} characters; a BIC has 8 or 11"
    if isinstance(error, schwifty_errors.InvalidCountryCode):
        return f"BIC {compact!r} names country {compact[4:6]!r}, which is not an ISO 3166 country"
    if isinstance(error, schwifty_errors.InvalidStructure):
        return (
            f"BIC {compact!r} does not have the layout: 4 bank characters, "
            "2-letter country, 2 location characters, optional 3 branch characters"
        )
    return f"BIC {compact!r} is invalid: {type(error).__name__}"


class Bic(_Identifier):
    """A SWIFT BIC of 8 or 11 characters, checked by schwifty."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        compact = _clean("BIC", value, _WHITESPACE)
        try:
            parsed = schwifty.BIC(compact)
        except schwifty_errors.SchwiftyException as error:
            raise IdentifierError(_bic_problem(compact, error)) from error
        return super().__new__(cls, parsed.compact)

    @property
    def bank_code(self) -> str:
        return self[0:4]

    @property
    def country_code(self) -> str:
        return self[4:6]

    @property
    def location_code(self) -> str:
        return self[6:8]

    @property
    def branch_code(self) -> str:
        return self[8:11]

    def __repr__(self) -> str:
        return f"Bic({str(self)!r})"


class CreditCode(_Identifier):
    """The 18-character unified social credit code (统一社会信用代码) of an organisation."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        compact = _clean("credit code", value, _ACCOUNT_SEPARATORS)
        try:
            uscc.validate(compact)
        except InvalidLength as error:
            raise IdentifierError(
                f"credit code {compact!r} has {len(compact)} characters but needs 18"
            ) from error
        except InvalidFormat as error:
            raise IdentifierError(_credit_code_format_problem(compact)) from error
        except InvalidChecksum as error:
            raise IdentifierError(
                f"credit code {compact!r} has check character {compact[-1]!r} that does not "
                "match the first 17; look for a typo"
            ) from error
        except ValidationError as error:
            raise IdentifierError(f"credit code {compact!r} is invalid: {error}") from error
        return super().__new__(cls, compact)

    def __repr__(self) -> str:
        return f"CreditCode({str(self)!r})"


def _credit_code_format_problem(compact: str) -> str:
    if not _DIGITS.fullmatch(compact[:8]):
        return (
            f"credit code {compact!r} must start with 8 digits "
            "(authority, entity type, region)"
        )
    allowed = set("0123456789ABCDEFGHJKLMNPQRTUWXY")
    bad = "".join(sorted({c for c in compact[8:] if c not in allowed}))
    return (
        f"credit code {compact!r} contains {bad!r}; after the first 8 digits only digits "
        "and letters other than I, O, S, V, Z are allowed"
    )


__all__ = ["Bic", "CnAccountNumber", "CnapsCode", "CreditCode", "Iban", "mask"]
