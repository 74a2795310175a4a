"""Signed envelopes and detached signatures as the sandbox bank makes and checks them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from connectors.iso20022 import XSD_DIR
from connectors.sandbox import pki
from connectors.sandbox.signing import (
    DS_NS,
    ENVELOPE_TAG,
    Opened,
    SignatureError,
    open_envelope,
    sign_detached,
    sign_envelope,
    verify_detached,
)
from yinqi.errors import SecurityError

PAIN = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
NS = {"ds": DS_NS, "p": PAIN}

# Schema-valid pain.001.001.03, so the test can show the envelope leaves it valid.
DOCUMENT = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{PAIN}">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>MSG-0001</MsgId>
      <CreDtTm>2026-11-25T10:30:00</CreDtTm>
      <NbOfTxs>1</NbOfTxs>
      <CtrlSum>1005.00</CtrlSum>
      <InitgPty><Nm>上海示例贸易有限公司</Nm></InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>PI-0001</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <ReqdExctnDt>2026-11-25</ReqdExctnDt>
      <Dbtr><Nm>上海示例贸易有限公司</Nm></Dbtr>
      <DbtrAcct><Id><Othr><Id>6222020200112233445</Id></Othr></Id></DbtrAcct>
      <DbtrAgt><FinInstnId><BIC>YQSBCNSH</BIC></FinInstnId></DbtrAgt>
      <CdtTrfTxInf>
        <PmtId><EndToEndId>E2E-0001</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="CNY">1005.00</InstdAmt></Amt>
        <Cdtr><Nm>北京某某科技股份有限公司</Nm></Cdtr>
        <CdtrAcct><Id><Othr><Id>110060149018170012345</Id></Othr></Id></CdtrAcct>
      </CdtTrfTxInf>
    </PmtInf>
  </CstmrCdtTrfInitn>
</Document>
""".encode()


@dataclass(frozen=True)
class Signer:
    key: bytes
    cert: bytes
    fingerprint: str

    @property
    def trusted(self) -> dict[str, bytes]:
        return {self.fingerprint: self.cert}


def _client(state: Path, name: str, **validity: object) -> Signer:
    cert, key = state.parent / f"{name}.pem", state.parent / f"{name}.key"
    fp = pki.issue_client_cert(state, name, cert, key, **validity)  # type: ignore[arg-type]
    return Signer(key.read_bytes(), cert.read_bytes(), fp)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "bank"


@pytest.fixture
def company(state: Path) -> Signer:
    return _client(state, "acme")


@pytest.fixture
def ec_signer(state: Path) -> Signer:
    # The bank's own server key is EC P-256, which covers the ECDSA path.
    cert, key = pki.ensure_server_cert(state)
    return Signer(key.read_bytes(), cert.read_bytes(), pki.fingerprint(cert.read_bytes()))


def _c14n(xml: bytes) -> bytes:
    return etree.tostring(etree.fromstring(xml), method="c14n")


def _reason(data: bytes, trusted: dict[str, bytes]) -> str:
    with pytest.raises(SignatureError) as refused:
        open_envelope(data, trusted)
    return refused.value.reason_code


# --- envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize("signer_name", ["company", "ec_signer"])
def test_envelope_round_trip(signer_name: str, request: pytest.FixtureRequest) -> None:
    signer: Signer = request.getfixturevalue(signer_name)

    signed = sign_envelope(DOCUMENT, signer.key, signer.cert)
    opened = open_envelope(signed, signer.trusted)

    assert isinstance(opened, Opened)
    assert opened.signer_fingerprint == signer.fingerprint
    assert _c14n(opened.document) == _c14n(DOCUMENT)


def test_envelope_shape_keeps_the_document_schema_valid(company: Signer) -> None:
    signed = sign_envelope(DOCUMENT, company.key, company.cert)

    assert signed.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(signed)
    assert root.tag == ENVELOPE_TAG
    assert [child.tag for child in root] == [f"{{{PAIN}}}Document", f"{{{DS_NS}}}Signature"]
    assert root.find("ds:Signature/ds:SignedInfo/ds:Reference", NS).get("URI") == ""
    assert root.find("ds:Signature/ds:SignedInfo/ds:CanonicalizationMethod", NS).get(
        "Algorithm") == "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert root.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS).get(
        "Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS) is not None
    schema = etree.XMLSchema(etree.parse(str(XSD_DIR / "pain.001.001.03.xsd")))
    schema.assertValid(deepcopy(root[0]))
    schema.assertValid(etree.fromstring(open_envelope(signed, company.trusted).document))


def test_signing_with_an_encrypted_key(company: Signer) -> None:
    key = serialization.load_pem_private_key(company.key, password=None)
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"s3cret"))

    signed = sign_envelope(DOCUMENT, locked, company.cert, key_password=b"s3cret")

    assert open_envelope(signed, company.trusted).signer_fingerprint == company.fingerprint
    with pytest.raises(SecurityError, match="cannot be loaded"):
        sign_envelope(DOCUMENT, locked, company.cert, key_password=b"wrong")


def test_tampered_amount_is_ds0b(company: Signer) -> None:
    signed = sign_envelope(DOCUMENT, company.key, company.cert)
    tampered = signed.replace(b">1005.00</InstdAmt>", b">9005.00</InstdAmt>")
    assert tampered != signed
    assert _reason(tampered, company.trusted) == "DS0B"


def test_tampered_signature_value_is_ds0b(company: Signer) -> None:
    root = etree.fromstring(sign_envelope(DOCUMENT, company.key, company.cert))
    value = root.find("ds:Signature/ds:SignatureValue", NS)
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    assert _reason(etree.tostring(root), company.trusted) == "DS0B"


def test_removed_signature_is_ds0a(company: Signer) -> None:
    root = etree.fromstring(sign_envelope(DOCUMENT, company.key, company.cert))
    root.remove(root.find("ds:Signature", NS))
    assert _reason(etree.tostring(root), company.trusted) == "DS0A"


def test_unknown_signer_is_ds0e(state: Path, company: Signer) -> None:
    stranger = _client(state, "stranger")
    signed = sign_envelope(DOCUMENT, stranger.key, stranger.cert)
    assert _reason(signed, company.trusted) == "DS0E"


def test_signer_is_matched_by_fingerprint_in_any_spelling(company: Signer) -> None:
    signed = sign_envelope(DOCUMENT, company.key, company.cert)
    colons = ":".join(company.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    assert open_envelope(signed, {colons: company.cert}).signer_fingerprint == company.fingerprint


def test_registered_certificate_is_used_not_the_one_in_the_message(
    state: Path, company: Signer
) -> None:
    # Claim the company's certificate in KeyInfo but sign with another key.
    stranger = _client(state, "stranger")
    forged = sign_envelope(DOCUMENT, stranger.key, company.cert)
    assert _reason(forged, company.trusted) == "DS0B"


@pytest.mark.parametrize(("not_before", "days"), [
    (datetime.now(UTC) - timedelta(days=30), 10),    # expired
    (datetime.now(UTC) + timedelta(days=1), 10),     # not yet valid
])
def test_signer_certificate_outside_its_validity_is_ds0d(
    state: Path, not_before: datetime, days: int
) -> None:
    signer = _client(state, "old", not_before=not_before, days=days)
    signed = sign_envelope(DOCUMENT, signer.key, signer.cert)
    assert _reason(signed, signer.trusted) == "DS0D"


@pytest.mark.parametrize("data", [
    b"",
    b"{\"not\": \"xml\"}",
    b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.001.001.03'/>",
    b"<SignedMessage xmlns='urn:yinqi:sandbox:envelope:1'/>",
    b"<SignedMessage xmlns='urn:other'><Document/></SignedMessage>",
    b"<!DOCTYPE x [<!ENTITY e 'boom'>]><SignedMessage xmlns='urn:yinqi:sandbox:envelope:1'>"
    b"<Document>&e;</Document></SignedMessage>",
])
def test_not_an_envelope_is_ff01(data: bytes, company: Signer) -> None:
    assert _reason(data, company.trusted) == "FF01"


def test_comments_are_not_signed_so_they_are_not_returned(company: Signer) -> None:
    signed = sign_envelope(DOCUMENT, company.key, company.cert)
    commented = signed.replace(b"<MsgId>MSG-0001</MsgId>",
                               b"<MsgId>MSG-<!-- injected -->0001</MsgId>")
    assert commented != signed

    opened = open_envelope(commented, company.trusted)

    # Exclusive c14n drops comments, so the digest still matches; what comes back is the
    # verified form, without the comment the input carried.
    assert b"injected" not in opened.document
    assert etree.fromstring(opened.document).findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId",
                                                      namespaces=NS) == "MSG-0001"


def _forged_document(original: etree._Element) -> etree._Element:
    forged = deepcopy(original)
    forged.find(".//p:InstdAmt", NS).text = "999999.00"
    forged.find(".//p:CtrlSum", NS).text = "999999.00"
    return forged


def _forged_moved_into_object(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    original = root.find("p:Document", NS)
    root.replace(original, _forged_document(original))
    etree.SubElement(root.find("ds:Signature", NS), f"{{{DS_NS}}}Object").append(original)
    return etree.tostring(root)


def _signed_envelope_wrapped_in_a_forged_one(signed: bytes) -> bytes:
    inner = etree.fromstring(signed)
    outer = etree.Element(ENVELOPE_TAG)
    outer.append(_forged_document(inner.find("p:Document", NS)))
    etree.SubElement(outer, "{urn:attacker}Wrapper").append(inner)
    return etree.tostring(outer)


def _forged_document_beside_the_signed_one(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    root.insert(0, _forged_document(root.find("p:Document", NS)))
    return etree.tostring(root)


@pytest.mark.parametrize(("attack", "reason"), [
    (_forged_moved_into_object, "DS0B"),                 # the digest covers the whole envelope
    (_signed_envelope_wrapped_in_a_forged_one, "DS0A"),  # a signature must be a direct child
    (_forged_document_beside_the_signed_one, "FF01"),    # exactly one Document per envelope
])
def test_signature_wrapping_never_yields_the_forged_document(
    attack: Callable[[bytes], bytes], reason: str, company: Signer
) -> None:
    wrapped = attack(sign_envelope(DOCUMENT, company.key, company.cert))
    assert b"999999.00" in wrapped
    assert _reason(wrapped, company.trusted) == reason


# --- detached -------------------------------------------------------------------------------

BODY = '{"amount":"1005.00","payee":"北京某某科技股份有限公司"}'.encode()


@pytest.mark.parametrize("signer_name", ["company", "ec_signer"])
def test_detached_round_trip(signer_name: str, request: pytest.FixtureRequest) -> None:
    signer: Signer = request.getfixturevalue(signer_name)
    signature = sign_detached(BODY, signer.key)

    verify_detached(BODY, signature, signer.cert)
    # Deterministic for RSA by construction and for ECDSA by RFC 6979.
    assert sign_detached(BODY, signer.key) == signature


@pytest.mark.parametrize("signer_name", ["company", "ec_signer"])
def test_detached_tampered_body_is_ds0b(signer_name: str, request: pytest.FixtureRequest) -> None:
    signer: Signer = request.getfixturevalue(signer_name)
    signature = sign_detached(BODY, signer.key)
    with pytest.raises(SignatureError) as refused:
        verify_detached(BODY.replace(b"1005.00", b"9005.00"), signature, signer.cert)
    assert refused.value.reason_code == "DS0B"


def test_detached_signature_by_someone_else_is_ds0b(company: Signer, ec_signer: Signer) -> None:
    with pytest.raises(SignatureError) as refused:
        verify_detached(BODY, sign_detached(BODY, ec_signer.key), company.cert)
    assert refused.value.reason_code == "DS0B"


@pytest.mark.parametrize("signature", [None, "", "   ", "not base64!", "QUJ"])
def test_detached_missing_or_garbled_signature_is_ds0a(
    signature: str | None, company: Signer
) -> None:
    with pytest.raises(SignatureError) as refused:
        verify_detached(BODY, signature, company.cert)
    assert refused.value.reason_code == "DS0A"


def test_signature_error_message_names_the_reason() -> None:
    error = SignatureError("DS0B", "signature does not match")
    assert str(error) == "DS0B: signature does not match"
    assert isinstance(error, SecurityError)
