"""Electronic receipts (电子回单) as the sandbox bank issues them: a one-page PDF.

Three things make a receipt checkable, each for a different reader:

* the verification code (验证码), an HMAC of the receipt fields under a bank secret, which a
  person types into the bank's site to confirm the receipt is genuine;
* the seal (电子签章) printed on the page, the bank's signature over the same fields, which
  anyone holding the bank's certificate can check without asking the bank;
* a detached signature over the PDF file itself (:func:`sign_receipt`), which proves the
  file was not edited after the bank produced it.

The PDF is byte-for-byte reproducible for the same input, so its hash identifies it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from reportlab.lib.colors import Color, black
from reportlab.lib.pagesizes import A5, landscape
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from connectors.sandbox.signing import SignatureError, sign_detached, verify_detached
from yinqi.errors import MoneyError, PrecisionError, SecurityError

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_IN_GROUP = ("仟", "佰", "拾", "")
# 9999万亿 is the largest amount the 万/亿 ladder names without inventing 兆.
_MAX_INTEGER_DIGITS = 16

CJK_FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
CODE_FONT = "Courier-Bold"
SEAL_RED = Color(0.78, 0.08, 0.08)
CODE_LENGTH = 16
_CANONICAL_VERSION = "yinqi-sandbox-receipt/1"
# One table cell: Chinese label, English label, value, font (None: chosen by script).
_Cell = tuple[str, str, str, str | None]

# The CID font lives inside every PDF viewer, so no font file has to exist on this machine.
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def amount_in_chinese_words(amount: Decimal) -> str:
    """The amount in 人民币大写, as written on cheques and receipts.

    Follows the usual rules: 整 after 元 when there are no 角 or 分; one 零 for any run of
    zeros inside the number; 零 before 角 when the 元 digit is 0, and before 分 when 角 is 0.
    """
    fen = _to_fen(amount)
    yuan, rest = divmod(fen, 100)
    jiao, fen = divmod(rest, 10)
    if yuan == 0 and rest == 0:
        return "零元整"
    words = _integer_words(yuan) + "元" if yuan else ""
    if rest == 0:
        return words + "整"
    if jiao:
        words += ("零" if yuan and yuan % 10 == 0 else "") + _DIGITS[jiao] + "角"
    if fen:
        words += ("零" if yuan and not jiao else "") + _DIGITS[fen] + "分"
    return words


@dataclass(frozen=True, slots=True)
class ReceiptData:
    bank_name: str
    bank_reference: str          # 银行流水号
    business_reference: str      # 业务参考号 / end-to-end id
    payer_name: str
    payer_account: str
    payer_bank: str
    payee_name: str
    payee_account: str
    payee_bank: str
    amount: Decimal
    currency: str
    purpose: str                 # 用途
    booked_at: datetime
    value_date: date

    @property
    def amount_in_words(self) -> str:
        return amount_in_chinese_words(self.amount)


def canonical_fields(data: ReceiptData) -> bytes:
    """The receipt's fields as the exact bytes the verification code and the seal cover.

    A JSON list of (name, value) pairs in fixed order: unambiguous however the values are
    spelled, and the amount goes in as integer fen so 10.5 and 10.50 are the same receipt.
    """
    pairs = [
        ["version", _CANONICAL_VERSION],
        ["bank_name", data.bank_name],
        ["bank_reference", data.bank_reference],
        ["business_reference", data.business_reference],
        ["payer_name", data.payer_name],
        ["payer_account", data.payer_account],
        ["payer_bank", data.payer_bank],
        ["payee_name", data.payee_name],
        ["payee_account", data.payee_account],
        ["payee_bank", data.payee_bank],
        ["amount_minor", str(_to_fen(data.amount))],
        ["currency", data.currency],
        ["purpose", data.purpose],
        ["booked_at", data.booked_at.isoformat()],
        ["value_date", data.value_date.isoformat()],
    ]
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def verification_code(data: ReceiptData, secret: bytes) -> str:
    digest = hmac.new(secret, canonical_fields(data), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:CODE_LENGTH]


def verify_code(data: ReceiptData, code: str, secret: bytes) -> bool:
    # People type the code from paper, so spacing, dashes and case are forgiven.
    typed = "".join(ch for ch in code if ch.isalnum()).upper()
    return hmac.compare_digest(typed.encode(), verification_code(data, secret).encode())


def render_receipt(
    data: ReceiptData, signing_key_pem: bytes, signing_cert_pem: bytes, secret: bytes
) -> tuple[bytes, str]:
    """(pdf_bytes, verification_code) for one receipt; the same input gives the same bytes."""
    code = verification_code(data, secret)
    fields = canonical_fields(data)
    seal = sign_detached(fields, signing_key_pem)
    try:
        verify_detached(fields, seal, signing_cert_pem)
    except SignatureError:
        # Printing a seal nobody can verify would make every receipt look forged.
        raise SecurityError(
            "the receipt signing key does not belong to the receipt signing certificate; "
            "configure the matching pair"
        ) from None
    cert_fp = _fingerprint(signing_cert_pem)

    buffer = io.BytesIO()
    # invariant=1 pins the creation date and document ID; pageCompression=0 keeps the page
    # text searchable, which costs a few kilobytes and lets anyone grep a receipt.
    canvas = Canvas(buffer, pagesize=landscape(A5), invariant=1, pageCompression=0)
    canvas.setTitle(f"电子回单 {data.bank_reference}")
    canvas.setAuthor(data.bank_name)
    canvas.setSubject("Electronic Receipt")
    canvas.setCreator(data.bank_name)
    _draw_page(canvas, data, code, seal, cert_fp)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue(), code


@functools.lru_cache(maxsize=16)
def _fingerprint(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def render_signed(batch: Sequence[ReceiptData], key_pem: bytes, cert_pem: bytes,
                  secret: bytes) -> list[tuple[bytes, str, str]]:
    """(pdf, verification code, detached signature over the pdf) for each receipt: what one
    GET /receipts/<ref> serves, for many (a worker process of the batch download runs it)."""
    out = []
    for data in batch:
        pdf, code = render_receipt(data, key_pem, cert_pem, secret)
        out.append((pdf, code, sign_receipt(pdf, key_pem, cert_pem)))
    return out


def sign_receipt(pdf: bytes, key_pem: bytes, cert_pem: bytes) -> str:
    """Detached base64 signature over the PDF file, checked against ``cert_pem`` before use."""
    signature = sign_detached(pdf, key_pem)
    verify_detached(pdf, signature, cert_pem)
    return signature


def verify_receipt(pdf: bytes, signature_b64: str, cert_pem: bytes) -> None:
    verify_detached(pdf, signature_b64, cert_pem)


def _to_fen(amount: Decimal) -> int:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise MoneyError(f"receipt amount {amount!r} must be a finite Decimal")
    if amount < 0:
        raise MoneyError(f"receipt amount {amount} is negative; a receipt shows what moved")
    if amount and amount.adjusted() >= _MAX_INTEGER_DIGITS:
        raise MoneyError(f"receipt amount {amount} is too large to write in words")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise PrecisionError(f"receipt amount {amount} has more than two decimal places")
    return int(fen)


def _integer_words(n: int) -> str:
    # Split at 亿 then 万; a lower part that does not fill its top digit needs one 零, which
    # also covers whole groups of zeros in between (1,0000,0001 -> 壹亿零壹).
    if n >= 10**8:
        high, low = divmod(n, 10**8)
        words = _integer_words(high) + "亿"
        return words + (("零" if low < 10**7 else "") + _integer_words(low) if low else "")
    if n >= 10**4:
        high, low = divmod(n, 10**4)
        words = _group_words(high) + "万"
        return words + (("零" if low < 1000 else "") + _group_words(low) if low else "")
    return _group_words(n)


def _group_words(n: int) -> str:
    """1..9999 without leading 零: 1005 -> 壹仟零伍, 10 -> 壹拾 (cheques always write 壹拾)."""
    words, pending_zero = "", False
    for digit, unit in zip(f"{n:04d}", _IN_GROUP, strict=True):
        if digit == "0":
            pending_zero = bool(words)
            continue
        if pending_zero:
            words += "零"
            pending_zero = False
        words += _DIGITS[int(digit)] + unit
    return words


def _draw_page(canvas: Canvas, data: ReceiptData, code: str, seal: str, cert_fp: str) -> None:
    width, height = landscape(A5)
    left, right = 36.0, width - 36.0
    canvas.setFillColor(black)
    _text(canvas, width / 2, height - 42, "电子回单 / Electronic Receipt", 16, centred=True)
    _text(canvas, left, height - 64, data.bank_name, 10)

    amount = f"{data.currency} {data.amount:,.2f}"
    words = ("人民币" if data.currency == "CNY" else f"{data.currency} ") + data.amount_in_words
    booked = data.booked_at.strftime("%Y-%m-%d %H:%M:%S")
    rows: list[tuple[_Cell, _Cell | None]] = [
        (("付款人户名", "Payer name", data.payer_name, None),
         ("收款人户名", "Payee name", data.payee_name, None)),
        (("付款账号", "Payer account", data.payer_account, None),
         ("收款账号", "Payee account", data.payee_account, None)),
        (("付款行", "Payer bank", data.payer_bank, None),
         ("收款行", "Payee bank", data.payee_bank, None)),
        (("金额", "Amount", amount, None), None),
        (("大写金额", "Amount in words", words, None), None),
        (("用途", "Purpose", data.purpose, None), None),
        (("银行流水号", "Bank reference", data.bank_reference, None),
         ("业务参考号", "Business reference", data.business_reference, None)),
        (("记账时间", "Booked at", booked, None),
         ("起息日", "Value date", data.value_date.isoformat(), None)),
        (("验证码", "Verification code", code, CODE_FONT), None),
    ]
    label_w, row_h = 90.0, 24.0
    half = (right - left) / 2
    top = height - 76
    canvas.setLineWidth(0.6)
    for index, (first, second) in enumerate(rows):
        y = top - index * row_h
        canvas.rect(left, y - row_h, right - left, row_h)
        cells = [(left, first, half if second else right - left)]
        if second:
            cells.append((left + half, second, half))
        for x, (chinese, english, value, font), cell_w in cells:
            canvas.line(x + label_w, y, x + label_w, y - row_h)
            if x != left:
                canvas.line(x, y, x, y - row_h)
            _text(canvas, x + 4, y - 10, chinese, 8)
            _text(canvas, x + 4, y - 19, english, 6.5)
            _text(canvas, x + label_w + 5, y - 15, value, 9, max_width=cell_w - label_w - 10,
                  font=font)

    y = top - len(rows) * row_h - 14
    _text(canvas, left, y, "电子签章 / Bank seal: the bank's SHA-256 signature over the "
                           "receipt fields", 7)
    label = "签章证书 / Seal certificate SHA-256: "
    _text(canvas, left, y - 10, label, 6.5)
    _text(canvas, left + pdfmetrics.stringWidth(label, CJK_FONT, 6.5), y - 10, cert_fp, 6,
          font="Courier")
    for line_no, start in enumerate(range(0, len(seal), 86)):
        _text(canvas, left, y - 20 - line_no * 8, seal[start:start + 86], 6, font="Courier")
    _draw_seal(canvas, right - 52, 62, data.bank_name)


def _draw_seal(canvas: Canvas, x: float, y: float, bank_name: str) -> None:
    canvas.saveState()
    canvas.setStrokeColor(SEAL_RED)
    canvas.setFillColor(SEAL_RED)
    canvas.setLineWidth(1.6)
    canvas.circle(x, y, 44, stroke=1, fill=0)
    _text(canvas, x, y + 14, bank_name, 8, centred=True, max_width=78)
    _text(canvas, x, y - 2, "★", 12, centred=True)
    _text(canvas, x, y - 16, "电子回单专用章", 8, centred=True)
    _text(canvas, x, y - 26, "Electronic Receipt Seal", 5.5, centred=True)
    canvas.restoreState()


def _text(
    canvas: Canvas,
    x: float,
    y: float,
    text: str,
    size: float,
    *,
    font: str | None = None,
    max_width: float | None = None,
    centred: bool = False,
) -> None:
    # Plain ASCII goes in a Latin font so codes and numbers appear as literal text in the
    # page stream; the CID font would write them as two-byte glyph codes.
    font = font or (LATIN_FONT if text.isascii() else CJK_FONT)
    if max_width is not None:
        # Shrink rather than wrap: a receipt row has room for one line, and long company
        # names must stay whole.
        while size > 4.5 and pdfmetrics.stringWidth(text, font, size) > max_width:
            size -= 0.5
    canvas.setFont(font, size)
    if centred:
        canvas.drawCentredString(x, y, text)
    else:
        canvas.drawString(x, y, text)
