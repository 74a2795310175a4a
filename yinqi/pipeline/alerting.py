"""Alerts the pipeline raises about a bank, a key or a batch: once while nobody looked.

A stage meets the same problem again in every round (every batch of a bank whose certificate
expired, every status query of a batch whose answers fail their signature). Each time is
audited or kept in ``last_error``; the operators are told once, until they acknowledge it.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import CertificateError
from yinqi.alerts import Severity
from yinqi.bootstrap import App
from yinqi.errors import KeyStoreError, YinqiError
from yinqi.store.alerts import raise_once


def alert_once(app: App, *, kind: str, severity: Severity, subject: str, message: str,
               details: dict[str, Any]) -> bool:
    """Raise an alert unless one of ``kind`` about ``subject`` is still unacknowledged;
    whether it was raised."""
    with app.sessions.begin() as s:
        return raise_once(s, kind=kind, severity=severity.value, subject=subject,
                          message=message[:2000], details=details) is not None


#: The one alert about our signing key, whichever key is current.
SIGNING_KEY = "our signing key"


def bank_trouble(app: App, bank: str, exc: YinqiError) -> None:
    """Tell the operators about a problem that stops every batch of ``bank`` (or, for our
    signing key, every new order): an alert per bank (or for the key), not per batch."""
    if isinstance(exc, CertificateError):
        alert_once(app, kind="bank.certificate", severity=Severity.CRITICAL,
                   subject=f"bank {bank}", message=str(exc), details={"bank": bank})
    elif isinstance(exc, KeyStoreError):
        alert_once(app, kind="key.cannot_sign", severity=Severity.CRITICAL,
                   subject=SIGNING_KEY, message=str(exc), details={"bank": bank})
