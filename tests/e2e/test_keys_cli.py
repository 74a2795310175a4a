"""`yinqi keys ...` as an operator runs it, in a real process, against a real sandbox bank.

One world per backend: a demo installation enrolled with a sandbox bank process. Before the
rotation an order goes out signed by signing-1; `yinqi keys rotate` makes signing-2 and hands
its certificate to the running bank; the next order is signed by signing-2. `yinqi keys
verify` then names the right key for each archived file, and refuses an altered copy.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from cli_support import yinqi
from conftest import BACKENDS, module_db_url
from connectors.base import DebtorAccount, OutgoingBatch, Submission
from connectors.registry import connect
from yinqi.bootstrap import App
from yinqi.demo.bank import SHANGHAI, business_morning
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.pipeline.banks import signer_of
from yinqi.pipeline.signing import read_archived, relative_to_home
from yinqi.security.files import file_cipher
from yinqi.security.keystore import load_private_key
from yinqi.store.models import AuditEventRow

ICBC_DEBTOR = "1202021209900123456"
PRIVATE = re.compile(r"PRIVATE KEY")


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from module_db_url(request, tmp_path_factory, "keys-cli-db")


@dataclass
class Rotated:
    world: DemoWorld
    env: dict[str, str]     # logged in as the auditor (reads keys, may not change them)
    admin: dict[str, str]   # logged in as the administrator
    listed_before: dict[str, Any]
    rotation: dict[str, Any]
    old_file: str   # archived order signed before the rotation, relative to $YINQI_HOME
    new_file: str   # archived order signed after it

    @property
    def home(self) -> Path:
        return self.world.home


def order(msg_id: str) -> OutgoingBatch:
    day = business_morning().astimezone(SHANGHAI).date()
    payment = Payment(end_to_end_id=f"{msg_id}-1", debtor_account=ICBC_DEBTOR,
                      creditor_name="杨磊", creditor_account="49505976717236739",
                      creditor_cnaps="105290036005", creditor_bank_name="中国建设银行上海浦东分行",
                      amount=Money.of(Decimal("23.45"), "CNY"), purpose="货款",
                      category=Category.SUPPLIER, maker="wu.maker", requested_date=day)
    return OutgoingBatch(msg_id=msg_id, created_at=datetime.now(UTC),
                         debtor=DebtorAccount("演示科技有限公司", ICBC_DEBTOR, "CNY",
                                              bic="ICBKCNBJXXX"),
                         execution_date=day, payments=[payment])


def logged_in(app: App, env: dict[str, str], username: str) -> dict[str, str]:
    """``env`` with a session of ``username``, as `yinqi login` would open one."""
    from yinqi.store.auth import start_session
    from yinqi.store.models import User

    with app.sessions.begin() as s:
        row = s.execute(select(User).where(User.username == username)).scalar_one()
        token, _ = start_session(s, app.audit, row, origin="test", client="pytest",
                                 now=datetime.now(UTC))
    return {**env, "YINQI_SESSION": token}


def send(world: DemoWorld, msg_id: str) -> str:
    """Sign and send an order as the connector does; the archived file, relative to home."""
    app = world.app
    with closing(connect("icbc-sandbox", app.config.banks["icbc-sandbox"], app.settings.home,
                         signer_of(app), files=file_cipher(app.master_secret))) as bank:
        sub: Submission = bank.submit(order(msg_id))
    assert sub.taken, sub.reports
    assert sub.exchange is not None and sub.exchange.sent_path is not None
    return relative_to_home(app, sub.exchange.sent_path)


@pytest.fixture(scope="module")
def rotated(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotated]:
    home = tmp_path_factory.mktemp("keys-cli") / "home"
    with demo_world(home, database_url=db_url, settle_after=30.0) as world:
        settings = world.app.settings
        assert settings.master_secret is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
        env.update(YINQI_HOME=str(settings.home),
                   YINQI_DATABASE_URL=settings.resolved_database_url,
                   YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
                   YINQI_CONFIG_DIR=str(settings.config_dir), COLUMNS="200")
        auditor, admin = (logged_in(world.app, env, "zhao.auditor"),
                          logged_in(world.app, env, "admin"))
        listed = json.loads(yinqi("keys", "list", "--json", env=auditor).stdout)
        old_file = send(world, "KEYS-CLI-OLD")
        refused = yinqi("keys", "rotate", env=auditor, check=1)  # not the auditor's to do
        assert "needs role admin" in refused.stderr
        rotation = json.loads(yinqi("keys", "rotate", "--json", env=admin).stdout)
        new_file = send(world, "KEYS-CLI-NEW")  # refused, were signing-2 not registered
        yield Rotated(world, auditor, admin, listed, rotation, old_file, new_file)


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["key_id"]: k for k in listing["keys"]}


def test_keys_list_shows_certificates_and_status_never_key_material(rotated: Rotated) -> None:
    before = by_id(rotated.listed_before)
    assert before["signing-1"]["status"] == "current"
    assert before["signing-1"]["algorithm"] == "RSA-2048"
    assert len(before["signing-1"]["fingerprint"]) == 64
    assert before["signing-1"]["days_left"] > 700
    for code in ("icbc-sandbox", "cmb-sandbox"):
        tls = before[f"tls:{code}"]
        assert (tls["purpose"], tls["status"], tls["key_file"]) == ("tls", "current",
                                                                   "encrypted")
    after = yinqi("keys", "list", "--json", env=rotated.env).stdout
    keys = by_id(json.loads(after))
    assert keys["signing-1"]["status"] == "retired" and keys["signing-1"]["retired_at"]
    assert keys["signing-2"]["status"] == "current" and keys["signing-2"]["retired_at"] is None
    table = yinqi("keys", "list", env=rotated.env).stdout
    assert "signing-1" in table and "retired" in table and "current" in table
    assert not PRIVATE.search(after + table)


def test_rotate_retires_the_old_key_and_registers_the_new_one_with_the_bank(
        rotated: Rotated) -> None:
    out = rotated.rotation
    assert out["new_key_id"] == "signing-2"
    assert [r["key_id"] for r in out["retired"]] == ["signing-1"]
    assert out["banks_to_tell"] == []
    assert {line.split(":")[0] for line in out["registered"]} == {"icbc-sandbox",
                                                                 "cmb-sandbox"}
    folder = rotated.home / "sandbox" / "signers"
    assert {p.name for p in (folder / "icbc").glob("*.pem")} >= {"yinqi-signing-1.pem",
                                                                "yinqi-signing-2.pem"}
    assert (rotated.home / "keys" / "signing-1.key.pem").exists()  # kept for the record
    with rotated.world.app.sessions() as s:
        event = s.execute(select(AuditEventRow).where(AuditEventRow.action == "key.rotated")
                          .order_by(AuditEventRow.seq)).scalars().first()
    assert event is not None and event.actor == "admin"
    assert event.details["new_key_id"] == "signing-2"
    assert event.details["old_key_ids"] == ["signing-1"]
    audit = yinqi("audit", "verify", env=rotated.env)
    assert audit.returncode == 0


def test_verify_names_the_key_that_signed_each_archived_file(rotated: Rotated) -> None:
    old = json.loads(yinqi("keys", "verify", rotated.old_file, "--json",
                           env=rotated.env).stdout)
    new = json.loads(yinqi("keys", "verify", rotated.new_file, "--json",
                           env=rotated.env).stdout)
    assert (old["ok"], old["key_id"], old["key_status"]) == (True, "signing-1", "retired")
    assert (new["ok"], new["key_id"], new["key_status"]) == (True, "signing-2", "current")
    assert old["method"] == new["method"] == "xml-dsig"
    # Read through the archive: on disk the files are encrypted.
    assert not (rotated.home / rotated.old_file).read_bytes().startswith(b"<")

    text = yinqi("keys", "verify", str(rotated.home / rotated.new_file), env=rotated.env).stdout
    assert "signature valid, signed by signing-2 (current" in text
    wrong_key = yinqi("keys", "verify", rotated.old_file, "--key", "signing-2", "--json",
                      env=rotated.env, check=1)
    assert json.loads(wrong_key.stdout)["ok"] is False


def test_verify_refuses_an_altered_copy(rotated: Rotated, tmp_path: Path) -> None:
    app = rotated.world.app
    signed = read_archived(app, rotated.old_file)
    altered = signed.replace(b"23.45", b"93.45")
    assert altered != signed
    copy = tmp_path / "order.xml"
    copy.write_bytes(altered)
    proc = yinqi("keys", "verify", str(copy), env=rotated.env, check=1)
    assert "NOT VALID" in proc.stdout and "altered" in proc.stdout
    # The sealed archive file itself, changed by one byte, does not even open.
    sealed = rotated.home / rotated.old_file
    original = sealed.read_bytes()
    blob = bytearray(original)
    blob[-20] ^= 1
    try:
        sealed.write_bytes(bytes(blob))
        refused = yinqi("keys", "verify", rotated.old_file, env=rotated.env, check=1)
        assert refused.stderr.startswith("yinqi: error:") and "altered" in refused.stderr
    finally:
        sealed.write_bytes(original)


def test_export_cert_hands_out_the_certificate_only(rotated: Rotated, tmp_path: Path) -> None:
    pem = yinqi("keys", "export-cert", "signing-2", env=rotated.env).stdout
    assert pem == (rotated.home / "keys" / "signing-2.cert.pem").read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and not PRIVATE.search(pem)
    out = tmp_path / "for-the-bank.pem"
    said = yinqi("keys", "export-cert", "signing-2", "--out", str(out), env=rotated.env).stdout
    assert out.read_text() == pem and "signing-2" in said
    channel = yinqi("keys", "export-cert", "tls:icbc-sandbox", env=rotated.env).stdout
    assert channel == (rotated.home / "keys" / "client-icbc-sandbox.pem").read_text()
    missing = yinqi("keys", "export-cert", "signing-9", env=rotated.env, check=2)
    assert "no key 'signing-9'" in missing.stderr and missing.stderr.count("\n") == 1


def test_a_plaintext_channel_key_is_flagged_by_doctor_and_encrypted_by_import(
        rotated: Rotated) -> None:
    app = rotated.world.app
    key_path = rotated.home / "keys" / "client-cmb-sandbox.key"
    key = load_private_key(key_path, app.master_secret)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def doctor_check() -> dict[str, str]:
        proc = yinqi("doctor", "--json", env=rotated.env, check=None)
        return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}[
            "bank cmb-sandbox client key"]

    warned = doctor_check()
    assert warned["status"] == "warn"
    assert "yinqi keys import-tls --bank cmb-sandbox" in warned["detail"]
    listed = by_id(json.loads(yinqi("keys", "list", "--json", env=rotated.env).stdout))
    assert listed["tls:cmb-sandbox"]["key_file"] == "plaintext"

    out = json.loads(yinqi("keys", "import-tls", "--bank", "cmb-sandbox", "--json",
                           env=rotated.admin).stdout)
    assert out["key_file"] == "encrypted" and out["changes"] == [f"encrypted key {key_path}"]
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    assert doctor_check()["status"] == "ok"
    icbc = {c["name"]: c for c in json.loads(yinqi("doctor", "--json", env=rotated.env,
                                                   check=None).stdout)["checks"]}
    assert icbc["bank icbc-sandbox client key"]["status"] == "ok"


def test_a_channel_key_rotation_keeps_the_bank_test_green(rotated: Rotated) -> None:
    before = by_id(json.loads(yinqi("keys", "list", "--json", env=rotated.env).stdout))
    out = json.loads(yinqi("keys", "rotate", "--purpose", "tls", "--bank", "icbc-sandbox",
                           "--json", env=rotated.admin).stdout)
    assert out["old_fingerprint"] == before["tls:icbc-sandbox"]["fingerprint"]
    assert out["fingerprint"] != out["old_fingerprint"]
    report = json.loads(yinqi("bank", "test", "icbc-sandbox", "--json", env=rotated.admin).stdout)
    assert report["ok"], report["steps"]


def test_bad_input_is_one_line_and_exit_2(rotated: Rotated) -> None:
    for args, words in ((["rotate", "--purpose", "tls"], "needs --bank"),
                        (["rotate", "--purpose", "dns"], "--purpose must be"),
                        (["rotate", "--bank", "nobank"], "no bank 'nobank'"),
                        (["verify", "no-such-file.xml"], "no such file"),
                        (["verify", rotated.old_file, "--key", "signing-9"], "no key")):
        proc = yinqi("keys", *args, env=rotated.admin, check=2)
        assert words in proc.stderr, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    listed = by_id(json.loads(yinqi("keys", "list", "--json", env=rotated.env).stdout))
    assert "signing-3" not in listed  # nothing was rotated by the refused commands


def test_rotating_the_field_key_is_a_keys_command_too(rotated: Rotated) -> None:
    out = json.loads(yinqi("keys", "rotate", "--purpose", "fields", "--json",
                           env=rotated.admin).stdout)
    assert out["new_key_id"] == "fields-2" and out["values"] > 0
    keys = by_id(json.loads(yinqi("keys", "list", "--json", env=rotated.env).stdout))
    assert (keys["fields-2"]["status"], keys["fields-2"]["key_file"]) == ("current", "derived")
    assert keys["fields-2"]["fingerprint"] is None
    refused = yinqi("keys", "export-cert", "fields-2", env=rotated.env, check=2)
    assert "has no certificate" in refused.stderr
