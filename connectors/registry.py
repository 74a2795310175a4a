"""From a bank's config entry to a ready connector in its dialect."""

from __future__ import annotations

from pathlib import Path

from config import BankConfig
from connectors.archive import Archive
from connectors.base import BankConnector, Signer
from connectors.errors import CertificateError
from connectors.transport import Endpoint, RetryPolicy, Transport
from yinqi.security.files import FileCipher


def endpoint_of(code: str, bank: BankConfig, home: Path,
                key_password: bytes | None = None) -> Endpoint:
    return Endpoint(bank=code, base_url=str(bank.endpoint),
                    ca_cert=bank.resolve_path(home, bank.ca_cert),
                    client_cert=bank.resolve_path(home, bank.client_cert),
                    client_key=bank.resolve_path(home, bank.client_key),
                    connect_timeout=float(bank.connect_timeout_seconds),
                    read_timeout=float(bank.read_timeout_seconds),
                    client_key_password=key_password)


def connect(code: str, bank: BankConfig, home: Path, signer: Signer, *, files: FileCipher,
            retry: RetryPolicy = RetryPolicy(), channel: bool = True) -> BankConnector:
    """``files`` seals everything the connector archives (no default: nothing we keep about
    a payment may land on disk in the clear).

    ``channel=False``: the TLS channel (and our client certificate) is only checked and
    opened at the first request; preparing orders needs none of it."""
    cert_path = bank.resolve_path(home, bank.signing_cert)
    try:
        bank_cert = cert_path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(code, f"the bank's signing certificate {cert_path} is missing: "
                                     "get it from the bank (`yinqi sandbox-bank connect` for "
                                     "the sandbox)") from None
    transport = Transport(endpoint_of(code, bank, home, signer.tls_key_password), retry=retry,
                          lazy=not channel)
    archive = Archive(home / "archive", code, files)
    if bank.dialect == "iso20022":
        from connectors.iso20022.connector import IsoConnector

        return IsoConnector(code, transport, signer, bank_cert, archive)
    from connectors.cnh2h import H2hConnector

    return H2hConnector(code, transport, signer, bank_cert, archive)
