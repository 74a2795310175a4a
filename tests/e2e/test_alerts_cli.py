"""`yinqi alerts list|ack|deliver|test` as an operator runs them: a real process, a real
database, a real SMTP relay and a real webhook receiver on loopback."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from cli_support import as_user, yinqi
from config import load_settings
from yinqi.bootstrap import App
from yinqi.store.models import Alert, AuditEventRow

ACCOUNT = "1202021209900123456"


class Receiver:
    """Webhooks on loopback: /ok answers 200, /down answers 500."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.seen.append((self.path, json.loads(body)))
                self.send_response(200 if self.path == "/ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Relay:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Relay()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def env(tmp_path: Path, db_url: str, receiver: Receiver, relay: tuple[Relay, int]
        ) -> dict[str, str]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "alerts.toml").write_text(f'''
[retry]
max_attempts = 2
backoff_base_seconds = 0.05
backoff_max_seconds = 0.05
jitter = 0

[[email]]
name = "mail"
host = "127.0.0.1"
port = {relay[1]}
security = "none"
from = "yinqi@corp.example"
to = ["treasury@corp.example"]
timeout_seconds = 10

[[webhooks]]
name = "ops"
url = "{receiver.base}/ok"
timeout_seconds = 10

[[webhooks]]
name = "down"
url = "{receiver.base}/down"
timeout_seconds = 10
''', encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    base.update(YINQI_HOME=str(tmp_path / "home"), YINQI_DATABASE_URL=db_url,
                YINQI_CONFIG_DIR=str(etc), COLUMNS="250")
    yinqi("init", env=base)
    return base


def raise_alert(env: dict[str, str], kind: str, severity: str, subject: str) -> int:
    """What a stage of Yinqi does when something is wrong: a row in the alerts table."""
    app = App(load_settings(home=Path(env["YINQI_HOME"]),
                            database_url=env["YINQI_DATABASE_URL"]))
    try:
        with app.sessions.begin() as s:
            row = Alert(kind=kind, severity=severity, subject=subject,
                        message=f"seen on account {ACCOUNT}", details={"account": ACCOUNT},
                        created_at=datetime.now(UTC))
            s.add(row)
            s.flush()
            return row.id
    finally:
        app.close()


def listed(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = yinqi("alerts", "list", "--json", *args, env=as_user(env, "zhao.auditor"))
    assert ACCOUNT not in proc.stdout
    return json.loads(proc.stdout)


def test_list_deliver_ack(env: dict[str, str], receiver: Receiver,
                          relay: tuple[Relay, int], db_url: str) -> None:
    returned = raise_alert(env, "statement.quarantined", "critical",
                           f"statement 7 of {ACCOUNT}")
    quiet = raise_alert(env, "approval.overdue", "info", "2 payment(s) waiting for approval")

    before = listed(env)
    assert [a["id"] for a in before["alerts"]] == [quiet, returned]  # newest first
    first = before["alerts"][1]
    assert first["subject"] == "statement 7 of ****3456"
    assert first["details"] == {"account": "****3456"} and first["deliveries"] == []

    # The first round: the critical alert goes to all three channels, the info one nowhere.
    sent = json.loads(yinqi("alerts", "deliver", "--json", env=env).stdout)
    assert (sent["routed"], sent["sent"], sent["retrying"], sent["failed"]) == (3, 2, 1, 0)
    (mail,) = relay[0].messages
    assert mail["Subject"] == "[Yinqi CRITICAL] statement.quarantined: statement 7 of ****3456"
    assert ACCOUNT not in mail.as_string()
    assert sorted(path for path, _ in receiver.seen) == ["/down", "/ok"]
    assert all(ACCOUNT not in json.dumps(body) for _, body in receiver.seen)

    # The second round, once the back-off passed: "down" is given up, and the command says so.
    time.sleep(0.2)
    proc = yinqi("alerts", "deliver", env=env, check=1)
    assert "0 sent, 0 to retry, 1 failed for good" in proc.stdout
    assert f"alert #{returned} via down (attempt 2)" in proc.stdout

    shown = {d["channel"]: d for d in listed(env)["alerts"][1]["deliveries"]}
    assert {c: (d["status"], d["attempts"]) for c, d in shown.items()} == {
        "mail": ("sent", 1), "ops": ("sent", 1), "down": ("failed", 2)}
    assert shown["down"]["last_error"] == f"{receiver.base}/down: HTTP 500"
    table = yinqi("alerts", "list", env=as_user(env, "liu.treasurer")).stdout
    assert "1 delivery(ies) FAILED" in table and "down: failed (2 attempts)" in table
    assert "statement 7 of ****3456" in table and ACCOUNT not in table

    # Acknowledged: audited with the note, and gone from --open.
    treasurer = as_user(env, "liu.treasurer")
    ack = yinqi("alerts", "ack", str(returned), "--as", "liu.treasurer", "--note",
                "called the bank", env=treasurer)
    assert f"alert #{returned}: acknowledged by liu.treasurer" in ack.stdout
    again = yinqi("alerts", "ack", str(returned), env=as_user(env, "admin"))
    assert f"alert #{returned}: already acknowledged by liu.treasurer" in again.stdout
    assert [a["id"] for a in listed(env, "--open")["alerts"]] == [quiet]
    acked = listed(env)["alerts"][1]
    assert acked["acknowledged_by"] == "liu.treasurer" and acked["acknowledged_at"]

    unknown = yinqi("alerts", "ack", str(returned), "999999", env=treasurer, check=2)
    assert unknown.stderr.strip() == "yinqi: error: no alert #999999"
    assert "audit chain intact" in yinqi("audit", "verify", env=env).stdout
    app = App(load_settings(home=Path(env["YINQI_HOME"]), database_url=db_url))
    try:
        with app.sessions() as s:
            (event,) = s.scalars(select(AuditEventRow).where(
                AuditEventRow.action == "alert.acknowledged")).all()
    finally:
        app.close()
    assert (event.actor, event.subject_ids, event.details["note"]) == (
        "liu.treasurer", [str(returned)], "called the bank")


def test_test_sends_to_the_named_channel_and_fails_on_a_broken_one(
        env: dict[str, str], receiver: Receiver) -> None:
    admin = as_user(env, "admin")
    ok = yinqi("alerts", "test", "--channel", "ops", env=admin)
    assert ok.stdout.strip() == "ops: sent"
    ((path, body),) = receiver.seen
    assert (path, body["kind"], body["severity"]) == ("/ok", "alerts.test", "info")
    assert "sent by admin" in body["message"]

    broken = yinqi("alerts", "test", "--channel", "down", env=admin, check=1)
    assert broken.stdout.strip() == f"down: FAILED: {receiver.base}/down: HTTP 500"

    missing = yinqi("alerts", "test", "--channel", "nope", env=admin, check=2)
    assert "no channel 'nope' in" in missing.stderr
    assert "(channels: mail, ops, down)" in missing.stderr


def test_the_shipped_config_sends_nothing(env: dict[str, str]) -> None:
    shipped = {k: v for k, v in env.items() if k != "YINQI_CONFIG_DIR"}
    raise_alert(shipped, "payment.returned", "critical", "1 payment(s) returned")
    out = json.loads(yinqi("alerts", "deliver", "--json", env=shipped).stdout)
    assert out == {"routed": 0, "sent": 0, "retrying": 0, "failed": 0, "errors": []}
    refused = yinqi("alerts", "test", env=as_user(shipped, "admin"), check=2)
    assert "no channel is enabled in" in refused.stderr and "alerts.toml" in refused.stderr
    (alert,) = listed(shipped)["alerts"]
    assert alert["deliveries"] == [] and alert["delivered_at"] is None
