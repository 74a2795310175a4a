"""From a bank's config entry to a ready connector in its dialect."""

from __future__ import annotations

from pathlib import Path

from config import BankConfig
from connectors.archive import Archive
from connectors.base import BankConnector, Signer
from connectors.errors import CertificateError
from connectors.transport import Endpoint, RetryPolicy, Transport


def endpoint_of(code: str, bank: BankConfig, home: Path) -> Endpoint:
    return Endpoint(bank=code, base_url=str(bank.endpoint),
                    ca_cert=bank.resolve_path(home, bank.ca_cert),
                    client_cert=bank.resolve_path(home, bank.client_cert),
                    client_key=bank.resolve_path(home, bank.client_key),
                    connect_timeout=float(bank.connect_timeout_seconds),
                    read_timeout=float(bank.read_timeout_seconds))


def connect(code: str, bank: BankConfig, home: Path, signer: Signer, *,
            retry: RetryPolicy = RetryPolicy()) -> BankConnector:
    cert_path = bank.resolve_path(home, bank.signing_cert)
    try:
        bank_cert = cert_path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(code, f"the bank's signing certificate {cert_path} is missing: "
                                     "get it from the bank (`yinqi sandbox-bank connect` for "
                                     "the sandbox)") from None
    transport = Transport(endpoint_of(code, bank, home), retry=retry)
    archive = Archive(home / "archive", code)
    if bank.dialect == "iso20022":
        from connectors.iso20022.connector import IsoConnector

        return IsoConnector(code, transport, signer, bank_cert, archive)
    from connectors.cnh2h import H2hConnector

    return H2hConnector(code, transport, signer, bank_cert, archive)
