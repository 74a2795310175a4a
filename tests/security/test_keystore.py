"""The keystore: keys encrypted at rest, rotation that keeps old signatures verifiable, and
TLS client keys that are encrypted yet still open a real mutual-TLS session with the bank."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from connectors import detached
from connectors.base import DebtorAccount, OutgoingBatch
from connectors.errors import CertificateError
from connectors.iso20022.pain001 import sign_envelope
from connectors.registry import connect, endpoint_of
from connectors.transport import Transport
from yinqi.bootstrap import App
from yinqi.demo.bank import SHANGHAI, business_morning
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.doctor import Status, check_client_key
from yinqi.errors import KeyStoreError
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.pipeline.banks import BankPool, signer_of
from yinqi.security import channels, keyring
from yinqi.security.files import file_cipher
from yinqi.security.keystore import (
    create_tls_client_key,
    encrypt_key_file,
    keystore_password,
    load_private_key,
)
from yinqi.security.signatures import TrustedKey, in_service, verify_signed_file
from yinqi.store.models import AuditEventRow, Key

PLAINTEXT_KEY = re.compile(rb"BEGIN (RSA |EC )?PRIVATE KEY")
OTHER_MASTER = b"another-master-secret-" + b"q" * 32
DOCUMENT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:'
            b'tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn><GrpHdr><MsgId>K-1</MsgId>'
            b'<NbOfTxs>1</NbOfTxs><CtrlSum>100.00</CtrlSum></GrpHdr></CstmrCdtTrfInitn>'
            b'</Document>')
ICBC_DEBTOR = "1202021209900123456"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def signing_keys(app: App) -> list[Key]:
    with app.sessions() as s:
        return [k for k in keyring.all_keys(s) if k.purpose == keyring.SIGNING]


def trusted_keys(app: App) -> list[TrustedKey]:
    return [keyring.trusted(k) for k in signing_keys(app)]


def audit_events(app: App, action: str) -> list[AuditEventRow]:
    with app.sessions() as s:
        return list(s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                              .order_by(AuditEventRow.seq)).scalars())


# --- keys at rest ---------------------------------------------------------------------------


def test_key_files_hold_no_plaintext_key_and_only_their_owner_reads_them(app: App) -> None:
    keys_dir = app.settings.keys_dir
    create_tls_client_key(keys_dir / "client-test.key", app.master_secret, "演示科技 (test)")
    key_files = sorted(keys_dir.glob("*.key*"))
    assert [p.name for p in key_files] == ["client-test.key", "signing-1.key.pem"]
    for path in key_files:
        data = path.read_bytes()
        assert not PLAINTEXT_KEY.search(data), path
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in data
        assert mode(path) == 0o600, path
    assert mode(keys_dir) == 0o700
    # The database holds certificates and dates, never key material.
    with app.sessions() as s:
        rows = s.execute(select(Key)).scalars().all()
        assert rows and all(b"PRIVATE KEY" not in r.certificate_pem.encode() for r in rows)
    if app.engine.dialect.name == "sqlite":  # the stolen file, write-ahead log included
        db = Path(app.engine.url.database or "")
        stolen = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert b"CERTIFICATE" in stolen and b"PRIVATE KEY" not in stolen


def test_a_wrong_master_secret_opens_no_key(app: App) -> None:
    with app.sessions() as s:
        signing = Path(keyring.current_signing_key(s).path)  # type: ignore[union-attr]
    client = app.settings.keys_dir / "client-test.key"
    create_tls_client_key(client, app.master_secret, "test")
    for path in (signing, client):
        with pytest.raises(KeyStoreError, match="cannot be decrypted with this master secret"):
            load_private_key(path, OTHER_MASTER)
        assert load_private_key(path, app.master_secret) is not None
    with pytest.raises(TypeError):  # a key file needs its password: none opens nothing
        serialization.load_pem_private_key(signing.read_bytes(), password=None)


def test_a_plaintext_key_file_is_encrypted_in_place(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    master = b"m" * 40
    path = tmp_path / "bank-issued.key"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o644)
    assert encrypt_key_file(path, master) is True
    assert not PLAINTEXT_KEY.search(path.read_bytes()) and mode(path) == 0o600
    loaded = load_private_key(path, master)
    assert loaded.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    assert encrypt_key_file(path, master) is False  # already encrypted: left alone
    with pytest.raises(KeyStoreError, match="cannot be decrypted"):
        encrypt_key_file(path, OTHER_MASTER)


# --- rotation -------------------------------------------------------------------------------


def test_rotation_signs_new_files_with_the_new_key_and_keeps_old_ones_verifiable(
        app: App) -> None:
    old_signer = signer_of(app)
    old_file = sign_envelope(DOCUMENT, old_signer.private_key, old_signer.certificate_pem)

    rotation = keyring.rotate_signing_key(app, actor="admin.test")
    assert rotation.new.key_id == "signing-2"
    assert [k for k, _ in rotation.retired] == ["signing-1"]
    rows = {k.key_id: k for k in signing_keys(app)}
    assert rows["signing-1"].retired_at is not None and rows["signing-2"].retired_at is None
    assert Path(rows["signing-1"].path).exists()  # retired, never deleted

    new_signer = signer_of(app)
    assert new_signer.fingerprint == rotation.new.fingerprint != old_signer.fingerprint
    new_file = sign_envelope(DOCUMENT.replace(b"K-1", b"K-2"), new_signer.private_key,
                             new_signer.certificate_pem)

    keys = trusted_keys(app)
    old_verdict, new_verdict = verify_signed_file(old_file, keys), verify_signed_file(new_file,
                                                                                      keys)
    assert (old_verdict.ok, old_verdict.key_id) == (True, "signing-1")
    assert (new_verdict.ok, new_verdict.key_id) == (True, "signing-2")
    # Against the new key alone, the old file is someone else's; altered, it is nobody's.
    only_new = [k for k in keys if k.key_id == "signing-2"]
    assert not verify_signed_file(old_file, only_new).ok
    tampered = old_file.replace(b"<CtrlSum>100.00<", b"<CtrlSum>900.00<")
    assert tampered != old_file
    bad = verify_signed_file(tampered, keys)
    assert not bad.ok and "altered" in bad.detail

    [event] = audit_events(app, "key.rotated")
    assert event.actor == "admin.test"
    assert event.details["old_key_ids"] == ["signing-1"]
    assert event.details["old_fingerprints"] == [old_signer.fingerprint]
    assert event.details["new_key_id"] == "signing-2"
    assert event.details["new_fingerprint"] == new_signer.fingerprint
    assert "PRIVATE" not in str(event.details)


def test_key_ids_are_never_reused_and_init_keeps_the_current_key(app: App) -> None:
    from yinqi.cli.init_cmd import run_init

    keyring.rotate_signing_key(app, actor="a")
    keyring.rotate_signing_key(app, actor="a")
    assert not any("signing key" in change for change in run_init(app))
    keys = signing_keys(app)
    with app.sessions() as s:
        current = keyring.current_signing_key(s)
    assert [k.key_id for k in keys] == ["signing-1", "signing-2", "signing-3"]
    assert current is not None and current.key_id == "signing-3"
    assert sum(k.retired_at is None for k in keys) == 1


def test_a_retired_key_was_in_service_only_until_its_retirement() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    key = TrustedKey("signing-1", "ab", b"", start, retired_at=start + timedelta(days=30))
    assert in_service(key, start + timedelta(days=1))
    assert not in_service(key, start + timedelta(days=31))
    assert not in_service(key, start - timedelta(days=1))
    assert in_service(TrustedKey("signing-2", "cd", b"", start), start + timedelta(days=900))


def test_a_direct_connect_body_is_checked_against_the_signature_given(app: App) -> None:
    signer = signer_of(app)
    body = '{"批次号": "K-3", "金额": "100.00"}'.encode()
    signature = detached.sign(body, signer.private_key)
    keys = trusted_keys(app)
    assert verify_signed_file(body, keys, signature=signature).key_id == "signing-1"
    assert not verify_signed_file(body.replace(b"100", b"900"), keys, signature=signature).ok
    unsigned = verify_signed_file(body, keys)
    assert not unsigned.ok and unsigned.method == "none" and "--signature" in unsigned.detail


# --- TLS client keys against a real sandbox bank ---------------------------------------------


@dataclass
class Bank:
    world: DemoWorld

    @property
    def app(self) -> App:
        return self.world.app

    def connector(self, code: str = "icbc-sandbox"):  # type: ignore[no-untyped-def]
        return connect(code, self.app.config.banks[code], self.app.settings.home,
                       signer_of(self.app), files=file_cipher(self.app.master_secret))


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    with demo_world(tmp_path_factory.mktemp("keystore") / "home", settle_after=30.0) as world:
        yield Bank(world)


def order(msg_id: str) -> OutgoingBatch:
    day = business_morning().astimezone(SHANGHAI).date()
    payment = Payment(end_to_end_id=f"{msg_id}-1", debtor_account=ICBC_DEBTOR,
                      creditor_name="杨磊", creditor_account="49505976717236739",
                      creditor_cnaps="105290036005", creditor_bank_name="中国建设银行上海浦东分行",
                      amount=Money.of(Decimal("12.34"), "CNY"), purpose="货款",
                      category=Category.SUPPLIER, maker="wu.maker", requested_date=day)
    return OutgoingBatch(msg_id=msg_id, created_at=datetime.now(UTC),
                         debtor=DebtorAccount("演示科技有限公司", ICBC_DEBTOR, "CNY",
                                              bic="ICBKCNBJXXX"),
                         execution_date=day, payments=[payment])


def test_enrolment_writes_encrypted_channel_keys_that_open_a_real_mtls_session(
        bank: Bank) -> None:
    app = bank.app
    for code in ("icbc-sandbox", "cmb-sandbox"):
        ch = channels.channel_key(app, code)
        assert ch.key_state == "encrypted" and ch.key_mode == 0o600
        assert not PLAINTEXT_KEY.search(ch.key_path.read_bytes())
        assert check_client_key(code, ch.key_path, app.master_secret).status is Status.OK
        with closing(bank.connector(code)) as connector:
            echo = connector.echo("握手 handshake")  # TLS handshake, then a signed echo
        assert echo.authenticated and echo.echoed == "握手 handshake"
    # Without the keystore password, or with another master secret's, the key stays shut.
    cfg = app.config.banks["icbc-sandbox"]
    for password, reason in ((None, "no keystore password"),
                             (keystore_password(OTHER_MASTER), "cannot be decrypted")):
        with pytest.raises(CertificateError, match=reason):
            Transport(endpoint_of("icbc-sandbox", cfg, app.settings.home, password))


def test_a_bank_issued_plaintext_key_still_works_until_imported_encrypted(bank: Bank) -> None:
    app = bank.app
    ch = channels.channel_key(app, "cmb-sandbox")
    key = load_private_key(ch.key_path, app.master_secret)
    ch.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    check = check_client_key("cmb-sandbox", ch.key_path, app.master_secret)
    assert check.status is Status.WARN
    assert "not encrypted" in check.detail and "yinqi keys import-tls --bank cmb-sandbox" \
        in check.detail
    with closing(bank.connector("cmb-sandbox")) as connector:
        assert connector.echo("plaintext key").authenticated

    after, changes = channels.install(app, "cmb-sandbox", actor="admin.test")
    assert changes == [f"encrypted key {ch.key_path}"]
    assert after.key_state == "encrypted" and after.key_mode == 0o600
    assert check_client_key("cmb-sandbox", ch.key_path, app.master_secret).status is Status.OK
    with closing(bank.connector("cmb-sandbox")) as connector:
        assert connector.echo("encrypted again").authenticated
    event = audit_events(app, "key.tls_imported")[-1]
    assert event.details["bank"] == "cmb-sandbox" and event.details["was"] == "plaintext"
    assert channels.install(app, "cmb-sandbox", actor="admin.test")[1] == []  # idempotent


def test_the_sandbox_learns_a_rotated_key_and_still_takes_orders_signed_before(
        bank: Bank) -> None:
    from yinqi.cli.sandbox_cmd import register_signing_certificates
    from yinqi.pipeline.signing import read_archived, relative_to_home

    app, state = bank.app, bank.app.settings.home / "sandbox"
    with closing(bank.connector()) as before_rotation:
        signed_before = before_rotation.prepare(order("KS-OLD"))
        old_key = before_rotation._signer.fingerprint  # type: ignore[attr-defined]

    rotation = keyring.rotate_signing_key(app, actor="admin.test")
    with closing(bank.connector()) as connector:
        # Not registered yet: a bank refuses a signer it does not know.
        refused = connector.submit(order("KS-EARLY"))
        assert not refused.taken
        assert any(r.reason_code == "DS0E" for r in refused.reports), refused.reports

        registered, elsewhere = register_signing_certificates(app, state)
        assert elsewhere == []
        assert any(rotation.new.key_id in line for line in registered)
        new = connector.submit(order("KS-NEW"))     # the running bank read its folder again
        old = connector.send_signed("KS-OLD", signed_before)
    assert new.taken and old.taken, (new.reports, old.reports)
    assert old_key != rotation.new.fingerprint

    # The pipeline's signer (BankPool) signs with the new key now.
    with BankPool(app) as banks:
        pipeline_file = banks["icbc-sandbox"].prepare(order("KS-POOL"))
    keys = trusted_keys(app)
    assert verify_signed_file(pipeline_file, keys).key_id == rotation.new.key_id
    for submission, key_id in ((old, rotation.retired[0][0]), (new, rotation.new.key_id)):
        assert submission.exchange is not None and submission.exchange.sent_path is not None
        archived = read_archived(app, relative_to_home(app, submission.exchange.sent_path))
        verdict = verify_signed_file(archived, keys)
        assert (verdict.ok, verdict.key_id) == (True, key_id)


def test_a_sandbox_channel_key_is_rotated_through_a_csr(bank: Bank) -> None:
    from yinqi.cli.sandbox_cmd import reissue_channel

    app = bank.app
    before = channels.channel_key(app, "icbc-sandbox")
    lines = reissue_channel(app, app.settings.home / "sandbox", "icbc-sandbox",
                            actor="admin.test")
    after = channels.channel_key(app, "icbc-sandbox")
    assert before.certificate and after.certificate
    assert after.certificate.fingerprint != before.certificate.fingerprint, lines
    assert after.key_state == "encrypted" and after.key_mode == 0o600
    assert not channels.pending_key_path(after.key_path).exists()
    assert not channels.csr_path(after.cert_path).exists()
    with closing(bank.connector()) as connector:
        assert connector.echo("new channel key").authenticated
    event = audit_events(app, "key.rotated")[-1]
    assert event.details["purpose"] == "tls" and event.details["bank"] == "icbc-sandbox"
    assert event.details["old_fingerprint"] == before.certificate.fingerprint
    assert event.details["new_fingerprint"] == after.certificate.fingerprint
