"""The one way Yinqi talks to a bank: HTTPS with our client certificate and the bank's CA
pinned, timeouts, and retries only where a retry cannot pay twice.

Every error is translated here, at the boundary, into the connector error tree
(`connectors.errors`), so that callers decide on *what is known* (delivered or not), never on
which library raised what.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from connectors import certificates
from connectors.errors import (
    BankError,
    BankUnavailable,
    CertificateError,
    NotDelivered,
    OutcomeUnknown,
)
from yinqi.security.keystore import is_encrypted_pem

log = logging.getLogger("yinqi.transport")


@dataclass(frozen=True, slots=True)
class Endpoint:
    bank: str
    base_url: str
    ca_cert: Path
    client_cert: Path
    client_key: Path
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # The keystore password of an encrypted client key (None for a key in the clear). Kept
    # out of repr so that no log line or traceback that prints an endpoint shows it.
    client_key_password: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; a bank's Retry-After wins when it is longer."""

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2 ** attempt)
        jittered = backoff * (0.5 + rng.random() / 2)
        return max(jittered, min(retry_after or 0.0, self.max_delay * 4))


def ssl_context(endpoint: Endpoint, now: datetime | None = None) -> ssl.SSLContext:
    """Trust only the bank's CA (pinning), present our certificate; refuse an expired one."""
    for path, what in ((endpoint.ca_cert, "the bank's CA certificate"),
                       (endpoint.client_cert, "our client certificate")):
        try:
            status = certificates.file_status(path, now or datetime.now(UTC))
        except ValueError as exc:
            raise CertificateError(endpoint.bank, f"{what}: {exc}") from None
        if status.state in (certificates.Expiry.EXPIRED, certificates.Expiry.NOT_YET_VALID):
            raise CertificateError(endpoint.bank, status.describe(what))
        if status.state is not certificates.Expiry.OK:
            log.warning("bank %s: %s", endpoint.bank, status.describe(what))
    return client_context(endpoint)


def client_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The bank's CA pinned and our client certificate loaded, without the expiry checks
    (for probes that report on certificates themselves)."""
    ctx = ssl.create_default_context(cafile=str(endpoint.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_client_chain(ctx, endpoint)
    return ctx


def load_client_chain(ctx: ssl.SSLContext, endpoint: Endpoint) -> None:
    """Load our certificate and key, decrypting an encrypted key with the keystore password.

    A password is always handed to OpenSSL, as a callback: without one, OpenSSL would ask for
    the pass phrase on the terminal and hang an unattended run.
    """
    key, password = endpoint.client_key, endpoint.client_key_password

    def give_password() -> bytes:
        if password is None:
            raise CertificateError(endpoint.bank, f"our client key {key} is encrypted, but no "
                                   "keystore password was given to unlock it")
        return password

    try:
        ctx.load_cert_chain(str(endpoint.client_cert), str(key), password=give_password)
    except (ssl.SSLError, OSError) as exc:
        if password is not None and _encrypted(key):
            raise CertificateError(endpoint.bank, f"our client key {key} cannot be decrypted "
                                   "with this master secret (or does not belong to "
                                   f"{endpoint.client_cert})") from None
        raise CertificateError(endpoint.bank, f"cannot load our client certificate/key "
                               f"({endpoint.client_cert}): {exc}") from None


def _encrypted(key: Path) -> bool:
    try:
        return is_encrypted_pem(key.read_bytes())
    except OSError:
        return False


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify(bank: str, exc: httpx.HTTPError) -> BankError:
    """Translate a transport failure into what it tells about the request's fate."""
    tls = _ssl_cause(exc)
    if tls is not None or "CERTIFICATE" in str(exc).upper() or "SSL" in str(exc).upper():
        detail = str(tls or exc)
        if isinstance(tls, ssl.SSLCertVerificationError) or "verify failed" in detail:
            return CertificateError(bank, f"the bank's server certificate failed verification "
                                          f"({getattr(tls, 'verify_message', None) or detail})")
        if "alert" in detail.lower():
            return CertificateError(bank, f"the bank refused our client certificate ({detail})")
        return CertificateError(bank, f"TLS failed: {detail}")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return NotDelivered(bank, f"could not connect ({type(exc).__name__}: {exc})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return NotDelivered(bank, f"bad endpoint ({exc})")
    # Read/write timeouts, resets, broken answers: the request may have been processed.
    return OutcomeUnknown(bank, f"no definitive answer ({type(exc).__name__}: {exc or 'timeout'})")


class Transport:
    """``lazy``: the certificates are checked and the TLS context made at the first request,
    not now (a connector that only prepares orders never opens its channel)."""

    def __init__(self, endpoint: Endpoint, *, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 http_transport: httpx.BaseTransport | None = None, lazy: bool = False) -> None:
        self.endpoint, self.retry, self._sleep = endpoint, retry, sleep
        self._rng = rng or random.Random()
        self._http_transport = http_transport
        self._ctx: ssl.SSLContext | None = None
        self._client: httpx.Client | None = None
        if not lazy:
            self._opened()

    def _opened(self) -> httpx.Client:
        if self._client is None:
            endpoint = self.endpoint
            self._ctx = ssl_context(endpoint) if self._http_transport is None else None
            verify: ssl.SSLContext | bool = self._ctx if self._ctx is not None else False
            self._client = httpx.Client(
                base_url=endpoint.base_url.rstrip("/"), verify=verify,
                transport=self._http_transport,
                timeout=httpx.Timeout(endpoint.read_timeout, connect=endpoint.connect_timeout))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, idempotent: bool, content: bytes | None = None,
                headers: Mapping[str, str] | None = None,
                params: Mapping[str, str] | None = None) -> httpx.Response:
        """Send once, or several times when that is safe.

        A non-idempotent request (a payment order) is repeated only after ``NotDelivered``;
        after anything that may have reached the bank it raises ``OutcomeUnknown`` at once.
        """
        bank = self.endpoint.bank
        client = self._opened()
        last: BankError | None = None
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                response = client.request(method, path, content=content,
                                          headers=dict(headers or {}), params=params)
            except httpx.HTTPError as exc:
                last = classify(bank, exc)
                if isinstance(exc, httpx.RemoteProtocolError) and self._ctx is not None \
                        and "without sending a response" in str(exc):
                    accepted, what = probe_session(self.endpoint, self._ctx)
                    if not accepted and "client certificate" in what:
                        # Refused at the door: the request never reached the bank's logic.
                        last = CertificateError(bank, what)
            else:
                if response.status_code == 503:
                    retry_after = _retry_after(response)
                    last = BankUnavailable(bank, f"unavailable (503 {response.text[:80]!r})",
                                           retry_after)
                elif response.status_code in (500, 502, 504):
                    last = OutcomeUnknown(bank, f"server error {response.status_code} "
                                          f"({response.text[:80]!r})")
                else:
                    return response
            if isinstance(last, CertificateError):
                raise last
            if not (idempotent or isinstance(last, NotDelivered)):
                raise last
            if attempt + 1 < self.retry.attempts:
                pause = self.retry.delay(attempt, self._rng, retry_after)
                log.info("%s %s: %s; retrying in %.2fs", method, path, last, pause)
                self._sleep(pause)
        assert last is not None
        raise last


def probe_session(endpoint: Endpoint, ctx: ssl.SSLContext) -> tuple[bool, str]:
    """Open a fresh TLS session and ask for /health: (accepted, what happened).

    Under TLS 1.3 a server that refuses our client certificate does so *after* the client
    considers the handshake done, so the refusal looks like a dropped connection. A probe
    tells the two apart: a healthy bank answers it; one that refuses us closes it again.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint.base_url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=endpoint.connect_timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as conn:
            conn.settimeout(endpoint.read_timeout)
            conn.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                         .encode())
            first = conn.recv(16)
    except ssl.SSLCertVerificationError as exc:
        return False, f"the bank's server certificate failed verification ({exc.verify_message})"
    except ssl.SSLError as exc:
        return False, f"the bank refused our client certificate ({exc.reason or exc})"
    except OSError as exc:
        return False, f"connection failed ({exc})"
    if not first:
        return False, "the bank refused our client certificate (session closed right after " \
                      "the handshake)"
    return True, first.decode("latin-1").split("\r\n", 1)[0]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
