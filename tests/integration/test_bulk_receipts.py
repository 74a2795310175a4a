"""Batch receipt download (批量回单下载): many receipts per signed answer, each receipt still
signed, checked and kept on its own; a bank without it is asked one receipt at a time."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from config import load_settings
from connectors import detached
from connectors.archive import Archive
from connectors.base import DebtorAccount, OutgoingBatch, Signer
from connectors.errors import BadBankAnswer, BankRefused
from connectors.iso20022.connector import IsoConnector, download_receipts
from connectors.registry import connect
from connectors.transport import Endpoint, RetryPolicy, Transport
from sandbox_support import FAKE_START, free_port, serve, write_config
from yinqi.bootstrap import App
from yinqi.cli.bank_cmd import signer_of
from yinqi.cli.init_cmd import run_init
from yinqi.cli.sandbox_cmd import enrol
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.security.files import file_cipher

SHIPPED_BANKS = Path(__file__).resolve().parents[2] / "config" / "defaults" / "banks.toml"
NO_WAIT = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


# --- against the sandbox bank ---------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, str]]:
    tmp = tmp_path_factory.mktemp("bulk-receipts")
    port = free_port()
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "banks.toml").write_text(
        SHIPPED_BANKS.read_text().replace("127.0.0.1:8443", f"127.0.0.1:{port}"))
    app = App(load_settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 'y.db'}",
                            master_secret="bulk-receipt-tests-" + "s" * 32, config_dir=conf))
    run_init(app)
    config = write_config(tmp, settle_after_seconds=30.0)
    enrol(app, config, app.settings.home / "sandbox")
    with serve(config, app.settings.home / "sandbox", tmp, port=port) as (url, _proc):
        yield app, url
    app.close()


def _control(app: App, url: str, path: str, payload: dict[str, object]) -> None:
    import ssl

    from yinqi.security.keystore import keystore_password

    home = app.settings.home
    ctx = ssl.create_default_context(cafile=str(home / "sandbox" / "ca.pem"))
    ctx.load_cert_chain(str(home / "keys/client-icbc-sandbox.pem"),
                        str(home / "keys/client-icbc-sandbox.key"),
                        password=keystore_password(app.master_secret))
    with httpx.Client(base_url=url, verify=ctx, timeout=30) as c:
        c.post(f"/_sandbox/{path}", json=payload).raise_for_status()


def _order(msg_id: str, debtor: str, refs: list[str]) -> OutgoingBatch:
    items = [Payment(end_to_end_id=ref, debtor_account=debtor, creditor_name="杨磊",
                     creditor_account="49505976717236739", creditor_cnaps="105290036005",
                     creditor_bank_name="中国建设银行上海浦东分行",
                     amount=Money.of(Decimal("100.00") + i, "CNY"), purpose="货款",
                     category=Category.SUPPLIER, maker="wu.maker",
                     requested_date=date(2026, 11, 24)) for i, ref in enumerate(refs)]
    return OutgoingBatch(msg_id=msg_id, created_at=datetime.now(UTC),
                         debtor=DebtorAccount("演示科技有限公司", debtor, "CNY",
                                              bic="ICBKCNBJXXX",
                                              credit_code="91350100M000100Y43"),
                         execution_date=FAKE_START.date(), payments=items)


@pytest.mark.parametrize(("code", "debtor"), [("icbc-sandbox", "1202021209900123456"),
                                              ("cmb-sandbox", "755912345610808")])
def test_a_batch_download_gives_each_receipt_as_a_single_download_would(
        world: tuple[App, str], code: str, debtor: str) -> None:
    app, url = world
    prefix = f"BR-{code[:4].upper()}"
    refs = [f"{prefix}-{i}" for i in range(5)]
    files = file_cipher(app.master_secret)
    archive = Archive(app.settings.home / "archive", code, files)
    with closing(connect(code, app.config.banks[code], app.settings.home, signer_of(app),
                         files=files, retry=NO_WAIT)) as bank:
        assert bank.submit(_order(f"{prefix}-MSG", debtor, refs)).taken
        early = bank.receipts(refs[:2])
        assert all(isinstance(v, BankRefused) and v.status_code == 404 for v in early.values())
        _control(app, url, "clock", {"advance_seconds": 120})
        got = bank.receipts([*refs, f"{prefix}-NEVER-SENT", refs[0]])
        assert list(got) == [*refs, f"{prefix}-NEVER-SENT"]
        missing = got[f"{prefix}-NEVER-SENT"]
        assert isinstance(missing, BankRefused) and missing.status_code == 404
        for ref in refs:
            one = bank.receipt(ref)
            many = got[ref]
            assert not isinstance(many, Exception)
            assert many.signature_valid and many.receipt.signature_valid
            # The same document, byte for byte, with the same bank reference and code.
            assert many.receipt.content == one.receipt.content
            assert many.receipt.content.startswith(b"%PDF")
            assert many.receipt.bank_reference == one.receipt.bank_reference != ""
            assert many.receipt.verification_code == one.receipt.verification_code != ""
            assert many.path is not None and archive.read(many.path) == many.receipt.content
            assert many.receipt.content not in many.path.read_bytes()  # encrypted at rest
            assert many.sha256 == hashlib.sha256(many.receipt.content).hexdigest()
        by_bank_ref = bank.receipts([got[refs[0]].receipt.bank_reference])  # type: ignore[union-attr]
        [found] = by_bank_ref.values()
        assert not isinstance(found, Exception)
        assert found.receipt.content == got[refs[0]].receipt.content  # type: ignore[union-attr]


def test_the_sandbox_refuses_a_malformed_or_oversized_batch_request(
        world: tuple[App, str]) -> None:
    app, _url = world
    bank = connect("icbc-sandbox", app.config.banks["icbc-sandbox"], app.settings.home,
                   signer_of(app), files=file_cipher(app.master_secret), retry=NO_WAIT)
    with closing(bank):
        t = bank._t  # type: ignore[attr-defined]
        assert t.request("POST", "/receipts/batch", idempotent=True,
                         content=b'{"refs": []}').status_code == 422
        too_many = json.dumps({"references": [f"R{i}" for i in range(1001)]}).encode()
        assert t.request("POST", "/receipts/batch", idempotent=True,
                         content=too_many).status_code == 422


# --- the connector's checks, against a scripted bank -------------------------------------------


def _identity() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scripted bank")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


BANK_KEY, BANK_CERT = _identity()
OTHER_KEY, _ = _identity()
PDFS = {f"R{i}": b"%PDF-1.4 receipt " + str(i).encode() for i in range(3)}
SCRIPTED_FILES = file_cipher(b"scripted-bank-tests-" + b"m" * 32)


def _scripted(tmp_path: Path, handler) -> IsoConnector:  # type: ignore[no-untyped-def]
    endpoint = Endpoint("scripted", "https://bank.test/banks/x", tmp_path / "ca.pem",
                        tmp_path / "c.pem", tmp_path / "c.key")
    transport = Transport(endpoint, retry=NO_WAIT, http_transport=httpx.MockTransport(handler))
    return IsoConnector("scripted", transport, Signer(OTHER_KEY, BANK_CERT), BANK_CERT,
                        Archive(tmp_path / "archive", "scripted", SCRIPTED_FILES))


def _batch_answer(request: httpx.Request, *, item_key=BANK_KEY,  # type: ignore[no-untyped-def]
                  body_key=BANK_KEY) -> httpx.Response:
    refs = json.loads(request.content)["references"]
    items = [{"reference": ref, "bank_reference": f"B-{ref}", "verification_code": f"V-{ref}",
              "signature": detached.sign(PDFS[ref], item_key),
              "pdf": base64.b64encode(PDFS[ref]).decode()} for ref in refs if ref in PDFS]
    body = json.dumps({"receipts": items,
                       "not_ready": [r for r in refs if r not in PDFS]}).encode()
    return httpx.Response(200, content=body,
                          headers={"X-Signature": detached.sign(body, body_key)})


def test_every_receipt_in_a_batch_is_checked_on_its_own(tmp_path: Path) -> None:
    bank = _scripted(tmp_path, _batch_answer)
    with closing(bank):
        got = bank.receipts(["R0", "R1", "R2", "LATER"])
    assert all(got[r].signature_valid for r in PDFS)  # type: ignore[union-attr]
    # The whole answer is the bank's, but a receipt inside it is signed by someone else.
    bank = _scripted(tmp_path, lambda r: _batch_answer(r, item_key=OTHER_KEY))
    with closing(bank):
        bad = bank.receipts(["R0", "LATER"])
    assert bad["R0"].signature_valid is False  # type: ignore[union-attr]
    later = bad["LATER"]
    assert isinstance(later, BankRefused) and later.status_code == 404
    kept = got["R0"].path  # type: ignore[union-attr]
    assert kept is not None
    assert Archive(tmp_path / "archive", "scripted", SCRIPTED_FILES).read(kept) == PDFS["R0"]
    assert got["R0"].receipt.bank_reference == "B-R0"  # type: ignore[union-attr]


def test_a_batch_answer_not_signed_by_the_bank_is_not_read(tmp_path: Path) -> None:
    bank = _scripted(tmp_path, lambda r: _batch_answer(r, body_key=OTHER_KEY))
    with closing(bank):
        got = bank.receipts(["R0", "R1"])
    assert all(isinstance(v, BadBankAnswer) for v in got.values())
    assert not list((tmp_path / "archive").rglob("*.pdf"))  # nothing kept from it


def test_a_bank_without_batch_download_is_asked_one_receipt_at_a_time(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(404, text="no such endpoint")
        ref = request.url.path.rsplit("/", 1)[-1]
        if ref not in PDFS:
            return httpx.Response(404, text="not settled")
        return httpx.Response(200, content=PDFS[ref], headers={
            "X-Signature": detached.sign(PDFS[ref], BANK_KEY), "X-Bank-Reference": f"B-{ref}",
            "X-Verification-Code": f"V-{ref}"})

    bank = _scripted(tmp_path, handler)
    with closing(bank):
        got = download_receipts(bank, bank._t, bank._archive, BANK_CERT,  # type: ignore[attr-defined]
                                ["R0", "R1", "R2", "LATER"], per_request=2)
    assert seen == ["POST /banks/x/receipts/batch", "GET /banks/x/receipts/R0",
                    "GET /banks/x/receipts/R1", "GET /banks/x/receipts/R2",
                    "GET /banks/x/receipts/LATER"]
    assert all(got[r].signature_valid for r in PDFS)  # type: ignore[union-attr]
    assert isinstance(got["LATER"], BankRefused) and got["LATER"].status_code == 404


def test_receipts_rendered_in_worker_processes_are_the_same_bytes(tmp_path: Path) -> None:
    from connectors.sandbox import pki, server
    from connectors.sandbox.receipts import ReceiptData, render_signed
    from connectors.sandbox.server import Identity, close_receipt_pool, render_many

    pki.ensure_ca(tmp_path)
    pki.issue_client_cert(tmp_path, "bank", tmp_path / "b.pem", tmp_path / "b.key", days=30)
    cert = (tmp_path / "b.pem").read_bytes()
    identity = Identity(key_pem=(tmp_path / "b.key").read_bytes(), cert_pem=cert,
                        fingerprint=pki.fingerprint(cert), receipt_secret=b"s" * 32)
    datas = [ReceiptData(bank_name="中国工商银行 (沙箱)", bank_reference=f"P{i:016d}",
                         business_reference=f"E2E-{i}", payer_name="演示科技有限公司",
                         payer_account="1202021209900123456", payer_bank="中国工商银行",
                         payee_name="杨磊", payee_account="49505976717236739",
                         payee_bank="中国建设银行上海浦东分行", amount=Decimal("1005.00") + i,
                         currency="CNY", purpose="货款",
                         booked_at=datetime(2026, 11, 24, 2, 0, tzinfo=UTC),
                         value_date=date(2026, 11, 24))
             for i in range(server.POOL_THRESHOLD + 3)]
    here = render_signed(datas, identity.key_pem, identity.cert_pem, identity.receipt_secret)
    old = server.RECEIPT_WORKERS
    server.RECEIPT_WORKERS = 2
    try:
        there = render_many(datas, identity)
        assert server._pool is not None  # the worker processes did it
    finally:
        close_receipt_pool()
        server.RECEIPT_WORKERS = old
    assert there == here
    for pdf, _code, signature in there:
        detached.verify(pdf, signature, cert)
