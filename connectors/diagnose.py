"""The connectivity test operators run when something is wrong with a bank channel.

Step by step, each one saying what it found and what to check: config, DNS, TCP, TLS (both
certificates), certificate validity, authentication (a signed echo), echo, a balance query.
After the first failure the rest are skipped: their results would only mislead.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from config import BankConfig
from connectors import certificates
from connectors.base import Signer
from connectors.errors import BankError
from connectors.registry import connect, endpoint_of
from connectors.transport import client_context
from yinqi.security.files import FileCipher


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: Outcome
    detail: str
    hint: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    bank: str
    endpoint: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.outcome in (Outcome.OK, Outcome.WARN) for s in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((s.name for s in self.steps if s.outcome is Outcome.FAIL), None)

    def as_json(self) -> dict[str, object]:
        return {"bank": self.bank, "endpoint": self.endpoint, "ok": self.ok,
                "failed_step": self.failed_step,
                "steps": [{"name": s.name, "outcome": s.outcome.value, "detail": s.detail,
                           "hint": s.hint, "seconds": round(s.seconds, 3)} for s in self.steps]}


class _Failed(Exception):
    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


STEPS = ("config", "dns", "tcp", "tls", "certificates", "authentication", "echo", "balance")


def run(code: str, bank: BankConfig, home: Path, signer: Signer | None,
        account: tuple[str, str] | None, *, now: datetime | None = None,
        files: FileCipher | None = None) -> Report:
    """``account`` is (number, currency) of one of our accounts at this bank, for the balance."""
    now = now or datetime.now(UTC)
    ep = endpoint_of(code, bank, home, signer.tls_key_password if signer else None)
    parts = urlsplit(ep.base_url)
    host, port = parts.hostname or "", parts.port or 443
    report = Report(code, ep.base_url)
    state: dict[str, object] = {}

    def config() -> str:
        missing = [f"{what} {path}" for what, path in (
            ("CA certificate", ep.ca_cert), ("client certificate", ep.client_cert),
            ("client key", ep.client_key),
            ("bank signing certificate", bank.resolve_path(home, bank.signing_cert)))
            if not path.exists()]
        if missing:
            raise _Failed("missing: " + "; ".join(missing),
                          "get the bank's CA and certificates and put them where banks.toml "
                          "says (for the sandbox: `yinqi sandbox-bank connect`)")
        if signer is None:
            raise _Failed("no signing key", "run `yinqi init` to create the signing key")
        return f"{bank.dialect} at {ep.base_url}"

    def dns() -> str:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Failed(f"cannot resolve {host}: {exc.strerror}",
                          "check the endpoint host name in banks.toml and the DNS") from None
        state["address"] = infos[0][4]
        return f"{host} -> {', '.join(sorted({i[4][0] for i in infos}))}"

    def tcp() -> str:
        try:
            with socket.create_connection((host, port), timeout=ep.connect_timeout):
                pass
        except OSError as exc:
            raise _Failed(f"cannot connect to {host}:{port}: {exc.strerror or exc}",
                          "is the bank's service up (for the sandbox: `yinqi sandbox-bank "
                          "serve`)? check the port, firewall and proxy") from None
        return f"{host}:{port} accepts connections"

    def tls() -> str:
        try:
            ctx = client_context(ep)
        except BankError as exc:
            raise _Failed(str(exc), "check client_cert and client_key in banks.toml; `yinqi "
                          "doctor` says whether the key opens (docs/keys.md)") from None
        try:
            with socket.create_connection((host, port), timeout=ep.connect_timeout) as raw, \
                    ctx.wrap_socket(raw, server_hostname=host) as conn:
                state["server_cert"] = conn.getpeercert(binary_form=True)
                conn.settimeout(ep.read_timeout)
                conn.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                             "\r\n\r\n".encode())
                # Under TLS 1.3 a refused client certificate arrives as an alert on first read.
                first = conn.recv(64)
                version = conn.version()
        except ssl.SSLCertVerificationError as exc:
            served = _served_certificate(host, port, ep.connect_timeout)
            detail = f"the bank's server certificate failed verification: {exc.verify_message}"
            if served is not None:
                st = certificates.status_of(served, now)
                detail += f" (subject {st.subject}, valid {st.not_before:%Y-%m-%d} to " \
                          f"{st.not_after:%Y-%m-%d})"
            raise _Failed(detail, "an expired or untrusted server certificate is the bank's to "
                                  "renew; check that ca_cert in banks.toml is the bank's current "
                                  "CA; never switch verification off") from None
        except ssl.SSLError as exc:
            raise _Failed(f"the bank refused the TLS session: {exc.reason or exc}",
                          "the bank does not accept our client certificate: check client_cert "
                          "and client_key in banks.toml, and that the bank registered this "
                          "certificate (it may have expired or been renewed)") from None
        except OSError as exc:
            raise _Failed(f"TLS connection failed: {exc}", "retry; if it persists, check the "
                          "network path to the bank") from None
        if not first:
            raise _Failed("the bank closed the TLS session right after the handshake: it "
                          "refused our client certificate",
                          "check client_cert and client_key in banks.toml, and that the bank "
                          "registered this certificate (it may have expired or been renewed)")
        if not first.startswith(b"HTTP/"):
            raise _Failed("no HTTP answer after the handshake",
                          "the endpoint is not the bank's direct-connect service") from None
        return f"{version}, server certificate verified against the pinned CA, " \
               "our client certificate accepted"

    def certs() -> str:
        results = []
        items: list[tuple[str, x509.Certificate]] = [
            ("our client certificate", certificates.load(ep.client_cert)),
            ("bank signing certificate", certificates.load(bank.resolve_path(home,
                                                                             bank.signing_cert))),
        ]
        if state.get("server_cert"):
            items.append(("bank server certificate",
                          x509.load_der_x509_certificate(state["server_cert"])))  # type: ignore[arg-type]
        if signer is not None:
            items.append(("our signing certificate",
                          x509.load_pem_x509_certificate(signer.certificate_pem)))
        worst = Outcome.OK
        for what, cert in items:
            st = certificates.status_of(cert, now)
            results.append(st.describe(what))
            if st.state in (certificates.Expiry.EXPIRED, certificates.Expiry.NOT_YET_VALID):
                raise _Failed("; ".join(results), "renew the certificate (docs/certificates.md)")
            if st.state is not certificates.Expiry.OK:
                worst = Outcome.WARN
        state["certs_outcome"] = worst
        return "; ".join(results)

    def with_connector(work: Callable[..., str]) -> Callable[[], str]:
        def step() -> str:
            assert signer is not None and files is not None
            connector = state.get("connector")
            if connector is None:
                connector = connect(code, bank, home, signer, files=files)
                state["connector"] = connector
            try:
                return work(connector)
            except BankError as exc:
                raise _Failed(str(exc), "see the bank's answer above; retry later if the bank "
                                        "reports maintenance") from None
        return step

    def authentication(connector) -> str:  # type: ignore[no-untyped-def]
        echo = connector.echo("yinqi connectivity test 连通性测试")
        state["echo"] = echo
        if not echo.authenticated:
            raise _Failed(f"the bank did not accept our signature: {echo.detail}",
                          "register our current signing certificate with the bank "
                          "(`yinqi keys export-cert`; for the sandbox: `yinqi sandbox-bank "
                          "connect`)")
        return "signed request accepted; the bank's signed answer verified"

    def echo_step(_connector) -> str:  # type: ignore[no-untyped-def]
        echo = state["echo"]
        if echo.echoed != "yinqi connectivity test 连通性测试":  # type: ignore[attr-defined]
            raise _Failed(f"echo came back altered: {echo.echoed!r}",  # type: ignore[attr-defined]
                          "something between us and the bank rewrites content")
        when = echo.bank_time  # type: ignore[attr-defined]
        skew = abs((when - now).total_seconds()) if when else None
        return "echo intact" + (f"; bank clock differs by {skew:.0f}s" if skew is not None else "")

    def balance(connector) -> str:  # type: ignore[no-untyped-def]
        if account is None:
            return "no account of ours is configured at this bank: skipped"
        b = connector.balance(*account)
        return f"account ****{account[0][-4:]}: {b.booked.format()}"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("config", config), ("dns", dns), ("tcp", tcp), ("tls", tls), ("certificates", certs),
        ("authentication", with_connector(authentication)), ("echo", with_connector(echo_step)),
        ("balance", with_connector(balance))]
    failed = False
    for name, step in steps:
        if failed:
            report.steps.append(Step(name, Outcome.SKIPPED, "skipped after the failure above"))
            continue
        t0 = time.perf_counter()
        try:
            detail = step()
            outcome = Outcome.OK
            if name == "certificates":
                outcome = state.get("certs_outcome", Outcome.OK)  # type: ignore[assignment]
            report.steps.append(Step(name, outcome, detail, seconds=time.perf_counter() - t0))
        except _Failed as exc:
            failed = True
            report.steps.append(Step(name, Outcome.FAIL, exc.detail, exc.hint,
                                     time.perf_counter() - t0))
    connector = state.get("connector")
    if connector is not None:
        connector.close()  # type: ignore[attr-defined]
    return report


def _served_certificate(host: str, port: int, timeout: float) -> x509.Certificate | None:
    """The certificate the server presents, read without trusting it, to say what is wrong."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as conn:
            der = conn.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None
