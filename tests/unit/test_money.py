from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yinqi.currency import CNY, JPY, USD, Currency
from yinqi.errors import CurrencyError, MoneyError, PrecisionError
from yinqi.money import Money


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


# --- construction -----------------------------------------------------------------

VALID = [
    # (amount, currency, stored amount)
    ("1234.56", "CNY", "1234.56"),
    ("1,234,567.89", "CNY", "1234567.89"),
    ("  12.3  ", "CNY", "12.30"),
    ("12.300", "CNY", "12.30"),
    ("12.000000", "JPY", "12"),
    ("-5", "CNY", "-5.00"),
    ("+5", "CNY", "5.00"),
    ("0", "CNY", "0.00"),
    ("-0.00", "CNY", "0.00"),
    ("007.5", "CNY", "7.50"),
    ("1,000", "JPY", "1000"),
    ("999", "JPY", "999"),
    ("1.234", "KWD", "1.234"),
    ("1.2345", "CLF", "1.2345"),
    (Decimal("1234.5"), "USD", "1234.50"),
    (Decimal("1E+3"), "JPY", "1000"),
    (Decimal("1.10000"), "CNY", "1.10"),
    (Decimal("-0"), "CNY", "0.00"),
    (42, "CNY", "42.00"),
    (-7, "KWD", "-7.000"),
    ("5", CNY, "5.00"),
    ("5", "cny", "5.00"),
]


@pytest.mark.parametrize(("amount", "currency", "stored"), VALID)
def test_of_accepts_and_quantizes(amount: object, currency: object, stored: str) -> None:
    money = Money.of(amount, currency)  # type: ignore[arg-type]
    assert money.amount.as_tuple() == Decimal(stored).as_tuple()
    assert money.amount.as_tuple().exponent == -money.currency.minor_units


INVALID = [
    # (amount, currency, error, text that must be in the message)
    ("1234.567", "CNY", PrecisionError, "amount '1234.567' has 3 decimals but CNY has 2"),
    ("0.5", "JPY", PrecisionError, "amount '0.5' has 1 decimal but JPY has 0"),
    ("1.23456", "CLF", PrecisionError, "has 5 decimals but CLF has 4"),
    ("1.0001", "KWD", PrecisionError, "has 4 decimals but KWD has 3"),
    (Decimal("0.001"), "USD", PrecisionError, "amount '0.001' has 3 decimals"),
    (Decimal("1E-1000000"), "CNY", PrecisionError, "1000000 decimals"),
    (1.5, "CNY", MoneyError, "never float"),
    (0.0, "CNY", MoneyError, "never float"),
    (True, "CNY", MoneyError, "bool"),
    (False, "CNY", MoneyError, "bool"),
    (None, "CNY", MoneyError, "NoneType"),
    (Decimal("NaN"), "CNY", MoneyError, "not a finite number"),
    (Decimal("sNaN"), "CNY", MoneyError, "not a finite number"),
    (Decimal("Infinity"), "CNY", MoneyError, "not a finite number"),
    (Decimal("-Infinity"), "CNY", MoneyError, "not a finite number"),
    ("1,23.4", "CNY", MoneyError, "'1,23.4' is not a plain decimal number"),
    ("12,34", "CNY", MoneyError, "not a plain decimal number"),
    ("0,500", "EUR", MoneyError, "not a plain decimal number"),
    ("1234,567", "CNY", MoneyError, "not a plain decimal number"),
    (",123", "CNY", MoneyError, "not a plain decimal number"),
    ("1,234,56", "CNY", MoneyError, "not a plain decimal number"),
    ("1e3", "CNY", MoneyError, "not a plain decimal number"),
    ("NaN", "CNY", MoneyError, "not a plain decimal number"),
    ("Infinity", "CNY", MoneyError, "not a plain decimal number"),
    ("", "CNY", MoneyError, "not a plain decimal number"),
    ("   ", "CNY", MoneyError, "not a plain decimal number"),
    ("1 234", "CNY", MoneyError, "not a plain decimal number"),
    ("- 5", "CNY", MoneyError, "not a plain decimal number"),
    ("5.", "CNY", MoneyError, "not a plain decimal number"),
    (".5", "CNY", MoneyError, "not a plain decimal number"),
    ("¥5", "CNY", MoneyError, "not a plain decimal number"),
    ("5 CNY", "CNY", MoneyError, "not a plain decimal number"),
    ("１２３", "CNY", MoneyError, "not a plain decimal number"),
    ("٣", "CNY", MoneyError, "not a plain decimal number"),
    ("1\n2", "CNY", MoneyError, "not a plain decimal number"),
    (Decimal("1E+40"), "CNY", MoneyError, "more than 30 integer digits"),
    ("1", "XYZ", CurrencyError, "'XYZ'"),
    ("1", "XAU", CurrencyError, "'XAU'"),
    ("1", 156, CurrencyError, "int"),
]


@pytest.mark.parametrize(("amount", "currency", "error", "message"), INVALID)
def test_of_refuses(amount: object, currency: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        Money.of(amount, currency)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_precision_error_is_a_money_error_and_value_error() -> None:
    with pytest.raises(MoneyError):
        cny("0.001")
    with pytest.raises(ValueError):
        cny("0.001")


def test_direct_construction_runs_the_same_checks() -> None:
    assert Money(Decimal("1.5"), CNY).amount.as_tuple() == Decimal("1.50").as_tuple()
    assert Money(Decimal("1.5"), CNY) == cny("1.50")
    with pytest.raises(PrecisionError):
        Money(Decimal("1.555"), CNY)
    with pytest.raises(MoneyError):
        Money(1.5, CNY)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(Decimal("NaN"), CNY)


def test_money_is_frozen() -> None:
    money = cny("1.00")
    with pytest.raises(AttributeError):
        money.amount = Decimal("2.00")  # type: ignore[misc]


# --- minor units ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123456, "CNY", "1234.56"),
        (-1, "CNY", "-0.01"),
        (0, "CNY", "0.00"),
        (5, "JPY", "5"),
        (1, "KWD", "0.001"),
        (12345, "CLF", "1.2345"),
        (10**31, "CNY", "100000000000000000000000000000.00"),
    ],
)
def test_from_minor(minor: int, currency: str, text: str) -> None:
    money = Money.from_minor(minor, currency)
    assert str(money) == f"{text} {currency}"
    assert money.minor == minor


@pytest.mark.parametrize("minor", [1.0, Decimal("1"), "1", True, None])
def test_from_minor_needs_an_int(minor: object) -> None:
    with pytest.raises(MoneyError):
        Money.from_minor(minor, "CNY")  # type: ignore[arg-type]


def test_minor_is_exact_for_amounts_beyond_default_decimal_precision() -> None:
    big = "123456789012345678901234567890.12"  # 32 digits, more than the default 28
    money = cny(big)
    assert money.minor == 12345678901234567890123456789012
    assert (money + cny("0.01")).minor == 12345678901234567890123456789013


def test_zero() -> None:
    assert Money.zero("JPY") == Money.of("0", "JPY")
    assert str(Money.zero("KWD")) == "0.000 KWD"
    assert Money.zero(CNY).is_zero


# --- arithmetic -------------------------------------------------------------------

def test_addition_and_subtraction() -> None:
    assert cny("0.10") + cny("0.20") == cny("0.30")
    assert cny("1.00") - cny("2.50") == cny("-1.50")
    assert -cny("3.00") == cny("-3.00")
    assert -cny("0") == cny("0")
    assert str(-cny("0")) == "0.00 CNY"
    assert abs(cny("-3.25")) == cny("3.25")
    assert +cny("1") == cny("1")


def test_multiplication_by_int_only() -> None:
    assert cny("33.33") * 3 == cny("99.99")
    assert 3 * cny("33.33") == cny("99.99")
    assert cny("1.01") * -2 == cny("-2.02")
    assert cny("1.01") * 0 == cny("0")
    with pytest.raises(TypeError):
        cny("1.00") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny("1.00") * Decimal("2")  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny("1.00") * True  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny("1.00") * cny("2.00")  # type: ignore[operator]


def test_no_division() -> None:
    with pytest.raises(TypeError):
        cny("1.00") / 3  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny("1.00") // 3  # type: ignore[operator]


def test_adding_numbers_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        cny("1.00") + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny("1.00") + Decimal("1")  # type: ignore[operator]


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_mixing_currencies_raises_naming_both(operation: object) -> None:
    with pytest.raises(CurrencyError) as info:
        operation(cny("1.00"), Money.of("1.00", "USD"))  # type: ignore[operator]
    assert "CNY" in str(info.value) and "USD" in str(info.value)


def test_equality_across_currencies_is_false() -> None:
    assert cny("1.00") != Money.of("1.00", "USD")
    assert not cny("1.00") == Money.of("1", "HKD")
    assert cny("1.00") != Decimal("1.00")
    assert cny("1.00") != "1.00 CNY"


def test_comparisons() -> None:
    assert cny("1.00") < cny("1.01")
    assert cny("1.00") <= cny("1")
    assert cny("-1") < cny("0")
    assert cny("2") > cny("1.99")
    assert cny("2") >= cny("2.00")
    assert not cny("2") > cny("2")
    assert sorted([cny("3"), cny("-1"), cny("2")]) == [cny("-1"), cny("2"), cny("3")]
    with pytest.raises(TypeError):
        cny("1") < 2  # type: ignore[operator]


def test_hash_matches_equality() -> None:
    assert hash(cny("1")) == hash(cny("1.00"))
    assert len({cny("1"), cny("1.00"), Money.of("1", "USD")}) == 2


@pytest.mark.parametrize(
    ("items", "currency", "expected"),
    [
        ([], "CNY", "0.00 CNY"),
        ([], "JPY", "0 JPY"),
        (["0.10", "0.20", "0.30"], "CNY", "0.60 CNY"),
        (["1", "-1"], "CNY", "0.00 CNY"),
        (["1.001", "2.002"], "KWD", "3.003 KWD"),
    ],
)
def test_sum(items: list[str], currency: str, expected: str) -> None:
    total = Money.sum((Money.of(a, currency) for a in items), currency)
    assert str(total) == expected


def test_sum_refuses_other_currencies_and_non_money() -> None:
    with pytest.raises(CurrencyError) as info:
        Money.sum([cny("1"), Money.of("1", "USD")], "CNY")
    assert "USD" in str(info.value) and "CNY" in str(info.value)
    with pytest.raises(CurrencyError):
        Money.sum([cny("1")], USD)
    with pytest.raises(MoneyError):
        Money.sum([cny("1"), Decimal("1")], CNY)  # type: ignore[list-item]


# --- allocate / split -------------------------------------------------------------

@pytest.mark.parametrize(
    ("amount", "currency", "ratios", "expected"),
    [
        ("100.00", "CNY", [1, 1, 1], ["33.34", "33.33", "33.33"]),
        ("-100.00", "CNY", [1, 1, 1], ["-33.34", "-33.33", "-33.33"]),
        ("0.05", "CNY", [3, 7], ["0.02", "0.03"]),
        ("0.05", "CNY", [1, 1], ["0.03", "0.02"]),
        ("0.01", "CNY", [1, 1, 1], ["0.01", "0.00", "0.00"]),
        ("0.02", "CNY", [1, 1, 1], ["0.01", "0.01", "0.00"]),
        ("10", "JPY", [1, 2, 3], ["2", "3", "5"]),
        ("1.00", "USD", [Decimal("0.3"), Decimal("0.7"), 0], ["0.30", "0.70", "0.00"]),
        ("1.00", "USD", [0, 1], ["0.00", "1.00"]),
        ("0.00", "CNY", [1, 2], ["0.00", "0.00"]),
        ("1.000", "KWD", [1, 1, 1], ["0.334", "0.333", "0.333"]),
        ("100", "CNY", [Decimal("33.3"), Decimal("33.3"), Decimal("33.4")],
         ["33.30", "33.30", "33.40"]),
        ("0.07", "CNY", [1, 1, 1, 1, 1], ["0.02", "0.02", "0.01", "0.01", "0.01"]),
        # the larger remainder wins over the earlier part
        ("0.10", "CNY", [1, 2], ["0.03", "0.07"]),
    ],
)
def test_allocate(amount: str, currency: str, ratios: list[int | Decimal], expected: list[str]
                  ) -> None:
    parts = Money.of(amount, currency).allocate(ratios)
    assert parts == [Money.of(e, currency) for e in expected]


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ([], "sum to zero"),
        ([0, 0], "sum to zero"),
        ([1, -1], "negative"),
        ([1.5, 1], "float"),
        ([True, 1], "bool"),
        (["1", "1"], "str"),
        ([Decimal("NaN")], "finite"),
        ([Decimal("-0.1"), 1], "negative"),
    ],
)
def test_allocate_refuses_bad_ratios(ratios: list[object], message: str) -> None:
    with pytest.raises(MoneyError) as info:
        cny("1.00").allocate(ratios)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_split_exact_example() -> None:
    assert cny("100.00").split(3) == [cny("33.34"), cny("33.33"), cny("33.33")]
    assert cny("100.00").split(1) == [cny("100.00")]


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "3"])
def test_split_refuses_bad_counts(n: object) -> None:
    with pytest.raises(MoneyError):
        cny("1.00").split(n)  # type: ignore[arg-type]


# --- predicates and text ----------------------------------------------------------

@pytest.mark.parametrize(
    ("amount", "zero", "positive", "negative"),
    [("0", True, False, False), ("0.01", False, True, False), ("-0.01", False, False, True)],
)
def test_predicates(amount: str, zero: bool, positive: bool, negative: bool) -> None:
    money = cny(amount)
    assert (money.is_zero, money.is_positive, money.is_negative) == (zero, positive, negative)


@pytest.mark.parametrize(
    ("amount", "currency", "text", "grouped", "rep"),
    [
        ("1234.56", "CNY", "1234.56 CNY", "1,234.56 CNY", "Money('1234.56', 'CNY')"),
        ("-1234567.8", "CNY", "-1234567.80 CNY", "-1,234,567.80 CNY",
         "Money('-1234567.80', 'CNY')"),
        ("1000000", "JPY", "1000000 JPY", "1,000,000 JPY", "Money('1000000', 'JPY')"),
        ("0.001", "KWD", "0.001 KWD", "0.001 KWD", "Money('0.001', 'KWD')"),
        ("0.0001", "CLF", "0.0001 CLF", "0.0001 CLF", "Money('0.0001', 'CLF')"),
        ("0", "USD", "0.00 USD", "0.00 USD", "Money('0.00', 'USD')"),
        ("999", "CNY", "999.00 CNY", "999.00 CNY", "Money('999.00', 'CNY')"),
    ],
)
def test_text_forms(amount: str, currency: str, text: str, grouped: str, rep: str) -> None:
    money = Money.of(amount, currency)
    assert str(money) == text
    assert money.format() == grouped
    assert money.format(grouping=True) == grouped
    assert money.format(grouping=False) == text
    assert repr(money) == rep


def test_to_json() -> None:
    assert cny("1234.56").to_json() == {"amount": "1234.56", "currency": "CNY"}
    assert Money.of("5", "JPY").to_json() == {"amount": "5", "currency": "JPY"}
    assert Money.of(Decimal("1E+2"), "USD").to_json() == {"amount": "100.00", "currency": "USD"}


# --- properties -------------------------------------------------------------------

CURRENCIES = [Currency.of(c) for c in ("JPY", "CNY", "KWD", "CLF")]
currencies = st.sampled_from(CURRENCIES)
minors = st.integers(min_value=-(10**20), max_value=10**20)
moneys = st.builds(Money.from_minor, minors, currencies)


def same_currency_moneys(count: int) -> st.SearchStrategy[list[Money]]:
    return currencies.flatmap(
        lambda c: st.lists(minors.map(lambda m: Money.from_minor(m, c)), min_size=count,
                           max_size=count)
    )


@given(moneys, st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20)
       .filter(lambda r: sum(r) > 0))
def test_allocate_never_loses_or_creates_a_minor_unit(money: Money, ratios: list[int]) -> None:
    parts = money.allocate(ratios)
    assert len(parts) == len(ratios)
    assert sum(p.minor for p in parts) == money.minor
    assert all(p.currency == money.currency for p in parts)
    # every part is within one minor unit of its exact share, and shares keep the sign
    total = sum(ratios)
    for part, ratio in zip(parts, ratios):
        assert abs(part.minor * total - money.minor * ratio) < total
        assert part.minor == 0 or (part.minor > 0) == (money.minor > 0)


@given(moneys, st.lists(st.decimals(min_value=0, max_value=100, places=3, allow_nan=False),
                        min_size=1, max_size=10).filter(lambda r: sum(r) > 0))
def test_allocate_by_decimal_ratios_keeps_the_total(money: Money, ratios: list[Decimal]) -> None:
    assert Money.sum(money.allocate(ratios), money.currency) == money


@given(moneys, st.integers(min_value=1, max_value=50))
def test_split_parts_differ_by_at_most_one_minor_unit(money: Money, n: int) -> None:
    parts = money.split(n)
    assert Money.sum(parts, money.currency) == money
    minors_ = [p.minor for p in parts]
    assert max(minors_) - min(minors_) <= 1
    # earlier parts take the extra units
    assert [abs(m) for m in minors_] == sorted((abs(m) for m in minors_), reverse=True)


@given(minors, currencies)
def test_from_minor_round_trip(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert Money.from_minor(money.minor, currency) == money


@given(moneys)
def test_string_round_trip(money: Money) -> None:
    amount_text, code = str(money).split(" ")
    assert Money.of(amount_text, code) == money
    grouped_text, _ = money.format().split(" ")
    assert Money.of(grouped_text, code) == money
    data = money.to_json()
    assert Money.of(data["amount"], data["currency"]) == money
    assert Money(money.amount, money.currency) == money


@given(same_currency_moneys(3))
def test_addition_is_associative_and_commutative(trio: list[Money]) -> None:
    a, b, c = trio
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a
    assert a - a == Money.zero(a.currency)


@given(
    currencies,
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "-"]),
)
def test_too_many_decimals_always_raise(
    currency: Currency, whole: int, extra: int, fraction: int, sign: str
) -> None:
    places = currency.minor_units + extra
    digits = str(fraction % 10**places).rjust(places, "0")
    # force a non-zero digit beyond the currency's minor units
    digits = digits[:-1] + str(int(digits[-1]) % 9 + 1)
    text = f"{sign}{whole}.{digits}"
    with pytest.raises(PrecisionError) as info:
        Money.of(text, currency)
    assert repr(text) in str(info.value)
    with pytest.raises(PrecisionError):
        Money.of(Decimal(text), currency)


@given(currencies, st.integers(min_value=-(10**15), max_value=10**15),
       st.integers(min_value=0, max_value=5))
def test_trailing_zeros_are_accepted(currency: Currency, minor: int, zeros: int) -> None:
    money = Money.from_minor(minor, currency)
    text = f"{money.amount:f}"
    padded = text + ("0" * zeros if "." in text else ("." + "0" * zeros if zeros else ""))
    assert Money.of(padded, currency) == money


def test_jpy_constant_has_whole_yen() -> None:
    assert Money.of("1500", JPY).minor == 1500
