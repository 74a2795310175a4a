"""Detached signatures over exact bytes (JSON bodies, receipts, MT940 files).

RSA PKCS#1 v1.5 or ECDSA, SHA-256, base64 in the ``X-Signature`` header and the signing
certificate's SHA-256 fingerprint in ``X-Signer``, as the Chinese direct-connect dialect does.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes


class DetachedSignatureError(ValueError):
    """Missing, malformed or wrong signature; the message says which."""


def sign(body: bytes, private_key: PrivateKeyTypes) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        raw = private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        raw = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    else:
        raise DetachedSignatureError(f"unsupported key type {type(private_key).__name__}")
    return base64.b64encode(raw).decode("ascii")


def verify(body: bytes, signature_b64: str | None, certificate_pem: bytes) -> None:
    if not signature_b64:
        raise DetachedSignatureError("the answer carries no signature")
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise DetachedSignatureError("the signature is not base64") from None
    public_key = _public_key(certificate_pem)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
        else:
            raise DetachedSignatureError(f"unsupported key type {type(public_key).__name__}")
    except InvalidSignature:
        raise DetachedSignatureError("the signature does not match the content "
                                     "(tampered, or signed by someone else)") from None


@functools.lru_cache(maxsize=64)
def _public_key(certificate_pem: bytes) -> PublicKeyTypes:
    """The certificate's public key, parsed once: a connector checks every answer and every
    receipt of its bank against the same certificate. (The check itself runs every time.)"""
    return x509.load_pem_x509_certificate(certificate_pem).public_key()
