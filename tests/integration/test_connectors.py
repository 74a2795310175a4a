"""Yinqi's connectors against the sandbox bank: real mTLS, real signatures, real faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from config import load_settings
from connectors.archive import Archive
from connectors.base import DebtorAccount, OutgoingBatch
from connectors.errors import BadBankAnswer, BankUnavailable, CertificateError, NotDelivered
from connectors.errors import OutcomeUnknown
from connectors.registry import connect
from connectors.transport import RetryPolicy
from sandbox_support import FAKE_START, free_port, serve, write_config
from yinqi.bootstrap import App
from yinqi.cli.bank_cmd import signer_of
from yinqi.cli.init_cmd import run_init
from yinqi.cli.sandbox_cmd import enrol
from yinqi.money import Money
from yinqi.payments import Category, Payment
from yinqi.security.files import file_cipher

SHIPPED_BANKS = Path(__file__).resolve().parents[2] / "config" / "defaults" / "banks.toml"
ICBC_DEBTOR = "1202021209900123456"
CMB_DEBTOR = "755912345610808"
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@dataclass
class World:
    app: App
    url: str
    port: int
    tmp: Path

    def connector(self, code: str, retry: RetryPolicy = NO_WAIT):  # type: ignore[no-untyped-def]
        return connect(code, self.app.config.banks[code], self.app.settings.home,
                       signer_of(self.app), files=file_cipher(self.app.master_secret),
                       retry=retry)

    def control(self, method: str, path: str, **kw: object) -> dict:  # type: ignore[type-arg]
        import ssl

        from yinqi.security.keystore import keystore_password

        home = self.app.settings.home
        ctx = ssl.create_default_context(cafile=str(home / "sandbox" / "ca.pem"))
        ctx.load_cert_chain(str(home / "keys/client-icbc-sandbox.pem"),
                            str(home / "keys/client-icbc-sandbox.key"),
                            password=keystore_password(self.app.master_secret))
        with httpx.Client(base_url=self.url, verify=ctx, timeout=30) as c:
            r = c.request(method, f"/_sandbox/{path}", **kw)  # type: ignore[arg-type]
            r.raise_for_status()
            return r.json()

    def faults(self, **rates: object) -> None:
        self.control("PUT", "faults", content=json.dumps({"seed": 1, **rates}))


def product_config(folder: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = SHIPPED_BANKS.read_text().replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    (folder / "banks.toml").write_text(text.replace("read_timeout_seconds = 30",
                                                    "read_timeout_seconds = 2"))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("connectors")
    port = free_port()
    settings = load_settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 'y.db'}",
                             master_secret="connector-tests-" + "s" * 32,
                             config_dir=product_config(tmp / "conf", port))
    app = App(settings)
    run_init(app)
    config = write_config(tmp, settle_after_seconds=30.0)
    enrol(app, config, settings.home / "sandbox")
    with serve(config, settings.home / "sandbox", tmp, port=port) as (url, _proc):
        yield World(app, url, port, tmp)
    app.close()


def payments(prefix: str, n: int, debtor: str = "1202021209900123456", *,
             creditor: str = "49505976717236739", cnaps: str = "105290036005") -> list[Payment]:
    return [Payment(end_to_end_id=f"{prefix}-{i}", debtor_account=debtor, creditor_name="杨磊",
                    creditor_account=creditor, creditor_cnaps=cnaps,
                    creditor_bank_name="中国建设银行上海浦东分行",
                    amount=Money.of(Decimal("100.00") + i, "CNY"), purpose="11月工资",
                    category=Category.PAYROLL, maker="wu.maker", requested_date=date(2026, 11, 24))
            for i in range(n)]


def batch(msg_id: str, debtor: str, items: list[Payment]) -> OutgoingBatch:
    return OutgoingBatch(msg_id=msg_id, created_at=datetime.now(UTC),
                         debtor=DebtorAccount("演示科技有限公司", debtor, "CNY", bic="ICBKCNBJXXX",
                                              credit_code="91350100M000100Y43"),
                         execution_date=FAKE_START.date(), payments=items)


def advance(world: World, seconds: float) -> None:
    world.control("POST", "clock", json={"advance_seconds": seconds})


@pytest.mark.parametrize(("code", "debtor"), [("icbc-sandbox", ICBC_DEBTOR),
                                              ("cmb-sandbox", CMB_DEBTOR)])
def test_a_payment_goes_out_settles_and_shows_on_the_statement(world: World, code: str,
                                                               debtor: str) -> None:
    prefix = f"C-{code[:4].upper()}"
    with closing(world.connector(code)) as bank:
        before = bank.balance(debtor, "CNY")
        sub = bank.submit(batch(f"{prefix}-MSG", debtor, payments(prefix, 3, debtor)))
        assert sub.taken and {r.tx_status for r in sub.reports if r.end_to_end_id} == {"ACSP"}
        assert sub.exchange and sub.exchange.sent_path and sub.exchange.sent_path.exists()
        refs = [f"{prefix}-{i}" for i in range(3)]
        assert {r.tx_status for r in bank.status(f"{prefix}-MSG", refs).reports
                if r.end_to_end_id} == {"ACSP"}
        advance(world, 120)
        settled = bank.status(f"{prefix}-MSG", refs)
        assert {r.end_to_end_id: r.tx_status for r in settled.reports if r.end_to_end_id} == \
            {ref: "ACSC" for ref in refs}
        receipt = bank.receipt(refs[0])
        assert receipt.signature_valid and receipt.receipt.content.startswith(b"%PDF")
        after = bank.balance(debtor, "CNY")
        fee = Decimal("5.50") if code.startswith("icbc") else Decimal("2.00")
        assert before.booked.amount - after.booked.amount == Decimal("303.00") + 3 * fee
        advance(world, 86_400)
        statements = bank.statements(debtor, FAKE_START.date() - timedelta(days=1),
                                     FAKE_START.date() + timedelta(days=10))
        lines = [line for s in statements for line in s.lines]
        assert {line.end_to_end_id for line in lines} >= set(refs)
        assert all(s.balances_add_up() for s in statements), [s.warnings for s in statements]


def test_the_same_order_resent_is_answered_not_booked_again(world: World) -> None:
    with closing(world.connector("icbc-sandbox")) as bank:
        first = bank.submit(batch("C-RESEND", ICBC_DEBTOR, payments("C-RS", 1)))
        assert first.exchange and first.exchange.sent_path
        signed = Archive(world.app.settings.home / "archive", "icbc-sandbox",
                         file_cipher(world.app.master_secret)).read(first.exchange.sent_path)
        again = bank.send_signed("C-RESEND", signed)
    assert again.replayed and again.reports == first.reports
    assert world.control("GET", "ledger")["payments_booked_twice"] == 0


def test_faults_are_told_apart_by_what_they_mean(world: World) -> None:
    with closing(world.connector("icbc-sandbox")) as bank:
        try:
            world.faults(maintenance_rate=1.0, maintenance_retry_after=1)
            with pytest.raises(BankUnavailable):
                bank.submit(batch("C-F-MAINT", ICBC_DEBTOR, payments("C-FM", 1)))
            world.faults(reset_rate=1.0)
            with pytest.raises(OutcomeUnknown):
                bank.submit(batch("C-F-RESET", ICBC_DEBTOR, payments("C-FR", 1)))
            world.faults(timeout_after_booking_rate=1.0, timeout_hold_seconds=3.0)
            with pytest.raises(OutcomeUnknown):
                bank.submit(batch("C-F-LOST", ICBC_DEBTOR, payments("C-FL", 1)))
        finally:
            world.faults()
        # The lost answer: the bank did book it, and says so when asked.
        lost = bank.status("C-F-LOST", ["C-FL-0"])
        assert lost.received and lost.reports[-1].tx_status == "ACSP"
        assert not bank.status("C-F-MAINT", ["C-FM-0"]).received
        assert not bank.status("C-F-RESET", ["C-FR-0"]).received


def test_a_bank_that_is_down_means_not_delivered(world: World) -> None:
    cfg = world.app.config.banks["icbc-sandbox"]
    moved = cfg.model_copy(update={"endpoint": f"https://127.0.0.1:{free_port()}/banks/icbc"})
    bank = connect("icbc-sandbox", moved, world.app.settings.home, signer_of(world.app),
                   files=file_cipher(world.app.master_secret), retry=NO_WAIT)
    with closing(bank), pytest.raises(NotDelivered):
        bank.submit(batch("C-DOWN", ICBC_DEBTOR, payments("C-D", 1)))


def test_an_answer_signed_by_someone_else_is_refused(world: World, tmp_path: Path) -> None:
    from connectors.sandbox.pki import issue_foreign_client_cert

    foreign_cert, _ = issue_foreign_client_cert(tmp_path)
    cfg = world.app.config.banks["icbc-sandbox"]
    fake = cfg.model_copy(update={"signing_cert": foreign_cert})
    bank = connect("icbc-sandbox", fake, world.app.settings.home, signer_of(world.app),
                   files=file_cipher(world.app.master_secret), retry=NO_WAIT)
    with closing(bank), pytest.raises(BadBankAnswer, match="icbc-sandbox"):
        bank.status("C-RESEND", [])


def test_a_foreign_client_certificate_is_a_certificate_error(world: World, tmp_path: Path) -> None:
    from connectors.sandbox.pki import issue_foreign_client_cert

    cert, key = issue_foreign_client_cert(tmp_path)
    cfg = world.app.config.banks["icbc-sandbox"]
    wrong = cfg.model_copy(update={"client_cert": cert, "client_key": key})
    bank = connect("icbc-sandbox", wrong, world.app.settings.home, signer_of(world.app),
                   files=file_cipher(world.app.master_secret), retry=NO_WAIT)
    with closing(bank), pytest.raises(CertificateError, match="refused our client certificate"):
        bank.balance(ICBC_DEBTOR, "CNY")


def test_transactions_command_lists_the_bank_details(world: World) -> None:
    import os
    import subprocess
    import sys

    with closing(world.connector("cmb-sandbox")) as bank:
        bank.submit(batch("C-TX", CMB_DEBTOR, payments("C-TX", 2, CMB_DEBTOR)))
    advance(world, 2 * 86_400)
    settings = world.app.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    env.update(YINQI_HOME=str(settings.home), YINQI_DATABASE_URL=settings.resolved_database_url,
               YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
               YINQI_CONFIG_DIR=str(settings.config_dir))
    first, last = FAKE_START.date(), FAKE_START.date() + timedelta(days=14)
    proc = subprocess.run([sys.executable, "-m", "yinqi", "transactions", "--account",
                           CMB_DEBTOR, "--from", str(first), "--to", str(last), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["account"] == "****0808"
    refs = {e["end_to_end_id"] for s in data["statements"] for e in s["entries"]}
    assert {"C-TX-0", "C-TX-1"} <= refs
    amounts = [Decimal(e["amount"]) for s in data["statements"] for e in s["entries"]
               if e["end_to_end_id"] == "C-TX-0"]
    assert amounts == [Decimal("-100.00")]
