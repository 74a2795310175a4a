"""A sandbox bank in a real server process, and a small enterprise-side client for tests.

The client here builds its pain.001 with its own few lines of lxml, independent of the
sandbox's codec, so the two check each other.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from connectors.sandbox.pki import ensure_ca, issue_client_cert
from connectors.sandbox.signing import sign_detached, sign_envelope

SHIPPED = Path(__file__).resolve().parents[1] / "connectors" / "sandbox" / "default.toml"
FAKE_START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 09:00 in Shanghai


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signer_identity(days: int = 365) -> tuple[bytes, bytes]:
    """An enterprise signing key and self-signed certificate (what `yinqi init` makes)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "演示科技有限公司 signing")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=400))
            .not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Server:
    url: str
    state: Path
    client_cert: Path
    client_key: Path
    signing_key: bytes
    signing_cert: bytes
    process: subprocess.Popen[bytes]

    def client(self, *, timeout: float = 10.0, cert: tuple[str, str] | None = None) -> httpx.Client:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.state / "ca.pem"))
        ctx.load_cert_chain(*(cert or (str(self.client_cert), str(self.client_key))))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=timeout)

    def control(self, c: httpx.Client, method: str, path: str, **kw: object) -> dict:  # type: ignore[type-arg]
        r = c.request(method, f"/_sandbox/{path}", **kw)  # type: ignore[arg-type]
        r.raise_for_status()
        return r.json()

    def sign_h2h(self, body: bytes) -> dict[str, str]:
        from connectors.sandbox.pki import fingerprint

        return {"X-Signature": sign_detached(body, self.signing_key),
                "X-Signer": fingerprint(self.signing_cert)}


def write_config(folder: Path, **overrides: object) -> Path:
    text = SHIPPED.read_text(encoding="utf-8")
    head = {"clock": '"fake"', "control_api": "true", "settle_after_seconds": "60.0"}
    head.update({k: (json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool)
                     else str(v)) for k, v in overrides.items()})
    for key, value in head.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        text = "\n".join(lines)
        text = f"{key} = {value}\n" + text
    text = f'fake_clock_start = {FAKE_START.isoformat()}\n' + text
    path = folder / "sandbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def running_sandbox(tmp: Path, *, config: Path | None = None, expired_cert: bool = False,
                    env: dict[str, str] | None = None) -> Iterator[Server]:
    state = tmp / "bank-state"
    ensure_ca(state)
    client_cert, client_key = tmp / "client.pem", tmp / "client.key"
    signer_key, signer_cert = tmp / "signer.key", tmp / "signer.pem"
    if not client_cert.exists():  # a restarted bank keeps its customers' certificates
        issue_client_cert(state, "演示科技有限公司", client_cert, client_key)
        key, cert = signer_identity()
        signer_key.write_bytes(key)
        signer_cert.write_bytes(cert)
    key_pem, cert_pem = signer_key.read_bytes(), signer_cert.read_bytes()
    for bank in ("icbc", "cmb"):
        (state / "signers" / bank).mkdir(parents=True, exist_ok=True)
        (state / "signers" / bank / "enterprise.pem").write_bytes(cert_pem)
    config = config or write_config(tmp)
    if expired_cert:
        text = config.read_text().replace("expired_server_certificate = false",
                                          "expired_server_certificate = true")
        config.write_text(text)
    with serve(config, state, tmp, env=env, expired_cert=expired_cert) as (url, proc):
        yield Server(url, state, client_cert, client_key, key_pem, cert_pem, proc)


@contextmanager
def serve(config: Path, state: Path, tmp: Path, *, env: dict[str, str] | None = None,
          expired_cert: bool = False, port: int | None = None
          ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The sandbox bank as a server process on a free loopback port, stopped afterwards."""
    port = port or free_port()
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    proc_env.update(YINQI_HOME=str(tmp / "home"), **(env or {}))
    log = open(tmp / "server.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "yinqi", "sandbox-bank", "serve", "--config", str(config),
         "--port", str(port), "--state-dir", str(state)],
        env=proc_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_listening(proc, port, tmp / "server.log")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("sandbox did not listen within 60 s")


# --- an enterprise-side pain.001.001.09, written independently of the sandbox codec -------

NS09 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"


@dataclass(frozen=True)
class Tx:
    e2e: str
    amount: Decimal
    creditor_name: str
    creditor_account: str
    creditor_cnaps: str | None = None
    currency: str = "CNY"
    purpose: str = "货款"


def pain001(msg_id: str, debtor_account: str, txs: Sequence[Tx], *,
            execution: date = date(2026, 11, 24), batch_booking: bool = False,
            nb_of_txs: int | None = None) -> bytes:
    E = etree.SubElement
    doc = etree.Element(f"{{{NS09}}}Document", nsmap={None: NS09})
    root = E(doc, "CstmrCdtTrfInitn")
    hdr = E(root, "GrpHdr")
    E(hdr, "MsgId").text = msg_id
    E(hdr, "CreDtTm").text = "2026-11-24T09:00:00+08:00"
    E(hdr, "NbOfTxs").text = str(len(txs) if nb_of_txs is None else nb_of_txs)
    E(hdr, "CtrlSum").text = str(sum(t.amount for t in txs))
    E(E(hdr, "InitgPty"), "Nm").text = "演示科技有限公司"
    pmt = E(root, "PmtInf")
    E(pmt, "PmtInfId").text = f"{msg_id}-1"
    E(pmt, "PmtMtd").text = "TRF"
    E(pmt, "BtchBookg").text = "true" if batch_booking else "false"
    E(E(pmt, "ReqdExctnDt"), "Dt").text = execution.isoformat()
    E(E(pmt, "Dbtr"), "Nm").text = "演示科技有限公司"
    E(E(E(E(pmt, "DbtrAcct"), "Id"), "Othr"), "Id").text = debtor_account
    E(E(E(pmt, "DbtrAgt"), "FinInstnId"), "BICFI").text = "ICBKCNBJXXX"
    for t in txs:
        tx = E(pmt, "CdtTrfTxInf")
        E(E(tx, "PmtId"), "EndToEndId").text = t.e2e
        amt = E(E(tx, "Amt"), "InstdAmt", Ccy=t.currency)
        amt.text = str(t.amount)
        if t.creditor_cnaps:
            fin = E(E(tx, "CdtrAgt"), "FinInstnId")
            E(E(fin, "ClrSysMmbId"), "MmbId").text = t.creditor_cnaps
        E(E(tx, "Cdtr"), "Nm").text = t.creditor_name
        E(E(E(E(tx, "CdtrAcct"), "Id"), "Othr"), "Id").text = t.creditor_account
        E(E(tx, "RmtInf"), "Ustrd").text = t.purpose
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def signed(server: Server, document: bytes) -> bytes:
    return sign_envelope(document, server.signing_key, server.signing_cert)


def document_of(envelope: bytes) -> etree._Element:
    """The ISO Document inside the bank's signed envelope (tests check the signature apart)."""
    root = etree.fromstring(envelope)
    for el in root:
        if etree.QName(el).localname == "Document":
            return el
    raise AssertionError("no Document in the bank's answer")


def xpath(el: etree._Element, path: str) -> list:  # type: ignore[type-arg]
    ns = {"d": etree.QName(el).namespace}
    return el.xpath(path, namespaces=ns)


# Rules whose shipped action would hold the pipeline tests' own data: the same payee and
# amount in many tests, one payee name at two banks, a refused test account used on purpose.
# Those worlds test the pipeline, so these rules only alert there (as a company may choose);
# tests/integration/test_risk.py tests the holds and freezes themselves.
PIPELINE_ALERT_ONLY = ("duplicate_payment", "payee_account_changed", "repeated_failures",
                       "daily_total_per_payee", "split_payments")


def alert_only_risk_rules(config_dir: Path, rules: Sequence[str] = PIPELINE_ALERT_ONLY) -> Path:
    """Write ``config_dir/risk_rules.toml``: the shipped rules, ``rules`` set to alert."""
    import re

    from config.loader import DEFAULTS_DIR

    text = (DEFAULTS_DIR / "risk_rules.toml").read_text(encoding="utf-8")
    for rule in rules:
        section = re.compile(rf"(^\[{rule}\]\n(?:(?!^\[).*\n)*?)action = \"\w+\"", re.M)
        text, n = section.subn(r'\1action = "alert"', text)
        assert n == 1, f"risk_rules.toml has no [{rule}] action to relax"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "risk_rules.toml").write_text(text, encoding="utf-8")
    return config_dir
