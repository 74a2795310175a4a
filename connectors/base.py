"""The one interface every bank connector implements, and the types it speaks.

Flows never know which bank or dialect they talk to: they hold a ``BankConnector``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from connectors.errors import BankError
from yinqi.bankdata import Receipt, Statement, StatusReport
from yinqi.money import Money
from yinqi.payments import Payment


@dataclass(frozen=True, slots=True)
class Signer:
    """Our signing identity: the key that signs orders and the certificate the bank registered."""

    private_key: PrivateKeyTypes
    certificate_pem: bytes
    # Unlocks our encrypted TLS client keys (the keystore encrypts every key it writes under
    # one password derived from the master secret); None when they are kept in the clear.
    tls_key_password: bytes | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(self.certificate_pem)
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True, slots=True)
class DebtorAccount:
    company: str
    account: str
    currency: str
    bic: str | None = None
    cnaps: str | None = None
    credit_code: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """One bank message: payments of one debtor account, currency and execution date."""

    msg_id: str
    created_at: datetime
    debtor: DebtorAccount
    execution_date: date
    payments: Sequence[Payment]
    urgent: bool = False
    batch_booking: bool = False


@dataclass(frozen=True, slots=True)
class Exchange:
    """What was sent and received, archived byte for byte."""

    sent_path: Path | None
    sent_sha256: str | None
    received_path: Path | None
    received_sha256: str | None


@dataclass(frozen=True, slots=True)
class Submission:
    """The bank's immediate answer to an order. ``taken`` is False when it refused the whole
    message (nothing was booked and a corrected order may follow under a new message ID)."""

    msg_id: str
    taken: bool
    reports: tuple[StatusReport, ...]
    replayed: bool = False
    exchange: Exchange | None = None


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """What the bank knows of a message: ``received`` False means it never got it."""

    received: bool
    reports: tuple[StatusReport, ...] = ()
    exchange: Exchange | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    bank: str
    account: str
    booked: Money
    available: Money | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Echo:
    authenticated: bool
    echoed: str
    bank_time: datetime | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DownloadedReceipt:
    receipt: Receipt
    signature_valid: bool
    path: Path | None = None
    sha256: str = field(default="")


class BankConnector(ABC):
    """A bank's direct-connect channel in one dialect."""

    code: str

    @abstractmethod
    def prepare(self, batch: OutgoingBatch) -> bytes:
        """The order in the bank's dialect, validated and signed: the bytes to keep and send."""

    @abstractmethod
    def send_signed(self, msg_id: str, body: bytes) -> Submission:
        """Send prepared bytes. A resend must be these exact bytes, so that the bank's
        idempotency (message ID, 业务参考号) answers it with its original result. Raises
        NotDelivered (safe to resend) or OutcomeUnknown (ask ``status`` before anything else)."""

    def submit(self, batch: OutgoingBatch) -> Submission:
        """Prepare and send in one go (tools and tests; the payment flow keeps the bytes first)."""
        return self.send_signed(batch.msg_id, self.prepare(batch))

    @abstractmethod
    def status(self, msg_id: str, end_to_end_ids: Sequence[str]) -> StatusAnswer:
        """The bank's current word on a message and its payments."""

    @abstractmethod
    def balance(self, account: str, currency: str) -> Balance: ...

    @abstractmethod
    def statements(self, account: str, first: date, last: date) -> list[Statement]:
        """End-of-day statements of the closed business days in [first, last]."""

    @abstractmethod
    def notifications(self, account: str, day: date) -> list[Statement]:
        """Debit/credit notifications of one day (today included)."""

    @abstractmethod
    def receipt(self, reference: str) -> DownloadedReceipt: ...

    def receipts(self, references: Sequence[str]) -> dict[str, DownloadedReceipt | BankError]:
        """Several receipts (批量回单下载), each still individually signed and checked, and
        kept as its own file, exactly as :meth:`receipt` gives it. Per reference: the
        receipt, or the error that reference met (a ``BankRefused`` with ``status_code``
        404 when the bank has no receipt for it yet).

        This default asks one by one; connectors whose bank offers a batch download
        override it and fall back to this where the bank does not."""
        out: dict[str, DownloadedReceipt | BankError] = {}
        for reference in references:
            try:
                out[reference] = self.receipt(reference)
            except BankError as exc:
                out[reference] = exc
        return out

    @abstractmethod
    def echo(self, text: str) -> Echo:
        """A signed round trip: proves the channel and our signing identity are accepted."""

    def close(self) -> None:  # noqa: B027 - optional for connectors without resources
        pass
