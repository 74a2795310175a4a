"""Corrections of rejected payments are checked like voucher rows; the approval digest
notices exactly the changes that need a fresh approval."""

from __future__ import annotations

import pytest

from yinqi.errors import InvalidValue
from yinqi.payments import approval_digest
from yinqi.vouchers import check_correction


def test_good_corrections_come_back_as_the_store_keeps_them() -> None:
    out = check_correction({"amount": "1,234.50", "creditor_account": "6222 0000 1111 2222",
                            "creditor_cnaps": "102100099996", "creditor_name": " 杨  磊 ",
                            "purpose": "货款"}, currency="CNY")
    assert out == {"amount": 123450, "creditor_account": "6222000011112222",
                   "creditor_cnaps": "102100099996", "creditor_name": "杨 磊",
                   "purpose": "货款"}


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"amount": "-5"}, "amount"),
    ({"amount": "1.234"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"creditor_account": "12AB"}, "creditor_account"),
    ({"creditor_account": "1234567"}, "8 to 32 digits"),
    ({"creditor_cnaps": "10210009999"}, "12 digits"),
    ({"creditor_name": "  "}, "must not be empty"),
])
def test_bad_corrections_name_the_field(changes: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        check_correction(changes, currency="CNY")


def test_an_account_number_never_appears_whole_in_the_error() -> None:
    with pytest.raises(InvalidValue) as caught:
        check_correction({"creditor_account": "6222000011112222X"}, currency="CNY")
    assert "6222000011112222" not in str(caught.value)


BASE = dict(amount_minor=100_00, currency="CNY", debtor_account_id=1,
            creditor_account="6222000011112222", creditor_name="杨磊",
            creditor_cnaps="102100099996", creditor_bic=None)


@pytest.mark.parametrize("field", ["amount_minor", "currency", "debtor_account_id",
                                   "creditor_account", "creditor_name", "creditor_cnaps",
                                   "creditor_bic"])
def test_every_approved_field_changes_the_digest(field: str) -> None:
    changed = {**BASE, field: {"amount_minor": 100_01, "currency": "USD",
                               "debtor_account_id": 2}.get(field, "X")}
    assert approval_digest(**changed) != approval_digest(**BASE)  # type: ignore[arg-type]


def test_the_digest_is_stable() -> None:
    assert approval_digest(**BASE) == approval_digest(**dict(BASE))  # type: ignore[arg-type]
