"""Electronic receipts: amount in words, verification code, reproducible signed PDF."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sandbox import pki
from connectors.sandbox.receipts import (
    ReceiptData,
    amount_in_chinese_words,
    canonical_fields,
    render_receipt,
    sign_receipt,
    verification_code,
    verify_code,
    verify_receipt,
)
from connectors.sandbox.signing import SignatureError, sign_detached, verify_detached
from yinqi.errors import MoneyError, PrecisionError, SecurityError

SECRET = b"receipt-secret-of-the-sandbox-bank"


@pytest.mark.parametrize(("amount", "words"), [
    # the brief's own examples
    ("1005.00", "壹仟零伍元整"),
    ("100000.10", "壹拾万元零壹角"),
    ("41728.21", "肆万壹仟柒佰贰拾捌元贰角壹分"),
    ("0.05", "伍分"),
    # examples from the PBoC rules for filling in vouchers (正确填写票据和结算凭证的基本规定)
    ("1409.50", "壹仟肆佰零玖元伍角"),
    ("6007.14", "陆仟零柒元壹角肆分"),
    ("1680.32", "壹仟陆佰捌拾元零叁角贰分"),
    ("107000.53", "壹拾万柒仟元零伍角叁分"),
    ("325.04", "叁佰贰拾伍元零肆分"),
    # small amounts and the 整 rule
    ("0", "零元整"),
    ("0.00", "零元整"),
    ("0.10", "壹角"),
    ("0.50", "伍角"),
    ("0.55", "伍角伍分"),
    ("1", "壹元整"),
    ("1.10", "壹元壹角"),
    ("10.01", "壹拾元零壹分"),
    ("12.3", "壹拾贰元叁角"),
    ("100.00", "壹佰元整"),
    # tens are always written with 壹拾
    ("10", "壹拾元整"),
    ("11", "壹拾壹元整"),
    ("20", "贰拾元整"),
    # zeros inside a four-digit group
    ("101", "壹佰零壹元整"),
    ("110", "壹佰壹拾元整"),
    ("1001", "壹仟零壹元整"),
    ("1010", "壹仟零壹拾元整"),
    ("1100", "壹仟壹佰元整"),
    # zeros across the 万 boundary
    ("10000", "壹万元整"),
    ("10001", "壹万零壹元整"),
    ("10010", "壹万零壹拾元整"),
    ("10100", "壹万零壹佰元整"),
    ("11000", "壹万壹仟元整"),
    ("100100", "壹拾万零壹佰元整"),
    ("1000000", "壹佰万元整"),
    ("10000000", "壹仟万元整"),
    ("10000001", "壹仟万零壹元整"),
    # 亿 and above
    ("100000000", "壹亿元整"),
    ("100000001", "壹亿零壹元整"),
    ("100010000", "壹亿零壹万元整"),
    ("102000000", "壹亿零贰佰万元整"),
    ("120000000", "壹亿贰仟万元整"),
    ("1234567890.12", "壹拾贰亿叁仟肆佰伍拾陆万柒仟捌佰玖拾元零壹角贰分"),
    ("1000000000000", "壹万亿元整"),
    ("1000000010000", "壹万亿零壹万元整"),
    ("9999999999999999.99", "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
    # other spellings of the same number
    ("1005", "壹仟零伍元整"),
    ("1.000", "壹元整"),
    ("1E+3", "壹仟元整"),
])
def test_amount_in_chinese_words(amount: str, words: str) -> None:
    assert amount_in_chinese_words(Decimal(amount)) == words


@pytest.mark.parametrize(("amount", "error"), [
    ("-1.00", MoneyError),
    ("0.001", PrecisionError),
    ("1.005", PrecisionError),
    ("NaN", MoneyError),
    ("Infinity", MoneyError),
    ("10000000000000000", MoneyError),
])
def test_amount_in_chinese_words_refuses(amount: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        amount_in_chinese_words(Decimal(amount))


@pytest.fixture
def bank_key(tmp_path: Path) -> tuple[bytes, bytes]:
    cert, key = tmp_path / "receipts.pem", tmp_path / "receipts.key"
    pki.issue_client_cert(tmp_path / "bank", "Yinqi Sandbox Bank Receipts", cert, key)
    return key.read_bytes(), cert.read_bytes()


@pytest.fixture
def receipt() -> ReceiptData:
    return ReceiptData(
        bank_name="银企沙箱银行",
        bank_reference="SB2026112500000123",
        business_reference="E2E-0001",
        payer_name="上海示例贸易有限公司",
        payer_account="6222020200112233445",
        payer_bank="银企沙箱银行上海分行",
        payee_name="北京某某科技股份有限公司",
        payee_account="110060149018170012345",
        payee_bank="中国工商银行北京海淀支行",
        amount=Decimal("41728.21"),
        currency="CNY",
        purpose="货款 Invoice 2026-117",
        booked_at=datetime(2026, 11, 25, 10, 30, 5),
        value_date=date(2026, 11, 25),
    )


def test_receipt_knows_its_amount_in_words(receipt: ReceiptData) -> None:
    assert receipt.amount_in_words == "肆万壹仟柒佰贰拾捌元贰角壹分"


def test_render_gives_a_one_page_pdf_with_the_code(
    receipt: ReceiptData, bank_key: tuple[bytes, bytes]
) -> None:
    pdf, code = render_receipt(receipt, *bank_key, SECRET)

    assert pdf.startswith(b"%PDF")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert b"/Count 1" in pdf
    assert len(code) == 16
    assert code.isupper() and set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert code.encode() in pdf
    assert b"STSong-Light" in pdf
    assert b"41,728.21" in pdf
    assert receipt.payer_account.encode() in pdf


def test_render_is_deterministic(receipt: ReceiptData, bank_key: tuple[bytes, bytes]) -> None:
    first = render_receipt(receipt, *bank_key, SECRET)
    second = render_receipt(dataclasses.replace(receipt), *bank_key, SECRET)
    assert first == second


def test_render_is_deterministic_with_an_ec_key(tmp_path: Path, receipt: ReceiptData) -> None:
    # ECDSA would differ on every call with random nonces; RFC 6979 keeps the PDF stable.
    cert, key = pki.ensure_server_cert(tmp_path / "bank")
    ec_key = (key.read_bytes(), cert.read_bytes())
    assert render_receipt(receipt, *ec_key, SECRET) == render_receipt(receipt, *ec_key, SECRET)


def test_different_receipts_differ(receipt: ReceiptData, bank_key: tuple[bytes, bytes]) -> None:
    pdf, code = render_receipt(receipt, *bank_key, SECRET)
    other_pdf, other_code = render_receipt(
        dataclasses.replace(receipt, bank_reference="SB2026112500000124"), *bank_key, SECRET)
    assert other_pdf != pdf
    assert other_code != code


def test_page_carries_the_bank_seal_over_the_fields(
    receipt: ReceiptData, bank_key: tuple[bytes, bytes]
) -> None:
    key, cert = bank_key
    pdf, _ = render_receipt(receipt, key, cert, SECRET)

    # RSA PKCS#1 v1.5 is deterministic, so the seal on the page can be recomputed.
    seal = sign_detached(canonical_fields(receipt), key)
    verify_detached(canonical_fields(receipt), seal, cert)
    for start in range(0, len(seal), 86):
        assert seal[start:start + 86].encode() in pdf
    assert pki.fingerprint(cert).encode() in pdf


def test_render_refuses_a_key_that_does_not_match_the_certificate(
    tmp_path: Path, receipt: ReceiptData, bank_key: tuple[bytes, bytes]
) -> None:
    other_cert = tmp_path / "other.pem"
    pki.issue_client_cert(tmp_path / "bank", "Other", other_cert, tmp_path / "other.key")
    with pytest.raises(SecurityError, match="does not belong"):
        render_receipt(receipt, bank_key[0], other_cert.read_bytes(), SECRET)


def test_verification_code_verifies(receipt: ReceiptData, bank_key: tuple[bytes, bytes]) -> None:
    _, code = render_receipt(receipt, *bank_key, SECRET)

    assert verify_code(receipt, code, SECRET)
    typed = "-".join(code[i:i + 4] for i in range(0, 16, 4)).lower()
    assert verify_code(receipt, f" {typed} ", SECRET)


@pytest.mark.parametrize("change", [
    {"amount": Decimal("41728.22")},
    {"payee_account": "110060149018170012346"},
    {"booked_at": datetime(2026, 11, 25, 10, 30, 6)},
])
def test_verification_code_fails_for_a_changed_receipt(
    receipt: ReceiptData, change: dict[str, object]
) -> None:
    changed = dataclasses.replace(receipt, **change)  # type: ignore[arg-type]
    assert not verify_code(changed, verification_code(receipt, SECRET), SECRET)


def test_verification_code_fails_under_another_secret(receipt: ReceiptData) -> None:
    code = verification_code(receipt, SECRET)
    assert not verify_code(receipt, code, b"another bank's secret")
    assert not verify_code(receipt, "", SECRET)


def test_amount_spelling_does_not_change_the_code(receipt: ReceiptData) -> None:
    spelled = dataclasses.replace(receipt, amount=Decimal("41728.210"))
    assert verify_code(spelled, verification_code(receipt, SECRET), SECRET)


def test_receipt_signature_round_trip_and_tamper(
    receipt: ReceiptData, bank_key: tuple[bytes, bytes]
) -> None:
    key, cert = bank_key
    pdf, _ = render_receipt(receipt, key, cert, SECRET)
    signature = sign_receipt(pdf, key, cert)

    verify_receipt(pdf, signature, cert)
    tampered = pdf.replace(b"41,728.21", b"91,728.21")
    assert tampered != pdf
    with pytest.raises(SignatureError) as refused:
        verify_receipt(tampered, signature, cert)
    assert refused.value.reason_code == "DS0B"

