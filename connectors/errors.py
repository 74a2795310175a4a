"""What can go wrong between Yinqi and a bank, split by what it allows next.

    BankError
     ├── NotDelivered          the bank certainly did not take the request: safe to send again
     │    ├── BankUnavailable  the bank said so itself (maintenance, 503 Retry-After)
     │    └── CertificateError a certificate on either side is refused: nothing got through
     ├── OutcomeUnknown        the request may have been processed: only a status query may follow
     ├── BankRefused           the bank answered and refused (a business or format rejection)
     └── BadBankAnswer         the answer is malformed, unsigned or fails its signature: alert

The split between NotDelivered and OutcomeUnknown is the exactly-once rule at the wire: a
payment order is retried only on NotDelivered; after OutcomeUnknown the payment stays
SUBMITTING/UNKNOWN until a status query settles it.
"""

from __future__ import annotations

from yinqi.errors import YinqiError
from yinqi.security.masking import redact


class BankError(YinqiError):
    """Base of every connector error; ``bank`` names the bank's config id."""

    def __init__(self, bank: str, message: str) -> None:
        # Messages quote bank answers and requests; they end up in logs, alerts and the CLI.
        super().__init__(redact(f"bank {bank}: {message}"))
        self.bank = bank


class NotDelivered(BankError):
    """The bank did not receive the request (no connection, refused before any byte was sent)."""


class BankUnavailable(NotDelivered):
    """The bank answered that it takes nothing now (maintenance window); retry after a pause."""

    def __init__(self, bank: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(bank, message)
        self.retry_after = retry_after


class OutcomeUnknown(BankError):
    """The request left, and no definitive answer came back: ask the bank before anything else."""


class BankRefused(BankError):
    """The bank answered with a definitive refusal; ``reason_code`` is its reason (ISO code)."""

    def __init__(self, bank: str, message: str, reason_code: str | None = None,
                 status_code: int | None = None, body: bytes = b"") -> None:
        super().__init__(bank, message)
        self.reason_code, self.status_code, self.body = reason_code, status_code, body


class BadBankAnswer(BankError):
    """The bank's answer cannot be trusted or read: unsigned, tampered or malformed."""


class CertificateError(NotDelivered):
    """A certificate on either side is missing, unreadable, untrusted or expired; no request
    got through, and resending is pointless until it is fixed."""
