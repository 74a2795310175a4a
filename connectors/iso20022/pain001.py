"""pain.001 credit-transfer initiations: build, check against the official schema, sign.

The product turns one approved batch (an :class:`Order`: one debtor account, one execution
date, one currency) into a pain.001.001.09 or .03 ``Document``, validates it against the
official XSD before anything leaves, and wraps it in the signed envelope the bank accepts::

    <SignedMessage xmlns="urn:yinqi:sandbox:envelope:1">
      <Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">...</Document>
      <ds:Signature>...</ds:Signature>    enveloped, Reference URI="", exclusive c14n
    </SignedMessage>

The bank's answers (pain.002, camt) come back in the same envelope; :func:`verify_bank_envelope`
checks them. This is written apart from the sandbox bank on purpose: each side checks the other.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLVerifier,
)
from signxml.exceptions import SignXMLException

from connectors.iso20022 import XSD_DIR
from yinqi.currency import Currency
from yinqi.errors import CurrencyError, IdentifierError, InvalidValue, SecurityError
from yinqi.identifiers import Bic, CnapsCode, CreditCode, Iban
from yinqi.money import Money
from yinqi.payments import Payment

VERSIONS = ("pain.001.001.09", "pain.001.001.03")
ISO_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:"
ENVELOPE_NS = "urn:yinqi:sandbox:envelope:1"
ENVELOPE_TAG = f"{{{ENVELOPE_NS}}}SignedMessage"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_DS = {"ds": DS_NS}

# CNAPS is in ISO 20022's ExternalClearingSystemIdentification1Code list ("CNAPS Identifier,
# Bank Branch code used in China"), so the registered code goes in ClrSysId/Cd, not Prtry.
CNAPS_CLEARING_CODE = "CNAPS"

# ISO 20022 amounts and DecimalNumber allow 18 digits in all.
_MAX_DIGITS = 18

# C0 and C1 controls (tab and newline included: no pain.001 text field is multi-line), plus
# what XML 1.0 cannot carry at all: lone surrogates and U+FFFE/U+FFFF.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LOOKS_LIKE_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]+")


class SchemaError(InvalidValue):
    """A pain.001 document the official schema refuses; the message names the line."""


class SignatureRefused(SecurityError):
    """A bank message that is unsigned, tampered with, or signed by someone not trusted."""


@dataclass(frozen=True)
class Debtor:
    """The paying company and the one account an order debits."""

    name: str
    account: str
    bic: str | None = None
    cnaps: str | None = None
    credit_code: str | None = None  # unified social credit code (统一社会信用代码)


@dataclass(frozen=True)
class Order:
    """One batch as one bank message: one debtor account, one execution date, one currency."""

    msg_id: str
    created_at: datetime  # must be timezone-aware
    debtor: Debtor
    execution_date: date
    payments: Sequence[Payment]
    # Keyword-only so they can keep their defaults without forcing one on the fields after.
    urgent: bool = field(default=False, kw_only=True)
    batch_booking: bool = field(default=False, kw_only=True)
    initiating_party: str
    currency: str


# --- building -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dialect:
    """What differs between the two versions in the parts this builder writes."""

    namespace: str
    bic_tag: str          # FinInstnId: BIC (.03) or BICFI (.09)
    execution_date: str   # ReqdExctnDt: the date itself (.03) or wrapped in Dt (.09)


_DIALECTS = {
    "pain.001.001.03": _Dialect(ISO_NAMESPACE + "pain.001.001.03", "BIC",
                                "<ReqdExctnDt>{}</ReqdExctnDt>"),
    "pain.001.001.09": _Dialect(ISO_NAMESPACE + "pain.001.001.09", "BICFI",
                                "<ReqdExctnDt><Dt>{}</Dt></ReqdExctnDt>"),
}


def build_pain001(order: Order, version: str = "pain.001.001.09") -> bytes:
    """The order as a pain.001 ``Document`` (UTF-8); refuse bad input with ``InvalidValue``.

    Written as text from templates rather than as an element tree: 100,000 payments take a
    fraction of the time SubElement needs. Every value is checked and escaped on the way, and
    :func:`validate_pain001` checks the result against the schema before it is sent.
    """
    dialect = _dialect(version)
    currency = Currency.of(order.currency)
    if not order.payments:
        raise InvalidValue(f"order {order.msg_id!r} has no payments; a pain.001 needs at least one")
    seen: set[str] = set()
    total = 0
    # Encoded one transaction at a time: a single str of the whole file would be UCS-2 (the
    # Chinese text) and cost twice the memory of the UTF-8 it becomes.
    transactions: list[bytes] = []
    for payment in order.payments:
        minor, text = _transaction(payment, order, currency, dialect, seen)
        total += minor
        transactions.append(text.encode())
    control_sum = _amount_text(Money.from_minor(total, currency))
    if _digits(total) > _MAX_DIGITS:
        raise InvalidValue(f"order {order.msg_id!r}: the control sum {control_sum} has more than "
                           f"{_MAX_DIGITS} digits; split the order")
    head = _head(order, dialect, len(transactions), control_sum)
    tail = b"</PmtInf>\n</CstmrCdtTrfInitn>\n</Document>\n"
    return b"".join((head.encode(), *transactions, tail))


def _dialect(version: str) -> _Dialect:
    try:
        return _DIALECTS[version]
    except KeyError:
        raise InvalidValue(f"pain.001 version {version!r} is not supported; "
                           f"use one of {', '.join(VERSIONS)}") from None


def _head(order: Order, dialect: _Dialect, count: int, control_sum: str) -> str:
    debtor = order.debtor
    where = f"order {order.msg_id!r}"
    msg_id = _text(where, "MsgId", order.msg_id, 35)
    party_id = _party_id(where, debtor.credit_code)
    return "".join((
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{dialect.namespace}">\n<CstmrCdtTrfInitn>\n<GrpHdr>\n',
        f"<MsgId>{msg_id}</MsgId>\n",
        f"<CreDtTm>{_created_at(order)}</CreDtTm>\n",
        f"<NbOfTxs>{count}</NbOfTxs>\n<CtrlSum>{control_sum}</CtrlSum>\n",
        f"<InitgPty><Nm>{_text(where, 'initiating party', order.initiating_party, 140)}</Nm>",
        f"{party_id}</InitgPty>\n</GrpHdr>\n<PmtInf>\n",
        # One PmtInf per order, so the message id identifies it too.
        f"<PmtInfId>{msg_id}</PmtInfId>\n<PmtMtd>TRF</PmtMtd>\n",
        # Written even when false: without it the bank's own default applies.
        f"<BtchBookg>{'true' if order.batch_booking else 'false'}</BtchBookg>\n",
        f"<NbOfTxs>{count}</NbOfTxs>\n<CtrlSum>{control_sum}</CtrlSum>\n",
        f"<PmtTpInf><InstrPrty>{'HIGH' if order.urgent else 'NORM'}</InstrPrty></PmtTpInf>\n",
        dialect.execution_date.format(order.execution_date.isoformat()), "\n",
        f"<Dbtr><Nm>{_text(where, 'debtor name', debtor.name, 140)}</Nm>{party_id}</Dbtr>\n",
        f"<DbtrAcct>{_account(where, 'debtor account', debtor.account)}</DbtrAcct>\n",
        f"<DbtrAgt>{_agent(where, 'debtor', dialect, debtor.bic, debtor.cnaps, '')}</DbtrAgt>\n",
    ))


def _created_at(order: Order) -> str:
    created = order.created_at
    if created.tzinfo is None or created.utcoffset() is None:
        raise InvalidValue(f"order {order.msg_id!r}: created_at {created.isoformat()} has no "
                           "time zone; give an aware datetime so the bank reads the right time")
    return created.isoformat(timespec="seconds")


def _party_id(where: str, credit_code: str | None) -> str:
    if credit_code is None:
        return ""
    try:
        code = CreditCode(credit_code)
    except IdentifierError as exc:
        raise IdentifierError(f"{where}: {exc}") from None
    return f"<Id><OrgId><Othr><Id>{code}</Id></Othr></OrgId></Id>"


def _transaction(
    payment: Payment, order: Order, currency: Currency, dialect: _Dialect, seen: set[str]
) -> tuple[int, str]:
    """One CdtTrfTxInf and its amount in minor units."""
    e2e = payment.end_to_end_id
    where = f"payment {e2e!r}"
    e2e_text = _text(where, "EndToEndId", e2e, 35)
    if e2e in seen:
        raise InvalidValue(f"{where} appears twice in order {order.msg_id!r}; "
                           "each EndToEndId must be unique in a message")
    seen.add(e2e)
    if payment.debtor_account != order.debtor.account:
        raise InvalidValue(f"{where} debits another account than order {order.msg_id!r}; "
                           "one order debits one account")
    amount = payment.amount
    if amount.currency != currency:
        raise CurrencyError(f"{where} is in {amount.currency.code} but order {order.msg_id!r} is "
                            f"in {currency.code}; one order carries one currency")
    minor = amount.minor
    if minor <= 0:
        raise InvalidValue(f"{where}: amount {amount} must be more than zero")
    if _digits(minor) > _MAX_DIGITS:
        raise InvalidValue(f"{where}: amount {amount} has more than {_MAX_DIGITS} digits")
    agent = _agent(where, "creditor", dialect, payment.creditor_bic, payment.creditor_cnaps,
                   payment.creditor_bank_name)
    purpose = _text(where, "purpose", payment.purpose, 140, required=False)
    return minor, "".join((
        f"<CdtTrfTxInf>\n<PmtId><EndToEndId>{e2e_text}</EndToEndId></PmtId>\n",
        f'<Amt><InstdAmt Ccy="{currency.code}">{_amount_text(amount)}</InstdAmt></Amt>\n',
        f"<CdtrAgt>{agent}</CdtrAgt>\n" if agent else "",
        f"<Cdtr><Nm>{_text(where, 'creditor name', payment.creditor_name, 140)}</Nm></Cdtr>\n",
        f"<CdtrAcct>{_account(where, 'creditor account', payment.creditor_account)}</CdtrAcct>\n",
        f"<RmtInf><Ustrd>{purpose}</Ustrd></RmtInf>\n" if purpose else "",
        "</CdtTrfTxInf>\n",
    ))


def _agent(where: str, party: str, dialect: _Dialect, bic: str | None, cnaps: str | None,
           bank_name: str) -> str:
    """The FinInstnId of a party's bank, or "" when nothing identifies it."""
    try:
        return _financial_institution(party, dialect, bic, cnaps, bank_name)
    except InvalidValue as exc:
        raise type(exc)(f"{where}: {exc}") from None


# Batches name few distinct banks: caching keeps 100,000 payments from re-checking the same
# codes. Errors are not cached, and carry no payment name so the caller can add it.
@functools.lru_cache(maxsize=4096)
def _financial_institution(party: str, dialect: _Dialect, bic: str | None, cnaps: str | None,
                           bank_name: str) -> str:
    parts = []
    if bic:
        parts.append(f"<{dialect.bic_tag}>{_identifier(party, Bic, bic)}</{dialect.bic_tag}>")
    if cnaps:
        parts.append(f"<ClrSysMmbId><ClrSysId><Cd>{CNAPS_CLEARING_CODE}</Cd></ClrSysId>"
                     f"<MmbId>{_identifier(party, CnapsCode, cnaps)}</MmbId></ClrSysMmbId>")
    if bank_name:
        parts.append(f"<Nm>{_text(f'{party} bank', 'name', bank_name, 140)}</Nm>")
    if parts:
        return f"<FinInstnId>{''.join(parts)}</FinInstnId>"
    if party == "debtor":
        # DbtrAgt is mandatory; NOTPROVIDED is the EPC convention for an agent left unnamed.
        return "<FinInstnId><Othr><Id>NOTPROVIDED</Id></Othr></FinInstnId>"
    return ""


def _identifier(party: str, kind: type[Bic] | type[CnapsCode], value: str) -> str:
    try:
        return str(kind(value))
    except IdentifierError as exc:
        raise IdentifierError(f"{party} bank {exc}") from None


def _account(where: str, what: str, number: str) -> str:
    """``Id`` of a CashAccount: an IBAN when it looks like one, else Othr/Id as given."""
    if isinstance(number, str) and _LOOKS_LIKE_IBAN.fullmatch(number):
        # Refused rather than sent as Othr: a mistyped IBAN must not reach the bank at all.
        try:
            return f"<Id><IBAN>{Iban(number)}</IBAN></Id>"
        except IdentifierError as exc:
            raise IdentifierError(f"{where}: {what}: {exc}") from None
    return f"<Id><Othr><Id>{_text(where, what, number, 34)}</Id></Othr></Id>"


def _text(where: str, what: str, value: str, limit: int, *, required: bool = True) -> str:
    """``value`` checked and escaped for element content."""
    if not isinstance(value, str):
        raise InvalidValue(f"{where}: {what} must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidValue(f"{where}: {what} is empty")
    if len(value) > limit:
        raise InvalidValue(f"{where}: {what} has {len(value)} characters; "
                           f"pain.001 allows at most {limit}")
    bad = _FORBIDDEN.search(value)
    if bad:
        raise InvalidValue(f"{where}: {what} contains U+{ord(bad.group()):04X} at position "
                           f"{bad.start() + 1}, a control character or one XML cannot carry; "
                           "remove it")
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _amount_text(amount: Money) -> str:
    # Money keeps exactly the currency's minor units, so this prints "41728.21", "100" (JPY).
    return f"{amount.amount:f}"


def _digits(minor: int) -> int:
    return len(str(abs(minor)))


# --- schema validation --------------------------------------------------------------------------

# A compiled schema keeps its error log on itself, so threads sharing one would read each
# other's errors: each thread compiles its own, once per version.
_schemas = threading.local()


def _schema(version: str) -> etree.XMLSchema:
    _dialect(version)  # an unsupported version is refused before any file is opened
    cache: dict[str, etree.XMLSchema] | None = getattr(_schemas, "by_version", None)
    if cache is None:
        cache = _schemas.by_version = {}
    if version not in cache:
        cache[version] = etree.XMLSchema(etree.parse(str(XSD_DIR / f"{version}.xsd")))
    return cache[version]


def validate_pain001(data: bytes, version: str = "pain.001.001.09") -> None:
    """Check a pain.001 document against the official schema; raise ``SchemaError`` if it fails."""
    schema = _schema(version)
    try:
        root = _parse(data)
    except ValueError as exc:
        raise SchemaError(f"{version}: {exc}") from None
    namespace = etree.QName(root).namespace
    if namespace != ISO_NAMESPACE + version:
        raise SchemaError(f"{version}: the document is in namespace {namespace!r}, "
                          f"not {ISO_NAMESPACE + version!r}")
    if schema.validate(root):
        return
    first = schema.error_log[0]
    # libxml2 names elements {urn:...}Tag; the version already says which namespace.
    message = re.sub(r"\{[^}]*\}", "", first.message)
    raise SchemaError(f"{version}: line {first.line}: {message}")


def _parse(data: bytes) -> etree._Element:
    """Parse without entities, DTDs or network access; raise ``ValueError`` on anything else."""
    try:
        root = etree.fromstring(data, _secure_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    # ISO 20022 messages never carry a DTD; one here can only be an entity trick.
    if root.getroottree().docinfo.doctype:
        raise ValueError("a DOCTYPE is not allowed")
    return root


def _secure_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers must not be shared between threads. libxml2's
    # default limits stay on (huge_tree off): they bound single text nodes and nesting depth,
    # not file size, and a 100,000-payment file (~50 MB) parses within them.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)


# --- signing ------------------------------------------------------------------------------------

_ENVELOPE_CLOSE = b"</SignedMessage>"


def sign_envelope(document: bytes, private_key: PrivateKeyTypes, certificate_pem: bytes) -> bytes:
    """Wrap a serialized ISO 20022 ``Document`` in the bank's signed envelope.

    The same enveloped XML-DSig signxml's ``XMLSigner`` makes (exclusive c14n, SHA-256, the
    certificate in KeyInfo), written directly: XMLSigner copies the whole tree twice through
    serialize-and-parse, which is most of its ~7 s on 100,000 payments. Here the envelope is
    canonicalized once and those canonical bytes are both digested and sent, so what the bank
    canonicalizes is exactly what was digested.
    """
    certificate = _load_certificate(certificate_pem)
    key, method = _signing_key(private_key, certificate)
    try:
        doc = _parse(document)
    except ValueError as exc:
        raise InvalidValue(f"document to sign: {exc}") from None
    if etree.QName(doc).localname != "Document":
        raise InvalidValue(f"document to sign is <{etree.QName(doc).localname}>, not <Document>")
    envelope = etree.Element(ENVELOPE_TAG, nsmap={None: ENVELOPE_NS})
    envelope.append(doc)
    # The enveloped-signature transform removes the Signature before digesting, so the digest
    # input is the envelope as it is now, before the Signature goes in.
    canonical = etree.tostring(envelope, method="c14n", exclusive=True)
    assert canonical.endswith(_ENVELOPE_CLOSE)
    signature = _signature(method, hashlib.sha256(canonical).digest(), key, certificate)
    return b"".join((
        b'<?xml version="1.0" encoding="UTF-8"?>\n',
        canonical[: -len(_ENVELOPE_CLOSE)],
        etree.tostring(signature, encoding="UTF-8", xml_declaration=False),
        _ENVELOPE_CLOSE,
        b"\n",
    ))


def _signature(
    method: SignatureMethod,
    digest: bytes,
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> etree._Element:
    def ds(parent: etree._Element, tag: str, text: str | None = None,
           **attributes: str) -> etree._Element:
        node = etree.SubElement(parent, f"{{{DS_NS}}}{tag}", attributes)
        node.text = text
        return node

    exclusive = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
    signature = etree.Element(f"{{{DS_NS}}}Signature", nsmap={"ds": DS_NS})
    signed_info = ds(signature, "SignedInfo")
    ds(signed_info, "CanonicalizationMethod", Algorithm=exclusive)
    ds(signed_info, "SignatureMethod", Algorithm=method.value)
    reference = ds(signed_info, "Reference", URI="")
    transforms = ds(reference, "Transforms")
    ds(transforms, "Transform", Algorithm=SignatureConstructionMethod.enveloped.value)
    ds(transforms, "Transform", Algorithm=exclusive)
    ds(reference, "DigestMethod", Algorithm=DigestAlgorithm.SHA256.value)
    ds(reference, "DigestValue", base64.b64encode(digest).decode())
    # Exclusive c14n of SignedInfo does not depend on where it sits, so the bytes signed here
    # are the bytes the bank will canonicalize out of the envelope.
    signed_bytes = etree.tostring(signed_info, method="c14n", exclusive=True)
    value = _raw_signature(private_key, signed_bytes)
    ds(signature, "SignatureValue", base64.b64encode(value).decode())
    der = certificate.public_bytes(serialization.Encoding.DER)
    ds(ds(ds(signature, "KeyInfo"), "X509Data"), "X509Certificate", base64.b64encode(der).decode())
    return signature


def _raw_signature(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, data: bytes
) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    # XML-DSig wants ECDSA as the two integers r and s side by side, each the curve's size,
    # not the DER sequence cryptography returns.
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = (private_key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _load_certificate(certificate_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise SecurityError("signing certificate is not a PEM X.509 certificate") from None


def _signing_key(
    private_key: PrivateKeyTypes, certificate: x509.Certificate
) -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, SignatureMethod]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        key, method = private_key, SignatureMethod.RSA_SHA256
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        key, method = private_key, SignatureMethod.ECDSA_SHA256
    else:
        raise SecurityError(f"signing key is {type(private_key).__name__}; "
                            "the bank accepts RSA or EC keys only")
    # A certificate for another key would make every envelope fail at the bank.
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise SecurityError("signing certificate does not belong to the signing key")
    return key, method


# --- verifying the bank's answers ---------------------------------------------------------------

# Only what the bank itself produces; anything else in a SignedInfo is refused.
_EXPECTED = SignatureConfiguration(
    # A direct child of the envelope: not somewhere deeper, where a wrapped copy of an old
    # message could supply it.
    location="./",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)


def verify_bank_envelope(data: bytes, trusted_certs: Mapping[str, bytes]) -> tuple[bytes, str]:
    """Check the bank's signed envelope; return the signed ``Document`` and the signer.

    ``trusted_certs`` maps SHA-256 fingerprints (hex of the certificate's DER) to the PEM
    certificates registered for the bank. Raises ``SignatureRefused`` with a one-line reason.
    """
    fingerprint = _envelope_signer(data)
    trusted = {fp.lower().replace(":", ""): pem for fp, pem in trusted_certs.items()}
    if fingerprint not in trusted:
        raise SignatureRefused(f"bank message is signed by certificate {fingerprint}, "
                               "which is not registered for this bank")
    # Verify with the registered certificate, never the copy the message brought: that copy
    # only says which registered one to use.
    cert = x509.load_pem_x509_certificate(trusted[fingerprint])
    _check_validity(cert, fingerprint)
    try:
        verified = XMLVerifier().verify(
            data, x509_cert=cert, parser=_secure_parser(), expect_config=_EXPECTED
        )
    # Whatever goes wrong while checking hostile input (an unknown algorithm, an empty
    # SignatureValue, a schema-invalid Signature) means it does not verify.
    except (SignXMLException, InvalidSignature, etree.LxmlError, ValueError, TypeError,
            KeyError) as exc:
        reason = " ".join(str(exc).split())
        raise SignatureRefused(f"bank message signature does not verify: {reason}") from None
    return _signed_document(verified.signed_xml), fingerprint  # type: ignore[union-attr]


def _envelope_signer(data: bytes) -> str:
    """The fingerprint of the certificate an envelope names, after checking its shape."""
    # Its own function so this parse tree is freed before signxml builds its several copies.
    try:
        root = _parse(data)
    except ValueError as exc:
        raise SignatureRefused(f"bank message: {exc}") from None
    if root.tag != ENVELOPE_TAG:
        raise SignatureRefused(f"bank message is <{root.tag}>, not a signed envelope "
                               f"in {ENVELOPE_NS}")
    signatures = root.findall("ds:Signature", _DS)
    if not signatures:
        raise SignatureRefused("bank message is not signed: the envelope has no ds:Signature")
    if len(signatures) > 1:
        raise SignatureRefused("bank message carries more than one ds:Signature")
    return _signer_fingerprint(signatures[0])


def _signed_document(signed: etree._Element | None) -> bytes:
    # Read from what signxml says was signed, never from the input: otherwise a forged
    # Document could sit where our lookup finds it while the signed original sits where the
    # signature's reference finds it (signature wrapping).
    if signed is None or signed.tag != ENVELOPE_TAG:
        raise SignatureRefused("bank message signature does not cover the whole envelope")
    children = list(signed.iterchildren(tag=etree.Element))
    if len(children) != 1 or etree.QName(children[0]).localname != "Document":
        raise SignatureRefused("bank message must carry exactly one signed Document")
    return etree.tostring(children[0], xml_declaration=True, encoding="UTF-8")


def _signer_fingerprint(signature: etree._Element) -> str:
    node = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS)
    if node is None or not (node.text or "").strip():
        raise SignatureRefused("bank message signature names no X509Certificate, "
                               "so its signer cannot be identified")
    try:
        der = base64.b64decode("".join(node.text.split()), validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise SignatureRefused("bank message signature's X509Certificate cannot be read") from None
    return hashlib.sha256(der).hexdigest()


def _check_validity(cert: x509.Certificate, fingerprint: str) -> None:
    now = datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        raise SignatureRefused(f"bank signer certificate {fingerprint} is not valid before "
                               f"{cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise SignatureRefused(f"bank signer certificate {fingerprint} expired at "
                               f"{cert.not_valid_after_utc.isoformat()}")


__all__ = [
    "CNAPS_CLEARING_CODE",
    "Debtor",
    "ENVELOPE_NS",
    "Order",
    "SchemaError",
    "SignatureRefused",
    "VERSIONS",
    "build_pain001",
    "sign_envelope",
    "validate_pain001",
    "verify_bank_envelope",
]
