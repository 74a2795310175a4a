"""The product's pain.001 builder, its schema check, and the signed envelope both ways."""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

from connectors.iso20022 import XSD_DIR
from connectors.iso20022.pain001 import (
    Debtor,
    Order,
    SchemaError,
    SignatureRefused,
    build_pain001,
    sign_envelope,
    validate_pain001,
    verify_bank_envelope,
)
from connectors.sandbox import signing as sandbox
from yinqi.errors import CurrencyError, InvalidValue, SecurityError
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.security.keystore import create_signing_key, load_private_key

VERSIONS = ("pain.001.001.09", "pain.001.001.03")
DEBTOR = Debtor(
    name="上海示例贸易有限公司",
    account="1202021209900654321",
    bic="ICBKCNBJ",
    cnaps="102290000001",
    credit_code="91350100M000100Y43",
)
CST = timezone(timedelta(hours=8))


def payment(n: int = 1, **changes: object) -> Payment:
    fields: dict[str, object] = dict(
        end_to_end_id=f"E2E-{n:06d}",
        debtor_account=DEBTOR.account,
        creditor_name="北京某某科技股份有限公司",
        creditor_account=f"6222020200{n:09d}",
        amount=Money.of("41728.21", "CNY"),
        purpose="货款 2026年11月",
        category=Category.SUPPLIER,
        maker="alice",
        requested_date=date(2026, 11, 25),
        creditor_bank_name="中国工商银行北京海淀支行",
        creditor_cnaps="102100099996",
    )
    fields.update(changes)
    return Payment(**fields)  # type: ignore[arg-type]


def order(payments: list[Payment], **changes: object) -> Order:
    fields: dict[str, object] = dict(
        msg_id="MSG-20261125-0001",
        created_at=datetime(2026, 11, 25, 10, 30, 5, 123456, tzinfo=CST),
        debtor=DEBTOR,
        execution_date=date(2026, 11, 26),
        payments=payments,
        initiating_party="上海示例贸易有限公司",
        currency="CNY",
    )
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


@functools.cache
def official_schema(version: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{version}.xsd")))


def parsed(data: bytes) -> tuple[etree._Element, dict[str, str]]:
    root = etree.fromstring(data)
    return root, {"p": etree.QName(root).namespace}


def texts(data: bytes, path: str) -> list[str]:
    root, ns = parsed(data)
    return [str(v) for v in root.xpath(path, namespaces=ns)]


# --- building -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("count", [1, 1000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_built_orders_are_schema_valid(version: str, count: int) -> None:
    amounts = [Money.from_minor(1 + 997 * i, "CNY") for i in range(count)]
    data = build_pain001(order([payment(i, amount=a) for i, a in enumerate(amounts)]), version)

    root, ns = parsed(data)
    schema = official_schema(version)
    assert schema.validate(root), schema.error_log
    validate_pain001(data, version)
    assert etree.QName(root).namespace == f"urn:iso:std:iso:20022:tech:xsd:{version}"
    assert root.xpath("count(//p:CdtTrfTxInf)", namespaces=ns) == count
    expected = str(Money.sum(amounts, "CNY").amount)
    assert texts(data, "//p:GrpHdr/p:CtrlSum/text()") == [expected]
    assert texts(data, "//p:PmtInf/p:CtrlSum/text()") == [expected]
    assert texts(data, "//p:GrpHdr/p:NbOfTxs/text()") == [str(count)]
    assert texts(data, "//p:PmtInf/p:NbOfTxs/text()") == [str(count)]


@pytest.mark.parametrize("version", VERSIONS)
def test_values_are_written_exactly(version: str) -> None:
    payments = [
        payment(1),
        payment(2, amount=Money.of("0.10", "CNY"), creditor_name="深圳市前海某某有限公司 & <分公司>",
                purpose="", creditor_bic="BKCHCNBJ300", creditor_bank_name=""),
        payment(3, amount=Money.of("0.20", "CNY"), creditor_cnaps=None, creditor_bank_name=""),
    ]
    data = build_pain001(order(payments, urgent=True), version)
    official_schema(version).assertValid(etree.fromstring(data))
    tx = "//p:CdtTrfTxInf"
    bic = "BIC" if version.endswith(".03") else "BICFI"

    assert texts(data, "//p:GrpHdr/p:MsgId/text()") == ["MSG-20261125-0001"]
    assert texts(data, "//p:GrpHdr/p:CreDtTm/text()") == ["2026-11-25T10:30:05+08:00"]
    assert texts(data, "//p:GrpHdr/p:NbOfTxs/text()") == ["3"]
    assert texts(data, "//p:GrpHdr/p:CtrlSum/text()") == ["41728.51"]
    assert texts(data, "//p:GrpHdr/p:InitgPty/p:Nm/text()") == ["上海示例贸易有限公司"]
    assert texts(data, "//p:InitgPty/p:Id/p:OrgId/p:Othr/p:Id/text()") == ["91350100M000100Y43"]
    assert texts(data, "//p:PmtInf/p:PmtTpInf/p:InstrPrty/text()") == ["HIGH"]
    assert texts(data, "//p:PmtInf/p:BtchBookg/text()") == ["false"]
    date_path = "p:ReqdExctnDt" if version.endswith(".03") else "p:ReqdExctnDt/p:Dt"
    assert texts(data, f"//p:PmtInf/{date_path}/text()") == ["2026-11-26"]
    assert texts(data, "//p:DbtrAcct/p:Id/p:Othr/p:Id/text()") == ["1202021209900654321"]
    assert texts(data, f"//p:DbtrAgt/p:FinInstnId/p:{bic}/text()") == ["ICBKCNBJ"]

    assert texts(data, f"{tx}/p:PmtId/p:EndToEndId/text()") == [
        "E2E-000001", "E2E-000002", "E2E-000003"]
    assert texts(data, f"{tx}/p:Amt/p:InstdAmt/text()") == ["41728.21", "0.10", "0.20"]
    assert texts(data, f"{tx}/p:Amt/p:InstdAmt/@Ccy") == ["CNY"] * 3
    member = f"{tx}[1]/p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId"
    assert texts(data, f"{member}/p:ClrSysId/p:Cd/text()") == ["CNAPS"]
    assert texts(data, f"{member}/p:MmbId/text()") == ["102100099996"]
    assert texts(data, f"{tx}[1]/p:CdtrAgt/p:FinInstnId/p:Nm/text()") == ["中国工商银行北京海淀支行"]
    assert texts(data, f"{tx}[2]/p:CdtrAgt/p:FinInstnId/p:{bic}/text()") == ["BKCHCNBJ300"]
    assert texts(data, f"{tx}[3]/p:CdtrAgt") == []
    assert texts(data, f"{tx}/p:Cdtr/p:Nm/text()") == [
        "北京某某科技股份有限公司", "深圳市前海某某有限公司 & <分公司>", "北京某某科技股份有限公司"]
    assert texts(data, f"{tx}[1]/p:CdtrAcct/p:Id/p:Othr/p:Id/text()") == ["6222020200000000001"]
    assert texts(data, f"{tx}/p:RmtInf/p:Ustrd/text()") == ["货款 2026年11月"] * 2
    assert texts(data, f"{tx}[2]/p:RmtInf") == []


def test_normal_priority_and_batch_booking_are_written_explicitly() -> None:
    data = build_pain001(order([payment()], batch_booking=True))
    assert texts(data, "//p:PmtTpInf/p:InstrPrty/text()") == ["NORM"]
    assert texts(data, "//p:PmtInf/p:BtchBookg/text()") == ["true"]


@pytest.mark.parametrize(("currency", "amounts", "written", "total"), [
    ("JPY", ["1200", "34"], ["1200", "34"], "1234"),
    ("BHD", ["1.25", "0.005"], ["1.250", "0.005"], "1.255"),
])
def test_amounts_carry_the_currency_minor_units(
    currency: str, amounts: list[str], written: list[str], total: str
) -> None:
    payments = [payment(i, amount=Money.of(a, currency)) for i, a in enumerate(amounts)]
    data = build_pain001(order(payments, currency=currency))
    validate_pain001(data)
    assert texts(data, "//p:InstdAmt/text()") == written
    assert texts(data, "//p:InstdAmt/@Ccy") == [currency] * len(amounts)
    assert texts(data, "//p:GrpHdr/p:CtrlSum/text()") == [total]


def test_an_iban_goes_in_the_iban_element() -> None:
    data = build_pain001(order([payment(creditor_account="DE89 3704 0044 0532 0130 00")]))
    validate_pain001(data)
    assert texts(data, "//p:CdtrAcct/p:Id/p:IBAN/text()") == ["DE89370400440532013000"]


def test_an_order_without_credit_code_has_no_party_id() -> None:
    data = build_pain001(order([payment()], debtor=replace(DEBTOR, credit_code=None, bic=None,
                                                           cnaps=None)))
    validate_pain001(data)
    assert texts(data, "//p:InitgPty/p:Id") == []
    assert texts(data, "//p:DbtrAgt/p:FinInstnId/p:Othr/p:Id/text()") == ["NOTPROVIDED"]


# --- refusals -----------------------------------------------------------------------------------


def test_too_long_end_to_end_id_is_refused() -> None:
    with pytest.raises(InvalidValue, match=r"payment 'E{36}': EndToEndId has 36 characters"):
        build_pain001(order([payment(end_to_end_id="E" * 36)]))
    build_pain001(order([payment(end_to_end_id="E" * 35)]))


@pytest.mark.parametrize(("changes", "field"), [
    ({"creditor_name": "北京某某\x07科技"}, "creditor name"),
    ({"purpose": "货款\n第二行"}, "purpose"),
    ({"creditor_account": "62220202\x00001"}, "creditor account"),
    ({"creditor_bank_name": "工商银行\x85"}, "creditor bank: name"),
    ({"purpose": "lone \ud800 surrogate"}, "purpose"),
])
def test_control_characters_are_refused_naming_the_payment(
    changes: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidValue, match=rf"payment 'E2E-000007'.*{field} contains U\+"):
        build_pain001(order([payment(1), payment(7, **changes)]))


def test_mixed_currencies_are_refused() -> None:
    payments = [payment(1), payment(2, amount=Money.of("10.00", "USD"))]
    with pytest.raises(CurrencyError, match="payment 'E2E-000002' is in USD .* is in CNY"):
        build_pain001(order(payments))
    assert issubclass(CurrencyError, InvalidValue)


@pytest.mark.parametrize(("changes", "message"), [
    ({"creditor_name": "名" * 141}, "creditor name has 141 characters"),
    ({"creditor_name": "  "}, "creditor name is empty"),
    ({"purpose": "途" * 141}, "purpose has 141 characters"),
    ({"amount": Money.of("0.00", "CNY")}, "must be more than zero"),
    ({"amount": Money.of("-1.00", "CNY")}, "must be more than zero"),
    ({"amount": Money.of("10000000000000000", "CNY")}, "more than 18 digits"),
    ({"debtor_account": "999999999999"}, "debits another account"),
    ({"creditor_cnaps": "10210009999"}, "creditor bank CNAPS code .* needs 12"),
    ({"creditor_bic": "ICBK"}, "creditor bank BIC"),
    ({"creditor_account": "DE89370400440532013001"}, "creditor account: IBAN"),
])
def test_bad_payments_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidValue, match=rf"payment 'E2E-000001'.*{message}"):
        build_pain001(order([payment(1, **changes)]))


def test_bad_orders_are_refused() -> None:
    with pytest.raises(InvalidValue, match="appears twice"):
        build_pain001(order([payment(1), payment(1)]))
    with pytest.raises(InvalidValue, match="has no payments"):
        build_pain001(order([]))
    with pytest.raises(InvalidValue, match="no time zone"):
        build_pain001(order([payment()], created_at=datetime(2026, 11, 25, 10, 30)))
    with pytest.raises(InvalidValue, match="MsgId has 36 characters"):
        build_pain001(order([payment()], msg_id="M" * 36))
    with pytest.raises(InvalidValue, match="credit code"):
        build_pain001(order([payment()], debtor=replace(DEBTOR, credit_code="91350100M000100Y44")))
    with pytest.raises(InvalidValue, match="not supported"):
        build_pain001(order([payment()]), "pain.001.001.12")
    with pytest.raises(CurrencyError):
        build_pain001(order([payment()], currency="XYZ"))


# --- schema validation --------------------------------------------------------------------------


def test_validation_names_the_first_error_and_its_line() -> None:
    data = build_pain001(order([payment(1), payment(2)]))
    broken = data.replace(b"<PmtMtd>TRF</PmtMtd>", b"<PmtMtd>CHK</PmtMtd><Oops/>", 1)
    line = broken[: broken.index(b"<PmtMtd>")].count(b"\n") + 1
    with pytest.raises(SchemaError, match=rf"pain.001.001.09: line {line}: Element 'Oops'"):
        validate_pain001(broken)
    assert issubclass(SchemaError, InvalidValue)


def test_validation_refuses_the_wrong_version_doctype_and_garbage() -> None:
    data = build_pain001(order([payment()]), "pain.001.001.03")
    with pytest.raises(SchemaError, match="namespace"):
        validate_pain001(data, "pain.001.001.09")
    with pytest.raises(SchemaError, match="DOCTYPE"):
        validate_pain001(b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]>' + data[38:],
                         "pain.001.001.03")
    with pytest.raises(SchemaError, match="not well-formed"):
        validate_pain001(b"<Document", "pain.001.001.03")
    with pytest.raises(InvalidValue, match="not supported"):
        validate_pain001(data, "pain.001.001.02")


def test_validation_from_many_threads_keeps_errors_apart() -> None:
    good = build_pain001(order([payment(i) for i in range(200)]))
    bad = good.replace(b"<PmtMtd>TRF</PmtMtd>", b"<PmtMtd>XXX</PmtMtd>")
    outcomes: list[tuple[bool, bool]] = []

    def check(data: bytes) -> None:
        for _ in range(5):
            try:
                validate_pain001(data)
                outcomes.append((data is good, True))
            except SchemaError as exc:
                outcomes.append((data is good, False))
                assert "XXX" in str(exc)

    threads = [threading.Thread(target=check, args=(d,)) for d in (good, bad) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 40
    assert all(is_good == passed for is_good, passed in outcomes)


# --- signing and verifying ----------------------------------------------------------------------


class Signer:
    def __init__(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *,
                 not_before: datetime | None = None, not_after: datetime | None = None) -> None:
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pain001 test signer")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        self.key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        self.key_pem = key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())

    @property
    def trusted(self) -> dict[str, bytes]:
        return {self.fingerprint: self.cert_pem}


@pytest.fixture(scope="module")
def company() -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def bank() -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def document() -> bytes:
    return build_pain001(order([payment(1), payment(2, creditor_name="A & B <公司>")]))


def c14n(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data), method="c14n", exclusive=True)


def test_the_sandbox_bank_accepts_the_signed_envelope(company: Signer, document: bytes) -> None:
    envelope = sign_envelope(document, company.key, company.cert_pem)

    opened = sandbox.open_envelope(envelope, company.trusted)
    assert opened.signer_fingerprint == company.fingerprint
    assert c14n(opened.document) == c14n(document)
    root = etree.fromstring(envelope)
    assert root.tag == "{urn:yinqi:sandbox:envelope:1}SignedMessage"
    assert [etree.QName(c).localname for c in root] == ["Document", "Signature"]


def test_the_sandbox_bank_refuses_a_tampered_envelope(company: Signer, document: bytes) -> None:
    envelope = sign_envelope(document, company.key, company.cert_pem)
    tampered = envelope.replace(b">41728.21<", b">41728.22<", 1)
    assert tampered != envelope
    with pytest.raises(sandbox.SignatureError, match="DS0B"):
        sandbox.open_envelope(tampered, company.trusted)


def test_the_signature_is_the_one_signxml_would_make(company: Signer, document: bytes) -> None:
    # RSA PKCS#1 v1.5 is deterministic: the same digested bytes and SignedInfo give the same
    # SignatureValue, so equal values prove the fast path signs exactly what XMLSigner would.
    envelope = etree.Element("{urn:yinqi:sandbox:envelope:1}SignedMessage",
                             nsmap={None: "urn:yinqi:sandbox:envelope:1"})
    envelope.append(etree.fromstring(document))
    reference = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(envelope, key=company.key, cert=company.cert_pem.decode())
    ours = etree.fromstring(sign_envelope(document, company.key, company.cert_pem))
    ns = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    for path in ("ds:Signature/ds:SignedInfo", "ds:Signature/ds:SignatureValue"):
        assert c14n(etree.tostring(ours.find(path, ns))) == \
            c14n(etree.tostring(reference.find(path, ns)))


def test_an_ec_key_signs_with_ecdsa(document: bytes) -> None:
    signer = Signer(ec.generate_private_key(ec.SECP256R1()))
    envelope = sign_envelope(document, signer.key, signer.cert_pem)
    assert b"xmldsig-more#ecdsa-sha256" in envelope
    assert sandbox.open_envelope(envelope, signer.trusted).signer_fingerprint == signer.fingerprint


def test_a_keystore_key_signs_what_the_bank_accepts(tmp_path: Path, document: bytes) -> None:
    master = b"m" * 32
    info = create_signing_key(tmp_path, master=master, key_id="k", subject="test")
    key = load_private_key(info.key_path, master)
    assert isinstance(key, rsa.RSAPrivateKey)
    envelope = sign_envelope(document, key, info.certificate_pem.encode())
    opened = sandbox.open_envelope(envelope, {info.fingerprint: info.certificate_pem.encode()})
    assert opened.signer_fingerprint == info.fingerprint


def test_signing_refuses_a_certificate_of_another_key(
    company: Signer, bank: Signer, document: bytes
) -> None:
    with pytest.raises(SecurityError, match="does not belong"):
        sign_envelope(document, company.key, bank.cert_pem)
    with pytest.raises(InvalidValue, match="not <Document>"):
        sign_envelope(b"<Other/>", company.key, company.cert_pem)


def test_the_bank_envelope_verifies(bank: Signer, document: bytes) -> None:
    envelope = sandbox.sign_envelope(document, bank.key_pem, bank.cert_pem)
    signed_document, fingerprint = verify_bank_envelope(envelope, bank.trusted)
    assert fingerprint == bank.fingerprint
    assert c14n(signed_document) == c14n(document)
    # Fingerprints are accepted as the bank registry may spell them.
    spelled = ":".join(bank.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    assert verify_bank_envelope(envelope, {spelled: bank.cert_pem})[1] == bank.fingerprint


def test_our_own_envelope_verifies_too(company: Signer, document: bytes) -> None:
    envelope = sign_envelope(document, company.key, company.cert_pem)
    assert verify_bank_envelope(envelope, company.trusted)[1] == company.fingerprint


def test_a_tampered_bank_envelope_is_refused(bank: Signer, document: bytes) -> None:
    envelope = sandbox.sign_envelope(document, bank.key_pem, bank.cert_pem)
    tampered = envelope.replace(b">41728.21<", b">1.00<", 1)
    assert tampered != envelope
    with pytest.raises(SignatureRefused, match="does not verify: Digest mismatch"):
        verify_bank_envelope(tampered, bank.trusted)


def test_a_forged_signature_value_is_refused(bank: Signer, document: bytes) -> None:
    envelope = sandbox.sign_envelope(document, bank.key_pem, bank.cert_pem)
    root = etree.fromstring(envelope)
    value = root.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    value.text = base64.b64encode(b"\x01" * 256).decode()
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify_bank_envelope(etree.tostring(root), bank.trusted)


def test_unsigned_bank_messages_are_refused(bank: Signer, document: bytes) -> None:
    bare = b'<SignedMessage xmlns="urn:yinqi:sandbox:envelope:1">' + \
        document.split(b"?>", 1)[1] + b"</SignedMessage>"
    with pytest.raises(SignatureRefused, match="not signed"):
        verify_bank_envelope(bare, bank.trusted)
    with pytest.raises(SignatureRefused, match="not a signed envelope"):
        verify_bank_envelope(document, bank.trusted)
    with pytest.raises(SignatureRefused, match="not well-formed"):
        verify_bank_envelope(b"garbage", bank.trusted)


def test_an_unknown_signer_is_refused(bank: Signer, company: Signer, document: bytes) -> None:
    envelope = sandbox.sign_envelope(document, bank.key_pem, bank.cert_pem)
    with pytest.raises(SignatureRefused, match=f"certificate {bank.fingerprint}, which is not"):
        verify_bank_envelope(envelope, company.trusted)


def test_an_expired_signer_is_refused(document: bytes) -> None:
    now = datetime.now(UTC)
    expired = Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                     not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    envelope = sandbox.sign_envelope(document, expired.key_pem, expired.cert_pem)
    with pytest.raises(SignatureRefused, match="expired at"):
        verify_bank_envelope(envelope, expired.trusted)


def test_a_bank_message_with_entities_is_refused(bank: Signer) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE SignedMessage [<!ENTITY a "aaaaaaaaaa">]>'
            b'<SignedMessage xmlns="urn:yinqi:sandbox:envelope:1">&a;</SignedMessage>')
    with pytest.raises(SignatureRefused, match="DOCTYPE"):
        verify_bank_envelope(bomb, bank.trusted)
