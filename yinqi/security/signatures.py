"""Checking our own signature on a payment file, long after it was signed.

A signed ISO 20022 order is an enveloped XML-DSig envelope naming its certificate; it is
checked against the certificate of the key *we* recorded with that fingerprint (never the copy
the file brings), current or retired, so a rotation leaves every earlier file verifiable.
A Chinese direct-connect order is a JSON body whose signature travels in a header per send;
it can be checked only when that signature is supplied.

Validity dates are not held against an archived file: a file signed while the certificate was
valid stays correctly signed after the certificate expires. What matters instead is that it
was signed while the key was in service, which the caller checks against the signing time it
knows (:func:`in_service`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

from connectors import detached
from connectors.iso20022.pain001 import DS_NS, ENVELOPE_TAG

_DS = {"ds": DS_NS}


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    fingerprint: str
    certificate_pem: bytes
    not_before: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    method: str  # "xml-dsig", "detached" or "none"
    detail: str
    key_id: str | None = None
    fingerprint: str | None = None


def verify_signed_file(data: bytes, keys: Sequence[TrustedKey], *,
                       signature: str | None = None) -> Verification:
    """Which of ``keys`` signed ``data``, or why none did."""
    if not keys:
        return Verification(False, "none", "no key to check against")
    if signature is not None:
        return verify_detached(data, signature, keys)
    head = data.lstrip()[:1]
    if head == b"<":
        return verify_envelope(data, keys)
    if head in (b"{", b"["):
        return Verification(False, "none", "a direct-connect (JSON) order carries no signature "
                            "of its own: its signature travels in the X-Signature header of "
                            "each send; pass it with --signature to check it")
    return Verification(False, "none", "not a signed payment file (neither XML nor JSON)")


def verify_envelope(data: bytes, keys: Sequence[TrustedKey]) -> Verification:
    def refused(detail: str, key: TrustedKey | None = None, fp: str | None = None
                ) -> Verification:
        return Verification(False, "xml-dsig", detail, key.key_id if key else None,
                            fp or (key.fingerprint if key else None))

    try:
        root = etree.fromstring(data, parser=_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        return refused(f"not well-formed XML ({' '.join(str(exc).split())})")
    if root.getroottree().docinfo.doctype:
        return refused("the file contains a DOCTYPE, which no signed order has")
    if root.tag != ENVELOPE_TAG:
        return refused(f"not a signed envelope: the root is <{etree.QName(root).localname}>")
    signatures = root.findall("ds:Signature", _DS)
    if len(signatures) != 1:
        return refused(f"the envelope carries {len(signatures)} signatures; a signed order "
                       "carries exactly one")
    node = signatures[0].find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS)
    try:
        der = base64.b64decode("".join((node.text or "").split()), validate=True) \
            if node is not None else b""
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        return refused("the signature names no readable X509Certificate")
    fp = hashlib.sha256(der).hexdigest()
    key = next((k for k in keys if k.fingerprint == fp), None)
    if key is None:
        return refused(f"signed by certificate {fp[:16]}..., which is not "
                       f"{'the key asked for' if len(keys) == 1 else 'one of our keys'}",
                       fp=fp)
    # Checked against the certificate we recorded, never the copy the file brought.
    cert = x509.load_pem_x509_certificate(key.certificate_pem)
    config = SignatureConfiguration(
        location="./", expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256,
                                     SignatureMethod.ECDSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
        verification_time=_within(cert))
    try:
        verified = XMLVerifier().verify(data, x509_cert=cert, parser=_parser(),
                                        expect_config=config)
    except (SignXMLException, InvalidSignature, etree.LxmlError, ValueError, TypeError,
            KeyError) as exc:
        return refused(f"the signature does not verify: the file was altered after signing "
                       f"({' '.join(str(exc).split())[:160]})", key)
    signed = verified.signed_xml  # type: ignore[union-attr]
    if signed is None or signed.tag != ENVELOPE_TAG:
        return refused("the signature does not cover the whole envelope", key)
    return Verification(True, "xml-dsig", "signature valid", key.key_id, key.fingerprint)


def verify_detached(body: bytes, signature: str, keys: Sequence[TrustedKey]) -> Verification:
    for key in keys:
        try:
            detached.verify(body, signature, key.certificate_pem)
        except detached.DetachedSignatureError as exc:
            if "not base64" in str(exc) or "no signature" in str(exc):
                return Verification(False, "detached", str(exc))
            continue
        except ValueError:
            continue  # another key type than the signature's
        return Verification(True, "detached", "signature valid", key.key_id, key.fingerprint)
    return Verification(False, "detached", "the signature matches none of the keys checked: "
                        "the body was altered, or someone else signed it")


def in_service(key: TrustedKey, signed_at: datetime) -> bool:
    """Whether ``key`` was our signing key at ``signed_at`` (a retired key signs nothing)."""
    if signed_at < key.not_before:
        return False
    return key.retired_at is None or signed_at <= key.retired_at


def _within(cert: x509.Certificate) -> datetime:
    now = datetime.now(UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return min(max(now, start + timedelta(seconds=1)), end - timedelta(seconds=1))


def _parser() -> etree.XMLParser:
    # A fresh parser per call (lxml parsers are not shared between threads); no entities,
    # no network, no DTD: the file may have been planted.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)
