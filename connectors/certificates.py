"""Certificate expiry watch: warn at 30 and 7 days, refuse expired certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509

WARN_DAYS = 30
URGENT_DAYS = 7


class Expiry(StrEnum):
    OK = "ok"
    WARN = "warn"          # under 30 days left
    URGENT = "urgent"      # under 7 days left
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    path: Path | None
    subject: str
    not_before: datetime
    not_after: datetime
    days_left: int
    state: Expiry

    def describe(self, what: str) -> str:
        where = f" ({self.path})" if self.path else ""
        if self.state is Expiry.EXPIRED:
            return (f"{what}{where} EXPIRED on {self.not_after:%Y-%m-%d}: rotate it "
                    "(docs/certificates.md)")
        if self.state is Expiry.NOT_YET_VALID:
            return f"{what}{where} is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC"
        if self.state is Expiry.OK:
            return f"{what} valid until {self.not_after:%Y-%m-%d} ({self.days_left} days)"
        return (f"{what}{where} expires in {self.days_left} days ({self.not_after:%Y-%m-%d}): "
                "rotate it soon (docs/certificates.md)")


def status_of(cert: x509.Certificate, now: datetime | None = None,
              path: Path | None = None) -> CertificateStatus:
    now = now or datetime.now(UTC)
    not_after, not_before = cert.not_valid_after_utc, cert.not_valid_before_utc
    days = (not_after - now).days
    if now >= not_after:
        state = Expiry.EXPIRED
    elif now < not_before:
        state = Expiry.NOT_YET_VALID
    elif days < URGENT_DAYS:
        state = Expiry.URGENT
    elif days < WARN_DAYS:
        state = Expiry.WARN
    else:
        state = Expiry.OK
    return CertificateStatus(path, cert.subject.rfc4514_string(), not_before, not_after, days,
                             state)


def load(path: Path) -> x509.Certificate:
    """The first certificate in a PEM file; ValueError with the path if it is not one."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except ValueError:
        raise ValueError(f"{path} is not a PEM certificate") from None


def file_status(path: Path, now: datetime | None = None) -> CertificateStatus:
    return status_of(load(path), now, path)
