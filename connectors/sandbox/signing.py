"""Message signatures as the sandbox bank checks and makes them.

ISO 20022 messages travel in a small envelope so the ``Document`` itself stays valid against
its schema::

    <SignedMessage xmlns="urn:yinqi:sandbox:envelope:1">
      <Document xmlns="urn:iso:std:iso:20022:tech:xsd:...">...</Document>
      <ds:Signature>...</ds:Signature>      enveloped, Reference URI="" (the whole envelope)
    </SignedMessage>

The Chinese direct-connect dialect instead signs the exact JSON body bytes and sends the
signature beside it (a header), base64-encoded.

Every refusal is a :class:`SignatureError` carrying the ISO 20022 status reason the bank
reports back, so the caller can answer without translating.
"""

from __future__ import annotations

import functools

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidCertificate, SignXMLException

from yinqi.errors import SecurityError

ENVELOPE_NS = "urn:yinqi:sandbox:envelope:1"
ENVELOPE_TAG = f"{{{ENVELOPE_NS}}}SignedMessage"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_DS = {"ds": DS_NS}

# Only what this bank itself produces: anything else in a SignedInfo is refused rather than
# trusted because a library happens to support it.
_EXPECTED = SignatureConfiguration(
    # The signature must be a direct child of the envelope, not somewhere deeper where a
    # wrapped copy of an old message could supply it.
    location="./",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)


class SignatureError(SecurityError):
    """A message's signature is missing, broken, or by someone the bank does not accept."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True, slots=True)
class Opened:
    document: bytes
    signer_fingerprint: str


def sign_envelope(
    document: bytes, key_pem: bytes, cert_pem: bytes, *, key_password: bytes | None = None
) -> bytes:
    """Wrap a serialized ISO 20022 ``Document`` in a signed envelope."""
    doc = _parse(document, "document to sign")
    if etree.QName(doc).localname != "Document":
        raise SignatureError("FF01", f"expected an ISO 20022 Document to sign, got <{doc.tag}>")
    key = _load_private_key(key_pem, key_password)
    envelope = etree.Element(ENVELOPE_TAG, nsmap={None: ENVELOPE_NS})
    envelope.append(doc)
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=(
            SignatureMethod.RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey)
            else SignatureMethod.ECDSA_SHA256
        ),
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(envelope, key=key, cert=cert_pem.decode("ascii"))
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def open_envelope(data: bytes, trusted_certs: Mapping[str, bytes]) -> Opened:
    """Verify a signed envelope and return the ``Document`` it carries.

    ``trusted_certs`` maps SHA-256 fingerprints to the PEM certificates of the signers the
    bank has registered; a signature by anyone else is refused even if it is valid.
    """
    root = _parse(data, "message")
    if root.tag != ENVELOPE_TAG:
        raise SignatureError("FF01", f"expected a <SignedMessage> envelope in {ENVELOPE_NS}, "
                                     f"got <{root.tag}>")
    documents = [child for child in root.iterchildren(tag=etree.Element)
                 if etree.QName(child).localname == "Document"]
    if len(documents) != 1:
        raise SignatureError("FF01", f"the envelope must hold exactly one Document, "
                                     f"found {len(documents)}")
    signatures = root.findall("ds:Signature", _DS)
    if not signatures:
        raise SignatureError("DS0A", "the envelope carries no ds:Signature")
    if len(signatures) > 1:
        raise SignatureError("DS0B", "the envelope carries more than one ds:Signature")

    signer_fingerprint = _signer_fingerprint(signatures[0])
    trusted = {fp.lower().replace(":", ""): pem for fp, pem in trusted_certs.items()}
    if signer_fingerprint not in trusted:
        raise SignatureError("DS0E", f"signer certificate {signer_fingerprint} is not "
                                     "registered with the bank for this account")
    # Verify against the certificate the bank registered, never the one the message brought:
    # the message's copy only tells us which registered certificate to use.
    cert = x509.load_pem_x509_certificate(trusted[signer_fingerprint])
    _check_validity(cert, signer_fingerprint)
    try:
        verified = XMLVerifier().verify(
            data, x509_cert=cert, parser=_secure_parser(), expect_config=_EXPECTED
        )
    except InvalidCertificate as exc:
        raise SignatureError("DS0D", f"signer certificate {signer_fingerprint}: {exc}") from None
    # Whatever else goes wrong while checking hostile input (an unknown algorithm URI, a
    # SignatureValue without text, a schema-invalid Signature) means it does not verify.
    except (SignXMLException, InvalidSignature, etree.LxmlError, ValueError, TypeError,
            KeyError) as exc:
        raise SignatureError("DS0B", f"signature does not verify: {exc}") from None

    # The Document is taken from what signxml says was signed, not from `root`. Had we read it
    # from the input we verified, an attacker could keep the signed original where the
    # signature's reference finds it and put a forged Document where our own lookup finds it
    # (signature wrapping); the verified output contains only the bytes the digest covered.
    signed = verified.signed_xml  # type: ignore[union-attr]
    if signed is None or signed.tag != ENVELOPE_TAG:
        raise SignatureError("DS0B", "the signature does not cover the whole envelope")
    children = list(signed.iterchildren(tag=etree.Element))
    if len(children) != 1 or etree.QName(children[0]).localname != "Document":
        raise SignatureError("FF01", "the signed envelope must hold exactly one Document")
    document = etree.tostring(children[0], xml_declaration=True, encoding="UTF-8")
    return Opened(document=document, signer_fingerprint=signer_fingerprint)


def sign_detached(body: bytes, key_pem: bytes, *, key_password: bytes | None = None) -> str:
    """Base64 signature over the exact body bytes: RSA PKCS#1 v1.5 or ECDSA (DER), SHA-256."""
    key = _load_private_key(key_pem, key_password)
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    else:
        # RFC 6979 nonces: the same body gives the same signature, so documents that embed
        # one (receipts) stay byte-for-byte reproducible, and no weak RNG can leak the key.
        raw = key.sign(body, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return base64.b64encode(raw).decode("ascii")


def verify_detached(body: bytes, signature_b64: str | None, cert_pem: bytes) -> None:
    """Check a detached signature against the signer's certificate; raise if it fails."""
    text = (signature_b64 or "").strip()
    if not text:
        raise SignatureError("DS0A", "the message carries no signature")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SignatureError("DS0A", "the signature is not valid base64") from None
    public_key = _public_key(cert_pem)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
        else:
            raise SignatureError("DS0B", f"signer key type {type(public_key).__name__} "
                                         "is not RSA or EC")
    except InvalidSignature:
        raise SignatureError("DS0B", "the signature does not match the message body") from None


def _secure_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )


def _parse(data: bytes, what: str) -> etree._Element:
    try:
        root = etree.fromstring(data, parser=_secure_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise SignatureError("FF01", f"the {what} is not well-formed XML: {exc}") from None
    # ISO 20022 messages never carry a DTD; one here can only be an entity trick.
    if root.getroottree().docinfo.doctype:
        raise SignatureError("FF01", f"the {what} contains a DOCTYPE, which is not allowed")
    return root


def _signer_fingerprint(signature: etree._Element) -> str:
    node = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS)
    if node is None or not (node.text or "").strip():
        raise SignatureError("DS0E", "the signature names no X509Certificate, "
                                     "so its signer cannot be identified")
    try:
        der = base64.b64decode("".join(node.text.split()), validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise SignatureError("DS0E", "the signature's X509Certificate cannot be read") from None
    return hashlib.sha256(der).hexdigest()


def _check_validity(cert: x509.Certificate, fp: str) -> None:
    now = datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        raise SignatureError("DS0D", f"signer certificate {fp} is not valid before "
                                     f"{cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise SignatureError("DS0D", f"signer certificate {fp} expired at "
                                     f"{cert.not_valid_after_utc.isoformat()}")


@functools.lru_cache(maxsize=64)
def _public_key(cert_pem: bytes) -> object:
    # Cached: parsing the certificate costs more than checking an RSA signature, and the bank
    # checks every request of a signer, and its own receipts, against the same few PEMs.
    return x509.load_pem_x509_certificate(cert_pem).public_key()


@functools.lru_cache(maxsize=16)
def _load_private_key(
    key_pem: bytes, password: bytes | None
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    # Cached: loading checks the RSA key's arithmetic (~40 ms), and the bank signs every
    # answer and receipt with the same few keys.
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"signing key cannot be loaded (wrong password or not a PEM "
                            f"private key): {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SecurityError(f"signing key is {type(key).__name__}; the bank signs only "
                            "with RSA or EC keys")
    return key
