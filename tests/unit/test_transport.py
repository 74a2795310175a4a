"""Retry timing and error classification at the wire (the live paths run against the
sandbox bank in tests/integration/test_connectors.py)."""

from __future__ import annotations

import random
import ssl

import httpx
import pytest

from connectors.errors import CertificateError, NotDelivered, OutcomeUnknown
from connectors.transport import RetryPolicy, classify


def test_backoff_grows_is_jittered_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(6)]
    for n, d in enumerate(delays):
        full = min(4.0, 0.5 * 2 ** n)
        assert full / 2 <= d <= full
    assert len(set(delays)) == 6, "jitter must spread the retries"
    assert policy.delay(0, rng, retry_after=5.0) == 5.0
    assert policy.delay(0, rng, retry_after=3600.0) == 16.0, "a Retry-After is capped too"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), NotDelivered),
        (httpx.ConnectTimeout("timed out"), NotDelivered),
        (httpx.PoolTimeout("pool"), NotDelivered),
        (httpx.ReadTimeout("timed out"), OutcomeUnknown),
        (httpx.WriteTimeout("timed out"), OutcomeUnknown),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."),
         OutcomeUnknown),
        (httpx.ReadError("connection reset by peer"), OutcomeUnknown),
    ],
)
def test_what_a_failure_says_about_the_request(error: httpx.HTTPError, kind: type) -> None:
    result = classify("icbc", error)
    assert type(result) is kind
    assert str(result).startswith("bank icbc: ")


def test_tls_failures_are_certificate_errors_and_count_as_not_delivered() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "certificate has expired"
    wrapped = httpx.ConnectError("handshake failed")
    wrapped.__cause__ = verify
    result = classify("icbc", wrapped)
    assert isinstance(result, CertificateError) and isinstance(result, NotDelivered)
    assert "certificate has expired" in str(result)
    alert = httpx.ConnectError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert")
    alert.__cause__ = ssl.SSLError(1, "tlsv13 alert certificate required")
    assert "refused our client certificate" in str(classify("icbc", alert))
