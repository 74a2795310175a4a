"""Which failures the Prefect tasks retry: only those that may pass by themselves."""

from __future__ import annotations

import pytest
from prefect.states import Failed
from sqlalchemy.exc import OperationalError

from connectors.errors import (
    BadBankAnswer,
    BankRefused,
    BankUnavailable,
    CertificateError,
    NotDelivered,
    OutcomeUnknown,
)
from tasks.context import transient
from yinqi.errors import ConcurrencyConflict, IllegalTransition, SecurityError


@pytest.mark.parametrize("exc", [
    NotDelivered("icbc", "no route"), BankUnavailable("icbc", "maintenance", 5),
    OperationalError("UPDATE", {}, Exception("database is locked")),
    ConcurrencyConflict("moved meanwhile"),
])
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert transient(None, None, Failed(data=exc)) is True


@pytest.mark.parametrize("exc", [
    # A refused or expired certificate is NotDelivered too, but waiting does not fix it.
    CertificateError("icbc", "expired"), OutcomeUnknown("icbc", "timeout"), BankRefused("icbc", "refused"),
    BadBankAnswer("icbc", "bad signature"), SecurityError("tampered file"),
    IllegalTransition("no"), ValueError("bug"),
])
def test_everything_else_fails_at_once(exc: BaseException) -> None:
    assert transient(None, None, Failed(data=exc)) is False
