"""Alerts delivered for real: an SMTP server (aiosmtpd, STARTTLS under a test CA, login) and
an HTTP server on loopback, on both databases; retries, back-off, give-up, routing, claims
under concurrency, and the Prefect task at the end of a flow."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from config.alerts import AlertsConfig
from yinqi.bootstrap import App
from yinqi.store.alert_delivery import _claim, alert_log, deliver_due, send_test
from yinqi.store.models import Alert, AlertDelivery

ACCOUNT = "6222021234567890123"
SMTP_PASSWORD = "s3cret-smtp-pw"
DING_SECRET = "SEC0123456789abcdef"
HOOK_SECRET = "generic-signing-key"
ENV = {"T_SMTP_PW": SMTP_PASSWORD, "T_DING_SECRET": DING_SECRET, "T_HOOK_SECRET": HOOK_SECRET}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_alert(app: App, kind: str = "payment.returned", severity: str = "critical",
                subject: str | None = None, created_at: datetime | None = None) -> int:
    with app.sessions.begin() as s:
        row = Alert(kind=kind, severity=severity,
                    subject=subject or f"statement 9 of {ACCOUNT}",
                    message=f"the bank returned a payment to {ACCOUNT}; check the payee",
                    details={"payment_ids": [1, 2], "account": ACCOUNT},
                    created_at=created_at or datetime.now(UTC))
        s.add(row)
        s.flush()
        return row.id


def alerts_config(**tables: Any) -> AlertsConfig:
    data: dict[str, Any] = {"retry": {"max_attempts": 5, "backoff_base_seconds": 60,
                                      "backoff_max_seconds": 3600, "jitter": 0}}
    data.update(tables)
    return AlertsConfig.model_validate(data)


def deliveries(app: App) -> list[AlertDelivery]:
    with app.sessions() as s:
        rows = list(s.scalars(select(AlertDelivery).order_by(AlertDelivery.id)))
        s.expunge_all()
    return rows


def alert_row(app: App, alert_id: int) -> Alert:
    with app.sessions() as s:
        row = s.get_one(Alert, alert_id)
        s.expunge(row)
    return row


# --- a real SMTP server ------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate for 127.0.0.1 signed by it."""
    folder = tmp_path_factory.mktemp("smtp-pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yinqi alert test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return out


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.tls.append(session.ssl is not None)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
            ok = data.password.decode() == SMTP_PASSWORD
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)



@pytest.fixture
def starttls_mailbox(pki: Pki) -> Iterator[Mailbox]:
    """An SMTP server that refuses mail before STARTTLS and wants a login."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.cert), str(pki.key))
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port, tls_context=context,
                            require_starttls=True, authenticator=box.authenticate,
                            auth_required=True)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def plain_mailbox() -> Iterator[Mailbox]:
    """A relay on this machine without TLS and without login."""
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def email_channel(box: Mailbox, pki: Pki | None = None, **more: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "name": "treasury-mail", "host": "127.0.0.1", "port": box.port,
        "from": "Yinqi 银企 <yinqi@corp.example>",
        "to": ["treasury@corp.example", "risk@corp.example"], "timeout_seconds": 10}
    if pki is not None:
        channel.update(security="starttls", ca_file=str(pki.ca), username="yinqi",
                       password_env="T_SMTP_PW")
    else:
        channel.update(security="none")
    channel.update(more)
    return channel


def test_an_alert_arrives_by_email_over_starttls_with_login_and_masked(
        app: App, starttls_mailbox: Mailbox, pki: Pki) -> None:
    cfg = alerts_config(email=[email_channel(starttls_mailbox, pki)])
    aid = raise_alert(app)
    report = deliver_due(app, datetime.now(UTC), config=cfg, env=ENV)

    assert (report.routed, report.sent, report.failed, report.errors) == (1, 1, 0, [])
    assert starttls_mailbox.tls == [True]
    assert starttls_mailbox.logins == [("yinqi", SMTP_PASSWORD)]
    (msg,) = starttls_mailbox.messages
    assert msg["Subject"] == "[Yinqi CRITICAL] payment.returned: statement 9 of ****0123"
    assert msg["From"] == "Yinqi 银企 <yinqi@corp.example>"
    assert msg["To"] == "treasury@corp.example, risk@corp.example"
    assert msg["X-Yinqi-Alert-Id"] == str(aid)
    assert msg["Message-ID"] == f"<yinqi-alert-{aid}.treasury-mail@corp.example>"
    assert starttls_mailbox.envelopes == [
        ("yinqi@corp.example", ["treasury@corp.example", "risk@corp.example"])]
    body = msg.get_content()
    assert "the bank returned a payment to ****0123; check the payee" in body
    assert f"yinqi alerts ack {aid}" in body
    raw = msg.as_string() + body
    assert ACCOUNT not in raw and SMTP_PASSWORD not in raw

    (row,) = deliveries(app)
    assert (row.channel, row.status, row.attempts, row.last_error) == (
        "treasury-mail", "sent", 1, None)
    assert row.target == (f"smtp://127.0.0.1:{starttls_mailbox.port} to "
                          "treasury@corp.example, risk@corp.example")
    assert alert_row(app, aid).delivered_at is not None
    # Delivered alerts are not sent again.
    assert deliver_due(app, datetime.now(UTC), config=cfg, env=ENV).sent == 0
    assert len(starttls_mailbox.messages) == 1


def test_a_wrong_smtp_password_or_a_missing_one_is_a_failed_attempt(
        app: App, starttls_mailbox: Mailbox, pki: Pki) -> None:
    cfg = alerts_config(email=[email_channel(starttls_mailbox, pki)])
    raise_alert(app)
    report = deliver_due(app, datetime.now(UTC), config=cfg, env={"T_SMTP_PW": "wrong"})
    assert report.retrying == 1 and starttls_mailbox.messages == []
    (row,) = deliveries(app)
    assert row.status == "pending" and "535" in (row.last_error or "")
    assert "wrong" not in (row.last_error or "")

    later = datetime.now(UTC) + timedelta(hours=2)
    deliver_due(app, later, config=cfg, env={})
    (row,) = deliveries(app)
    assert row.last_error == ("environment variable T_SMTP_PW (password_env of email "
                              "'treasury-mail') is not set")


def test_starttls_that_the_server_does_not_offer_never_falls_back_to_clear_text(
        app: App, plain_mailbox: Mailbox, pki: Pki) -> None:
    cfg = alerts_config(email=[email_channel(plain_mailbox, pki)],
                        retry={"max_attempts": 1})
    raise_alert(app)
    report = deliver_due(app, datetime.now(UTC), config=cfg, env=ENV)
    assert report.failed == 1 and plain_mailbox.messages == []
    (row,) = deliveries(app)
    assert row.status == "failed"
    assert "does not offer STARTTLS; not sending in clear text" in (row.last_error or "")


def test_a_loopback_relay_without_tls_or_login(app: App, plain_mailbox: Mailbox) -> None:
    cfg = alerts_config(email=[email_channel(plain_mailbox)])
    raise_alert(app)
    assert deliver_due(app, datetime.now(UTC), config=cfg, env={}).sent == 1
    assert plain_mailbox.tls == [False] and len(plain_mailbox.messages) == 1


# --- a real HTTP server --------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Hooks:
    """Records every POST; answers from a script per path (default 200 with errcode 0)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: dict[str, list[tuple[int, str]]] = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlsplit(self.path)
                with hooks.lock:
                    hooks.seen.append(Seen(parts.path, parse_qs(parts.query),
                                           {k.lower(): v for k, v in self.headers.items()},
                                           body))
                    queue = hooks.script.get(parts.path, [])
                    status, text = queue.pop(0) if queue else (200, '{"errcode":0,"errmsg":"ok"}')
                time.sleep(hooks.delay)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    h.thread.start()
    try:
        yield h
    finally:
        h.server.shutdown()
        h.server.server_close()


def test_generic_wecom_and_dingtalk_bodies(app: App, hooks: Hooks) -> None:
    env = {**ENV, "T_WECOM_URL": f"{hooks.base}/wecom?key=wecom-key-123",
           "T_DING_URL": f"{hooks.base}/ding?access_token=ding-token-456"}
    cfg = alerts_config(webhooks=[
        {"name": "generic", "url": f"{hooks.base}/generic", "secret_env": "T_HOOK_SECRET"},
        {"name": "wecom", "format": "wecom", "url_env": "T_WECOM_URL"},
        {"name": "ding", "format": "dingtalk", "url_env": "T_DING_URL",
         "secret_env": "T_DING_SECRET"},
    ])
    aid = raise_alert(app)
    now = datetime.now(UTC)
    report = deliver_due(app, now, config=cfg, env=env)
    assert (report.sent, report.errors) == (3, [])

    (generic,) = hooks.at("/generic")
    assert generic.json == {
        "id": aid, "kind": "payment.returned", "severity": "critical",
        "subject": "statement 9 of ****0123",
        "message": "the bank returned a payment to ****0123; check the payee",
        "details": {"payment_ids": [1, 2], "account": "****0123"},
        "created_at": alert_row(app, aid).created_at.isoformat()}
    assert generic.headers["content-type"] == "application/json; charset=utf-8"
    assert generic.headers["x-yinqi-delivery"] == f"{aid}:generic"
    stamp = generic.headers["x-yinqi-timestamp"]
    expected = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + generic.body,
                        hashlib.sha256).hexdigest()
    assert generic.headers["x-yinqi-signature"] == f"sha256={expected}"

    (wecom,) = hooks.at("/wecom")
    assert wecom.query == {"key": ["wecom-key-123"]}
    assert wecom.json["msgtype"] == "markdown"
    assert "statement 9 of ****0123" in wecom.json["markdown"]["content"]

    (ding,) = hooks.at("/ding")
    assert ding.json["msgtype"] == "markdown"
    assert set(ding.json["markdown"]) == {"title", "text"}
    assert ding.query["access_token"] == ["ding-token-456"]
    timestamp = ding.query["timestamp"][0]
    assert abs(int(timestamp) - now.timestamp() * 1000) < 1000
    # The receiving side of DingTalk's 加签: recompute and compare.
    mine = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(),
                                     hashlib.sha256).digest()).decode()
    assert ding.query["sign"] == [mine]

    for seen in hooks.seen:
        assert ACCOUNT not in seen.body.decode()
    targets = {r.channel: r.target for r in deliveries(app)}
    assert targets == {"generic": f"{hooks.base}/generic", "wecom": f"{hooks.base}/wecom",
                       "ding": f"{hooks.base}/ding"}  # no key, no token in the alert log
    assert all(r.status == "sent" for r in deliveries(app))


def test_a_webhook_answering_500_twice_then_200_is_sent_on_the_third_attempt(
        app: App, hooks: Hooks) -> None:
    hooks.script["/h"] = [(500, "down"), (500, "still down")]
    cfg = alerts_config(webhooks=[{"name": "h", "url": f"{hooks.base}/h"}])
    aid = raise_alert(app)
    t0 = datetime.now(UTC)

    first = deliver_due(app, t0, config=cfg, env={})
    assert (first.sent, first.retrying) == (0, 1)
    (row,) = deliveries(app)
    assert (row.attempts, row.last_error) == (1, f"{hooks.base}/h: HTTP 500: down")
    assert row.next_attempt_at == t0 + timedelta(seconds=60)

    # Not due yet: nothing is sent.
    assert deliver_due(app, t0 + timedelta(seconds=59), config=cfg, env={}).retrying == 0
    assert len(hooks.seen) == 1

    second = deliver_due(app, t0 + timedelta(seconds=60), config=cfg, env={})
    assert second.retrying == 1
    (row,) = deliveries(app)
    assert row.next_attempt_at == t0 + timedelta(seconds=60 + 120)

    third = deliver_due(app, t0 + timedelta(seconds=180), config=cfg, env={})
    assert (third.sent, third.retrying, third.failed) == (1, 0, 0)
    (row,) = deliveries(app)
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(hooks.seen) == 3
    assert {s.headers["x-yinqi-delivery"] for s in hooks.seen} == {f"{aid}:h"}
    assert alert_row(app, aid).delivered_at == t0 + timedelta(seconds=180)


def test_a_dead_port_backs_off_then_fails_for_good_and_the_log_says_so(app: App) -> None:
    dead = free_port()
    cfg = alerts_config(webhooks=[{"name": "dead", "url": f"http://127.0.0.1:{dead}/x",
                                   "timeout_seconds": 5}],
                        retry={"max_attempts": 3, "backoff_base_seconds": 10,
                               "backoff_max_seconds": 15, "jitter": 0})
    aid = raise_alert(app)
    t0 = datetime.now(UTC)
    moments = [t0, t0 + timedelta(seconds=10), t0 + timedelta(seconds=25)]
    results = [deliver_due(app, at, config=cfg, env={}) for at in moments]
    assert [(r.retrying, r.failed) for r in results] == [(1, 0), (1, 0), (0, 1)]
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert row.last_error is not None and "ConnectError" in row.last_error
    # Given up: later runs leave it alone; the alert stays undelivered and visible.
    assert deliver_due(app, t0 + timedelta(days=1), config=cfg, env={}).errors == []
    assert alert_row(app, aid).delivered_at is None
    with app.sessions() as s:
        (entry,) = alert_log(s)
    (d,) = entry.as_json()["deliveries"]
    assert (d["channel"], d["status"], d["attempts"]) == ("dead", "failed", 3)


def test_errcode_in_a_200_answer_is_a_failure(app: App, hooks: Hooks) -> None:
    hooks.script["/ding"] = [(200, '{"errcode":310000,"errmsg":"sign not match"}')]
    cfg = alerts_config(webhooks=[{"name": "ding", "format": "dingtalk",
                                   "url": f"{hooks.base}/ding"}])
    raise_alert(app)
    report = deliver_due(app, datetime.now(UTC), config=cfg, env={})
    assert report.retrying == 1
    (row,) = deliveries(app)
    assert row.last_error == (f"{hooks.base}/ding: dingtalk answered errcode 310000: "
                              "sign not match")


def test_routing_by_severity_and_kind(app: App, hooks: Hooks) -> None:
    cfg = alerts_config(webhooks=[
        {"name": "all", "url": f"{hooks.base}/all", "min_severity": "info"},
        {"name": "critical", "url": f"{hooks.base}/critical", "min_severity": "critical"},
        {"name": "security", "url": f"{hooks.base}/security", "min_severity": "info",
         "kinds": ["security.*"]},
        {"name": "off", "url": f"{hooks.base}/off", "min_severity": "info", "enabled": False},
    ])
    info = raise_alert(app, "approval.overdue", "info")
    warning = raise_alert(app, "statement.quarantined", "warning")
    lockout = raise_alert(app, "security.code_lockout", "critical")
    report = deliver_due(app, datetime.now(UTC), config=cfg, env={})
    assert report.sent == 5
    got = {(r.alert_id, r.channel) for r in deliveries(app)}
    assert got == {(info, "all"), (warning, "all"), (lockout, "all"), (lockout, "critical"),
                   (lockout, "security")}
    assert {s.path for s in hooks.seen} == {"/all", "/critical", "/security"}
    assert [s.json["id"] for s in hooks.at("/security")] == [lockout]


def test_old_or_acknowledged_alerts_get_no_new_channel(app: App, hooks: Hooks) -> None:
    now = datetime.now(UTC)
    old = raise_alert(app, created_at=now - timedelta(hours=73))
    acked = raise_alert(app)
    fresh = raise_alert(app)
    with app.sessions.begin() as s:
        s.get_one(Alert, acked).acknowledged_at = now
    cfg = alerts_config(webhooks=[{"name": "h", "url": f"{hooks.base}/h"}])
    deliver_due(app, now, config=cfg, env={})
    assert [s.json["id"] for s in hooks.seen] == [fresh]
    assert {old, acked}.isdisjoint({r.alert_id for r in deliveries(app)})


def test_a_channel_removed_from_the_file_fails_its_pending_deliveries(
        app: App, hooks: Hooks) -> None:
    hooks.script["/h"] = [(503, "")]
    cfg = alerts_config(webhooks=[{"name": "h", "url": f"{hooks.base}/h"}])
    raise_alert(app)
    deliver_due(app, datetime.now(UTC), config=cfg, env={})
    deliver_due(app, datetime.now(UTC), config=alerts_config(), env={})
    (row,) = deliveries(app)
    assert (row.status, row.last_error) == ("failed", "the channel is no longer in alerts.toml")


def test_a_worker_that_died_after_its_claim_is_taken_over_after_the_lease(
        app: App, hooks: Hooks) -> None:
    """At least once: the claimed delivery is sent by the next worker once the lease ends."""
    cfg = alerts_config(webhooks=[{"name": "h", "url": f"{hooks.base}/h"}],
                        delivery={"lease_seconds": 120})
    raise_alert(app)
    t0 = datetime.now(UTC)
    deliver_due(app, t0, config=cfg, env={}, limit=0)  # routes only
    (claimed,) = _claim(app, cfg, t0, 10)  # ... and this worker dies before sending
    assert deliver_due(app, t0 + timedelta(seconds=119), config=cfg, env={}).sent == 0
    assert deliver_due(app, t0 + timedelta(seconds=120), config=cfg, env={}).sent == 1
    (row,) = deliveries(app)
    assert (row.id, row.status, row.attempts) == (claimed.id, "sent", 2)
    assert len(hooks.seen) == 1


def test_concurrent_workers_send_each_delivery_once(app: App, hooks: Hooks) -> None:
    hooks.delay = 0.01
    cfg = alerts_config(webhooks=[{"name": "a", "url": f"{hooks.base}/a"},
                                  {"name": "b", "url": f"{hooks.base}/b"}],
                        delivery={"lease_seconds": 300})
    ids = [raise_alert(app) for _ in range(25)]
    workers = [App(app.settings, config=dataclasses.replace(app.config, alerts=cfg))
               for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    reports, errors = [], []

    def work(worker: App) -> None:
        try:
            barrier.wait()
            reports.append(deliver_due(worker, datetime.now(UTC), limit=1000, env={}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for w in workers:
        w.close()
    assert errors == []
    sent = [s.headers["x-yinqi-delivery"] for s in hooks.seen]
    assert sorted(sent) == sorted(f"{i}:{c}" for i in ids for c in "ab")  # each exactly once
    assert sum(r.sent for r in reports) == 50
    assert sum(r.routed for r in reports) == 50
    rows = deliveries(app)
    assert len(rows) == 50 and all((r.status, r.attempts) == ("sent", 1) for r in rows)
    # Both channels of an alert may finish on different workers: still marked delivered.
    with app.sessions() as s:
        assert s.scalars(select(Alert.id).where(Alert.delivered_at.is_(None))).all() == []


def test_the_test_command_reaches_a_disabled_channel_once_without_retries(
        app: App, hooks: Hooks) -> None:
    hooks.script["/broken"] = [(500, "no")]
    cfg = alerts_config(webhooks=[
        {"name": "ok", "url": f"{hooks.base}/ok", "enabled": False},
        {"name": "broken", "url": f"{hooks.base}/broken"},
    ])
    results = send_test(app, ["ok", "broken"], actor="admin.zhao", config=cfg, env={})
    assert results == {"ok": None, "broken": f"{hooks.base}/broken: HTTP 500: no"}
    (seen,) = hooks.at("/ok")
    assert seen.json["kind"] == "alerts.test" and seen.json["details"]["channels"] == [
        "ok", "broken"]
    statuses = {r.channel: (r.status, r.attempts) for r in deliveries(app)}
    assert statuses == {"ok": ("sent", 1), "broken": ("failed", 1)}
    # The regular run neither retries the failed test nor routes it to anyone else.
    assert deliver_due(app, datetime.now(UTC) + timedelta(hours=1), config=cfg,
                       env={}).sent == 0
    assert len(hooks.seen) == 2


# --- the Prefect task at the end of a flow --------------------------------------------------------


def test_a_flow_sends_its_alerts_even_when_a_stage_failed(
        app: App, hooks: Hooks, prefect_server: None) -> None:
    from prefect import flow

    from tasks.alerts import delivering
    from tasks.context import use_app

    hooks.script["/h"] = [(500, "first"), (500, "second")]
    cfg = alerts_config(webhooks=[{"name": "h", "url": f"{hooks.base}/h"}])
    worker = App(app.settings, config=dataclasses.replace(app.config, alerts=cfg))

    @flow(name="stage fails")
    def stage_fails() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with delivering(out):
            raise_alert(worker, kind="bank.certificate")
            raise RuntimeError("the bank refused our certificate")
        return out

    @flow(name="stage works")
    def stage_works() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with delivering(out):
            out["stage"] = "done"
        return out

    use_app(worker)
    try:
        with pytest.raises(RuntimeError, match="refused our certificate"):
            stage_fails()
        assert len(hooks.seen) == 1  # sent in the run that raised it (and answered 500)
        # A failed delivery does not fail the next flow either; it is retried later.
        assert stage_works()["alerts"]["retrying"] == 0
        out = stage_works()
    finally:
        use_app(None)
        worker.close()
    assert out["stage"] == "done" and set(out["alerts"]) == {"routed", "sent", "retrying",
                                                            "failed", "errors"}
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1,
                                                          f"{hooks.base}/h: HTTP 500: first")
