from __future__ import annotations

import pickle

import pytest

from yinqi.errors import IdentifierError, InvalidValue
from yinqi.identifiers import Bic, CnAccountNumber, CnapsCode, CreditCode, Iban, mask

# --- mask ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "keep", "expected"),
    [
        ("6222000000001234", 4, "****1234"),
        ("12345", 4, "****2345"),
        ("1234", 4, "****"),
        ("12", 4, "****"),
        ("", 4, "****"),
        ("6222000000001234", 6, "****001234"),
        ("6222000000001234", 0, "****"),
    ],
)
def test_mask(value: str, keep: int, expected: str) -> None:
    assert mask(value, keep) == expected


# --- CnAccountNumber ----------------------------------------------------------------

ACCOUNTS_VALID = [
    ("1202021209900123456", "1202021209900123456", False),
    ("755912345610808", "755912345610808", False),
    ("0009778100434959551", "0009778100434959551", False),
    ("8294741680209475", "8294741680209475", False),
    ("6222 0000 0000 0000 000", "6222000000000000000", False),
    ("4111-1111-1111-1111", "4111111111111111", True),
    ("  62220200 ", "62220200", False),
    ("1" * 32, "1" * 32, False),
    ("6222\u30000000", "62220000", False),
]


@pytest.mark.parametrize(("raw", "compact", "luhn"), ACCOUNTS_VALID)
def test_account_number_valid(raw: str, compact: str, luhn: bool) -> None:
    account = CnAccountNumber(raw)
    assert account == compact
    assert account.compact == compact
    assert type(account.compact) is str
    assert account.masked == "****" + compact[-4:]
    assert account.luhn_valid is luhn


ACCOUNTS_INVALID = [
    ("1234567", "has 7 digits; Chinese account and card numbers have 8 to 32"),
    ("1" * 33, "has 33 digits"),
    ("", "account number is empty"),
    (" - ", "account number is empty"),
    ("12345X789", "contains 'X'"),
    ("6222.0000.0000", "contains '.'"),
    ("１２３４５６７８９", "only digits 0-9"),
    ("6222_0000_0000", "contains '_'"),
]


@pytest.mark.parametrize(("raw", "message"), ACCOUNTS_INVALID)
def test_account_number_invalid(raw: str, message: str) -> None:
    with pytest.raises(IdentifierError) as info:
        CnAccountNumber(raw)
    text = str(info.value)
    assert message in text
    assert "account number" in text
    assert "\n" not in text


def test_account_number_error_does_not_show_the_whole_number() -> None:
    with pytest.raises(IdentifierError) as info:
        CnAccountNumber("62220000000X0000123")
    assert "62220000000X0000123" not in str(info.value)
    assert "****0123" in str(info.value)


@pytest.mark.parametrize("raw", [6222000000000000000, None, b"62220000"])
def test_account_number_must_be_text(raw: object) -> None:
    with pytest.raises(IdentifierError, match="must be given as text"):
        CnAccountNumber(raw)  # type: ignore[arg-type]


def test_account_number_repr_is_masked() -> None:
    assert repr(CnAccountNumber("1202021209900123456")) == "CnAccountNumber('****3456')"


# --- CnapsCode ----------------------------------------------------------------------

CNAPS_VALID = [
    ("308584000013", "308", "5840", "0001", "3"),
    ("105290036005", "105", "2900", "3600", "5"),
    ("102100099996", "102", "1000", "9999", "6"),
    ("103301000016", "103", "3010", "0001", "6"),
    ("104331000018", "104", "3310", "0001", "8"),
    ("309581000011", "309", "5810", "0001", "1"),
    (" 3085 8400 0013 ", "308", "5840", "0001", "3"),
]


@pytest.mark.parametrize(("raw", "bank", "area", "branch", "check"), CNAPS_VALID)
def test_cnaps_valid(raw: str, bank: str, area: str, branch: str, check: str) -> None:
    code = CnapsCode(raw)
    assert code.compact == raw.replace(" ", "")
    assert (code.bank_class, code.area_code, code.branch, code.check_digit) == (
        bank, area, branch, check
    )


CNAPS_INVALID = [
    ("10210009999", "CNAPS code '10210009999' has 11 digits but needs 12"),
    ("1021000999961", "has 13 digits but needs 12"),
    ("1021000999X6", "contains 'X'"),
    ("102-100-099-996", "contains '-'"),
    ("", "CNAPS code is empty"),
    ("１０２１０００９９９９６", "must be 12 digits 0-9"),
]


@pytest.mark.parametrize(("raw", "message"), CNAPS_INVALID)
def test_cnaps_invalid(raw: str, message: str) -> None:
    with pytest.raises(IdentifierError) as info:
        CnapsCode(raw)
    assert message in str(info.value)


def test_cnaps_must_be_text() -> None:
    with pytest.raises(IdentifierError):
        CnapsCode(308584000013)  # type: ignore[arg-type]


# --- Iban ---------------------------------------------------------------------------

IBAN_VALID = [
    ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "DE89 3704 0044 0532 0130 00"),
    ("de89370400440532013000", "DE89370400440532013000", "DE89 3704 0044 0532 0130 00"),
    ("GB82WEST12345698765432", "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32"),
    ("FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606",
     "FR14 2004 1010 0505 0001 3M02 606"),
]


@pytest.mark.parametrize(("raw", "compact", "formatted"), IBAN_VALID)
def test_iban_valid(raw: str, compact: str, formatted: str) -> None:
    iban = Iban(raw)
    assert iban == compact
    assert iban.compact == compact
    assert iban.formatted == formatted
    assert iban.masked == "****" + compact[-4:]
    assert iban.country_code == compact[:2]
    assert iban.to_schwifty().compact == compact
    assert repr(iban) == f"Iban('****{compact[-4:]}')"


IBAN_INVALID = [
    ("DE89370400440532013001", "check digits that do not match"),
    ("DE8937040044053201300", "has 21 characters but DE IBANs have 22"),
    ("XX89370400440532013000", "starts with 'XX'"),
    ("DE89 3704 0044 0532 0130 0!", "must be a 2-letter country"),
    ("DE89370400440532013A00", "does not follow the account layout DE uses"),
    ("", "IBAN is empty"),
]


@pytest.mark.parametrize(("raw", "message"), IBAN_INVALID)
def test_iban_invalid(raw: str, message: str) -> None:
    with pytest.raises(IdentifierError) as info:
        Iban(raw)
    text = str(info.value)
    assert message in text
    assert raw.replace(" ", "") not in text or raw == ""
    assert info.value.__cause__ is None


# --- Bic ----------------------------------------------------------------------------

BIC_VALID = [
    ("DEUTDEFF", "DEUT", "DE", "FF", ""),
    ("deutdeff500", "DEUT", "DE", "FF", "500"),
    ("BKCHCNBJ", "BKCH", "CN", "BJ", ""),
    ("ICBK CNBJ 110", "ICBK", "CN", "BJ", "110"),
]


@pytest.mark.parametrize(("raw", "bank", "country", "location", "branch"), BIC_VALID)
def test_bic_valid(raw: str, bank: str, country: str, location: str, branch: str) -> None:
    bic = Bic(raw)
    assert bic.compact == raw.replace(" ", "").upper()
    assert (bic.bank_code, bic.country_code, bic.location_code, bic.branch_code) == (
        bank, country, location, branch
    )


BIC_INVALID = [
    ("DEUTDEFF50", "BIC 'DEUTDEFF50' has 10 characters; a BIC has 8 or 11"),
    ("DEUTDE", "has 6 characters"),
    ("DEUTXXFF", "names country 'XX'"),
    ("DEUT1EFF", "does not have the layout"),
    ("", "BIC is empty"),
]


@pytest.mark.parametrize(("raw", "message"), BIC_INVALID)
def test_bic_invalid(raw: str, message: str) -> None:
    with pytest.raises(IdentifierError) as info:
        Bic(raw)
    assert message in str(info.value)


# --- CreditCode ---------------------------------------------------------------------

# The last two were made by computing check characters with stdnum.cn.uscc.
CREDIT_VALID = [
    ("91350100M000100Y43", "91350100M000100Y43"),
    ("91110000600037341L", "91110000600037341L"),
    ("91440300708461136T", "91440300708461136T"),
    ("12100000400000770U", "12100000400000770U"),
    ("91350100m000100y43", "91350100M000100Y43"),
    (" 9135 0100 M000 100Y43 ", "91350100M000100Y43"),
    ("91350100-M000100Y4-3", "91350100M000100Y43"),
]


@pytest.mark.parametrize(("raw", "compact"), CREDIT_VALID)
def test_credit_code_valid(raw: str, compact: str) -> None:
    code = CreditCode(raw)
    assert code == compact
    assert code.compact == compact


CREDIT_INVALID = [
    ("91350100M000100Y44", "check character '4' that does not match"),
    ("91440300708461136X", "check character 'X'"),
    ("12100000400000770V", "contains 'V'"),
    ("9135010OM000100Y43", "must start with 8 digits"),
    ("91350100MO00100Y43", "contains 'O'"),
    ("91350100M000100Y4", "has 17 characters but needs 18"),
    ("91350100M000100Y433", "has 19 characters but needs 18"),
    ("", "credit code is empty"),
]


@pytest.mark.parametrize(("raw", "message"), CREDIT_INVALID)
def test_credit_code_invalid(raw: str, message: str) -> None:
    with pytest.raises(IdentifierError) as info:
        CreditCode(raw)
    assert message in str(info.value)


# --- shared behaviour ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("cls", "raw"),
    [
        (CnAccountNumber, "1202021209900123456"),
        (CnapsCode, "308584000013"),
        (Iban, "DE89370400440532013000"),
        (Bic, "DEUTDEFF"),
        (CreditCode, "91350100M000100Y43"),
    ],
)
def test_identifiers_are_strings_that_survive_pickle(cls: type[str], raw: str) -> None:
    value = cls(raw)
    assert isinstance(value, str)
    copy = pickle.loads(pickle.dumps(value))
    assert type(copy) is cls and copy == value
    assert {value: 1}[raw] == 1


def test_identifier_errors_are_value_errors() -> None:
    assert issubclass(IdentifierError, InvalidValue)
    with pytest.raises(ValueError):
        CnapsCode("1")
