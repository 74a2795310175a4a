from __future__ import annotations

import pytest

from yinqi.currency import CNY, CURRENCIES, EUR, HKD, JPY, USD, Currency
from yinqi.errors import CurrencyError, InvalidValue

ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND".split()
FOUR_DECIMALS = "CLF UYW".split()
# Codes where CLDR's display digits differ from ISO 4217, plus a spread of everyday ones.
TWO_DECIMALS = (
    "AED AFN ALL AMD CNY CNH USD EUR HKD GBP CHF SGD IDR HUF TWD IRR LAK KPW COP MGA MRU "
    "SLE STN VED VES XCG ZWG ZMW ZAR"
).split()


@pytest.mark.parametrize("code", ZERO_DECIMALS)
def test_zero_decimal_currencies(code: str) -> None:
    assert Currency.of(code).minor_units == 0


@pytest.mark.parametrize("code", THREE_DECIMALS)
def test_three_decimal_currencies(code: str) -> None:
    assert Currency.of(code).minor_units == 3


@pytest.mark.parametrize("code", FOUR_DECIMALS)
def test_four_decimal_currencies(code: str) -> None:
    assert Currency.of(code).minor_units == 4


@pytest.mark.parametrize("code", TWO_DECIMALS)
def test_two_decimal_currencies(code: str) -> None:
    assert Currency.of(code).minor_units == 2


def test_every_code_outside_the_exception_lists_has_two_decimals() -> None:
    special = set(ZERO_DECIMALS) | set(THREE_DECIMALS) | set(FOUR_DECIMALS)
    wrong = {
        c.code: c.minor_units
        for c in CURRENCIES.values()
        if c.code not in special and c.minor_units != 2
    }
    assert wrong == {}


def test_table_size_and_keys() -> None:
    # 164 active ISO codes we can pay in, plus CNH.
    assert len(CURRENCIES) == 165
    assert all(code == currency.code for code, currency in CURRENCIES.items())
    assert "AED" in CURRENCIES and "ZWG" in CURRENCIES


@pytest.mark.parametrize(
    ("raw", "code"),
    [("cny", "CNY"), (" usd ", "USD"), ("Eur", "EUR"), ("\tjpy\n", "JPY"), ("cnh", "CNH")],
)
def test_of_is_case_insensitive_and_strips(raw: str, code: str) -> None:
    assert Currency.of(raw).code == code


@pytest.mark.parametrize(
    "raw",
    [
        "XYZ", "", "CN", "CNYY", "RMB",
        # precious metals, test and no-currency codes: not payable
        "XAU", "XAG", "XPT", "XPD", "XTS", "XXX",
        # withdrawn codes
        "HRK", "SLL", "CUC", "ZWL", "VEF", "MRO", "STD", "LTL", "DEM",
    ],
)
def test_unknown_codes_are_refused_naming_the_code(raw: str) -> None:
    with pytest.raises(CurrencyError) as info:
        Currency.of(raw)
    assert repr(raw) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("raw", [None, 156, b"CNY"])
def test_non_text_codes_are_refused(raw: object) -> None:
    with pytest.raises(CurrencyError):
        Currency.of(raw)  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        Currency.of("NOPE")
    assert issubclass(CurrencyError, InvalidValue)


def test_constants() -> None:
    assert (CNY.code, CNY.minor_units) == ("CNY", 2)
    assert (USD.code, USD.minor_units) == ("USD", 2)
    assert (EUR.code, EUR.minor_units) == ("EUR", 2)
    assert (HKD.code, HKD.minor_units) == ("HKD", 2)
    assert (JPY.code, JPY.minor_units) == ("JPY", 0)
    assert Currency.of("cny") is CNY
    assert CNY.name == "Yuan Renminbi"


def test_currency_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        CNY.code = "USD"  # type: ignore[misc]
    assert {CNY, Currency.of("CNY"), USD} == {CNY, USD}
    assert str(CNY) == "CNY"


@pytest.mark.parametrize(
    ("code", "minor_units"),
    [("cny", 2), ("CN", 2), ("C1Y", 2), ("CNY", -1), ("CNY", 5), ("CNY", True), ("CNY", "2")],
)
def test_direct_construction_is_validated(code: str, minor_units: int) -> None:
    with pytest.raises(CurrencyError):
        Currency(code, minor_units, "bad")


def test_table_cannot_be_modified() -> None:
    with pytest.raises(TypeError):
        CURRENCIES["ABC"] = Currency("ABC", 2, "x")  # type: ignore[index]
