"""The sandbox bank as a client meets it: a server process, real TLS sockets, client certs."""

from __future__ import annotations

import json
import ssl
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from lxml import etree

from connectors.iso20022 import XSD_DIR
from connectors.sandbox.pki import fingerprint, issue_foreign_client_cert
from connectors.sandbox.signing import open_envelope, verify_detached
from sandbox_support import (
    Server,
    Tx,
    pain001,
    running_sandbox,
    signed,
    write_config,
    xpath,
)

NS09 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
DEBTOR = "1202021209900123456"
ICBC = "102100099996"
OTHER_BANK = "105290036005"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as server:
        yield server


def bank_cert(server: Server) -> bytes:
    return (server.state / "bank-signing.pem").read_bytes()


def verified(server: Server, envelope: bytes) -> etree._Element:
    """Check the bank's signature, then return the ISO Document it signed."""
    cert = bank_cert(server)
    opened = open_envelope(envelope, {fingerprint(cert): cert})
    return etree.fromstring(opened.document)


def schema_valid(doc: etree._Element, name: str) -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD_DIR / f"{name}.xsd")))
    assert schema.validate(doc), schema.error_log


def statuses(doc: etree._Element) -> dict[str, tuple[str, str | None]]:
    out = {}
    for tx in xpath(doc, "//d:TxInfAndSts"):
        e2e = xpath(tx, "d:OrgnlEndToEndId/text()")[0]
        code = xpath(tx, "d:StsRsnInf/d:Rsn/d:Cd/text()")
        out[e2e] = (xpath(tx, "d:TxSts/text()")[0], code[0] if code else None)
    return out


def bank_day(c: httpx.Client) -> str:
    """The bank's business date now (its clock is a fake one that tests move)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.fromisoformat(c.get("/health").json()["time"])
    return now.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


def close_the_day(server: Server, c: httpx.Client) -> None:
    server.control(c, "POST", "clock", json={"advance_seconds": 86_400})


def send(server: Server, c: httpx.Client, body: bytes, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    return c.post("/banks/icbc/iso/pain.001", content=signed(server, body), **kw)


# --- the channel ---------------------------------------------------------------------------


def test_client_certificate_is_required(bank: Server, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(bank.state / "ca.pem"))
    with httpx.Client(base_url=bank.url, verify=ctx, timeout=5) as anonymous:
        with pytest.raises(httpx.HTTPError):
            anonymous.get("/health")
    foreign = issue_foreign_client_cert(tmp_path)
    with pytest.raises(httpx.HTTPError):
        with bank.client(cert=(str(foreign[0]), str(foreign[1]))) as c:
            c.get("/health")
    with bank.client() as c:
        assert c.get("/health").json()["banks"] == ["cmb", "icbc"]


def test_an_expired_server_certificate_is_refused_by_the_client(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, expired_cert=True) as server:
        with pytest.raises(httpx.ConnectError, match="(?i)certificate.*expired|expired"):
            with server.client(timeout=5) as c:
                c.get("/health")


# --- ISO 20022: payment orders ----------------------------------------------------------------


def test_a_payment_order_is_checked_rule_by_rule(bank: Server) -> None:
    txs = [
        Tx("R-OK-INTERNAL", Decimal("1000.00"), "北京华信科技股份有限公司", "6829597379400215148", ICBC),
        Tx("R-OK-EXTERNAL", Decimal("2500.50"), "杨磊", "49505976717236739", OTHER_BANK),
        Tx("R-UNKNOWN", Decimal("10.00"), "无此人", "1111222233334444", ICBC),
        Tx("R-CLOSED", Decimal("10.00"), "已销户", "9999000011112222", ICBC),
        Tx("R-BLACKLIST", Decimal("10.00"), "黑名单", "6222000000000000000", OTHER_BANK),
        Tx("R-LIMIT", Decimal("20000000.01"), "杨磊", "49505976717236739", OTHER_BANK),
        Tx("R-USD", Decimal("10.00"), "杨磊", "49505976717236739", OTHER_BANK, currency="USD"),
    ]
    with bank.client() as c:
        r = send(bank, c, pain001("MSG-RULES-1", DEBTOR, txs))
    assert r.status_code == 200
    doc = verified(bank, r.content)
    schema_valid(doc, "pain.002.001.10")
    assert xpath(doc, "//d:OrgnlGrpInfAndSts/d:GrpSts/text()") == ["PART"]
    assert statuses(doc) == {
        "R-OK-INTERNAL": ("ACSP", None), "R-OK-EXTERNAL": ("ACSP", None),
        "R-UNKNOWN": ("RJCT", "AC01"), "R-CLOSED": ("RJCT", "AC04"),
        "R-BLACKLIST": ("RJCT", "RR04"), "R-LIMIT": ("RJCT", "AM02"),
        "R-USD": ("RJCT", "AM03"),
    }


def test_insufficient_funds(bank: Server) -> None:
    with bank.client() as c:
        r = send(bank, c, pain001("MSG-AM04", "1202021209900654321",
                                  [Tx("R-AM04", Decimal("31000000.01"), "杨磊",
                                      "49505976717236739", OTHER_BANK)]))
    assert statuses(verified(bank, r.content)) == {"R-AM04": ("RJCT", "AM04")}


def test_the_same_message_gets_the_same_answer_and_is_never_booked_twice(bank: Server) -> None:
    body = signed(bank, pain001("MSG-IDEM-1", DEBTOR, [
        Tx("IDEM-1", Decimal("77.00"), "杨磊", "49505976717236739", OTHER_BANK)]))
    with bank.client() as c:
        before = c.get("/_sandbox/ledger").json()["bookings"]
        first = c.post("/banks/icbc/iso/pain.001", content=body)
        again = c.post("/banks/icbc/iso/pain.001", content=body)
        after = c.get("/_sandbox/ledger").json()["bookings"]
        # The same end-to-end ID inside a new message is a duplicate.
        other = send(bank, c, pain001("MSG-IDEM-2", DEBTOR, [
            Tx("IDEM-1", Decimal("77.00"), "杨磊", "49505976717236739", OTHER_BANK)]))
    assert first.content == again.content and again.headers["x-replayed"] == "true"
    assert after == before + 1
    assert statuses(verified(bank, other.content)) == {"IDEM-1": ("RJCT", "DUPL")}


@pytest.mark.parametrize(
    ("case", "code"),
    [("tampered", "DS0B"), ("unsigned", "DS0A"), ("unknown_signer", "DS0E"),
     ("schema", "FF01"), ("count", "AM18")],
)
def test_a_bad_message_is_refused_whole_with_the_right_reason(bank: Server, case: str, code: str) -> None:
    from sandbox_support import signer_identity
    from connectors.sandbox.signing import sign_envelope

    doc = pain001(f"MSG-BAD-{case}", DEBTOR,
                  [Tx(f"BAD-{case}", Decimal("5.00"), "杨磊", "49505976717236739", OTHER_BANK)],
                  nb_of_txs=2 if case == "count" else None)
    if case == "schema":
        doc = doc.replace(b"<PmtMtd>TRF</PmtMtd>", b"<PmtMtd>XXX</PmtMtd>")
    body = signed(bank, doc)
    if case == "tampered":
        body = body.replace(b">5.00<", b">5000.00<")
    elif case == "unsigned":
        body = (b'<SignedMessage xmlns="urn:yinqi:sandbox:envelope:1">'
                + doc.split(b"?>", 1)[1] + b"</SignedMessage>")
    elif case == "unknown_signer":
        key, cert = signer_identity()
        body = sign_envelope(doc, key, cert)
    with bank.client() as c:
        r = c.post("/banks/icbc/iso/pain.001", content=body)
        status = c.get(f"/banks/icbc/iso/pain.002/MSG-BAD-{case}")
    assert r.status_code == 422
    answer = verified(bank, r.content)
    assert xpath(answer, "//d:OrgnlGrpInfAndSts/d:GrpSts/text()") == ["RJCT"]
    assert xpath(answer, "//d:OrgnlGrpInfAndSts/d:StsRsnInf/d:Rsn/d:Cd/text()") == [code]
    assert status.status_code == 404, "a refused message must not count as received"


def test_settlement_follows_the_bank_clock_and_statements_add_up(bank: Server) -> None:
    with bank.client() as c:
        day = bank_day(c)
        r = send(bank, c, pain001("MSG-SETTLE", DEBTOR, [
            Tx("S-1", Decimal("100.00"), "杨磊", "49505976717236739", OTHER_BANK),
            Tx("S-2", Decimal("200.00"), "北京华信科技股份有限公司", "6829597379400215148", ICBC),
        ], batch_booking=True))
        assert set(statuses(verified(bank, r.content)).values()) == {("ACSP", None)}
        before = verified(bank, c.get("/banks/icbc/iso/pain.002/MSG-SETTLE").content)
        assert set(statuses(before).values()) == {("ACSP", None)}
        bank.control(c, "POST", "clock", json={"advance_seconds": 120})
        after = verified(bank, c.get("/banks/icbc/iso/pain.002/MSG-SETTLE").content)
        schema_valid(after, "pain.002.001.10")
        assert set(statuses(after).values()) == {("ACSC", None)}
        not_yet = c.get("/banks/icbc/iso/camt.053", params={"account": DEBTOR, "date": day})
        assert not_yet.status_code == 404 and "after it closes" in not_yet.text
        close_the_day(bank, c)
        stmt = verified(bank, c.get("/banks/icbc/iso/camt.053",
                                    params={"account": DEBTOR, "date": day}).content)
        again = verified(bank, c.get("/banks/icbc/iso/camt.053",
                                     params={"account": DEBTOR, "date": day}).content)
        mt940 = c.get("/banks/icbc/iso/mt940", params={"account": DEBTOR, "date": day})
        ledger = c.get("/_sandbox/ledger").json()
    schema_valid(stmt, "camt.053.001.08")
    assert xpath(stmt, "//d:ElctrncSeqNb/text()") == xpath(again, "//d:ElctrncSeqNb/text()")
    opening = Decimal(xpath(stmt, "//d:Bal[d:Tp/d:CdOrPrtry/d:Cd='OPBD']/d:Amt/text()")[0])
    closing = Decimal(xpath(stmt, "//d:Bal[d:Tp/d:CdOrPrtry/d:Cd='CLBD']/d:Amt/text()")[0])
    moves = sum((Decimal(e.xpath("string(d:Amt)", namespaces={"d": etree.QName(stmt).namespace}))
                 * (1 if xpath(e, "d:CdtDbtInd/text()")[0] == "CRDT" else -1))
                for e in xpath(stmt, "//d:Ntry"))
    assert opening + moves == closing
    batch = [e for e in xpath(stmt, "//d:Ntry") if len(xpath(e, ".//d:TxDtls")) == 2]
    assert len(batch) == 1, "the batch-booked block must be one debit entry with two details"
    assert Decimal(xpath(batch[0], "d:Amt/text()")[0]) == Decimal("300.00")
    fees = [e for e in xpath(stmt, "//d:Ntry") if xpath(e, ".//d:SubFmlyCd/text()") == ["CHRG"]
            or "CHRG" in "".join(xpath(e, ".//d:Cd/text()"))]
    assert fees, "a fee for the payment to another bank must be booked"
    assert mt940.status_code == 200 and ":60F:" in mt940.text and "\r\n" in mt940.text
    verify_detached(mt940.content, mt940.headers["x-signature"], bank_cert(bank))
    assert ledger["balanced"] and ledger["payments_booked_twice"] == 0


def test_status_of_an_unknown_message_is_404(bank: Server) -> None:
    with bank.client() as c:
        assert c.get("/banks/icbc/iso/pain.002/NEVER-SENT").status_code == 404


# --- faults --------------------------------------------------------------------------------


def test_injected_faults(bank: Server) -> None:
    tx = [Tx("F-1", Decimal("1.00"), "杨磊", "49505976717236739", OTHER_BANK)]
    with bank.client(timeout=3) as c:
        r = send(bank, c, pain001("MSG-F-MAINT", DEBTOR, tx),
                 headers={"X-Sandbox-Fault": "maintenance"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        r = send(bank, c, pain001("MSG-F-5XX", DEBTOR, tx), headers={"X-Sandbox-Fault": "http_5xx"})
        assert r.status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            send(bank, c, pain001("MSG-F-RESET", DEBTOR, tx), headers={"X-Sandbox-Fault": "reset"})
        for msg in ("MSG-F-MAINT", "MSG-F-5XX", "MSG-F-RESET"):
            assert c.get(f"/banks/icbc/iso/pain.002/{msg}").status_code == 404
    lost = signed(bank, pain001("MSG-F-LOST", DEBTOR, tx))
    with bank.client(timeout=1) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post("/banks/icbc/iso/pain.001", content=lost,
                   headers={"X-Sandbox-Fault": "timeout_after_booking"})
    with bank.client() as c:
        # The answer was lost, but the bank booked it: asking tells, resending replays.
        assert statuses(verified(bank, c.get("/banks/icbc/iso/pain.002/MSG-F-LOST").content)) \
            == {"F-1": ("ACSP", None)}
        replay = c.post("/banks/icbc/iso/pain.001", content=lost)
        assert replay.headers["x-replayed"] == "true"
        dup = verified(bank, c.get("/banks/icbc/iso/pain.002/MSG-F-LOST",
                                   headers={"X-Sandbox-Fault": "duplicate_status"}).content)
        assert len(xpath(dup, "//d:TxInfAndSts")) == 2
        assert c.get("/_sandbox/ledger").json()["payments_booked_twice"] == 0


# --- the Chinese direct-connect dialect -----------------------------------------------------


def h2h(server: Server, c: httpx.Client, path: str, payload: dict) -> httpx.Response:  # type: ignore[type-arg]
    body = json.dumps(payload, ensure_ascii=False).encode()
    return c.post(f"/banks/cmb/h2h/{path}", content=body, headers=server.sign_h2h(body))


def answer(server: Server, r: httpx.Response) -> dict:  # type: ignore[type-arg]
    verify_detached(r.content, r.headers["x-signature"], bank_cert(server))
    return r.json()


def test_direct_connect_transfer_query_and_idempotency(bank: Server) -> None:
    item = {"业务参考号": "CMB-0001", "付款账号": "755912345610808", "付款户名": "演示科技有限公司",
            "收款账号": "49505976717236739", "收款户名": "杨磊", "收款行名": "中国建设银行上海浦东分行",
            "联行号": OTHER_BANK, "金额": "41728.21", "币种": "CNY", "用途": "11月工资", "加急": "否"}
    with bank.client() as c:
        day = bank_day(c)
        first = answer(bank, h2h(bank, c, "transfer", item))
        assert first["结果"][0]["状态"] == "BNK"
        booked = c.get("/_sandbox/ledger").json()["bookings"]
        # Same 业务参考号 in a batch: the original result, no second booking.
        batch = answer(bank, h2h(bank, c, "transfer", {"批次号": "B-1", "明细": [
            item, {**item, "业务参考号": "CMB-0002", "收款账号": "6222000000000000000"}]}))
        assert [r["业务参考号"] for r in batch["结果"]] == ["CMB-0001", "CMB-0002"]
        assert batch["结果"][0]["银行流水号"] == first["结果"][0]["银行流水号"]
        assert batch["结果"][1]["结果"] == "F" and batch["结果"][1]["错误码"] == "RR04"
        assert c.get("/_sandbox/ledger").json()["bookings"] == booked
        bank.control(c, "POST", "clock", json={"advance_seconds": 120})
        q = answer(bank, h2h(bank, c, "query", {"业务参考号": ["CMB-0001", "CMB-0002", "NOPE"]}))
        assert [(r["状态"], r["结果"], r["错误码"]) for r in q["结果"]] == [
            ("FIN", "S", ""), ("FIN", "F", "RR04"), ("", "", "NOTFOUND")]
        close_the_day(bank, c)
        stmt = answer(bank, c.get("/banks/cmb/h2h/statement",
                                  params={"account": "755912345610808", "date": day}))
        bal = answer(bank, c.get("/banks/cmb/h2h/balance", params={"account": "755912345610808"}))
    doc = stmt["对账单"][0]
    total = sum(Decimal(l["金额"]) * (1 if l["借贷标志"] == "贷" else -1) for l in doc["明细"])
    assert Decimal(doc["期初余额"]) + total == Decimal(doc["期末余额"])
    assert Decimal(bal["余额"]) <= Decimal(doc["期末余额"])  # later days' charges may follow
    assert "CMB-0001" in {l["业务参考号"] for l in doc["明细"]}


def test_direct_connect_refuses_unsigned_and_malformed_requests(bank: Server) -> None:
    with bank.client() as c:
        unsigned = c.post("/banks/cmb/h2h/transfer", content=b"{}")
        assert unsigned.status_code == 401 and answer(bank, unsigned)["错误码"] == "DS0E"
        bad = h2h(bank, c, "transfer", {"业务参考号": "X-1", "付款账号": "755912345610808"})
        assert bad.status_code == 422 and "收款账号" in answer(bank, bad)["错误信息"]


# --- receipts -----------------------------------------------------------------------------------


def test_receipts_are_signed_and_verifiable(bank: Server) -> None:
    with bank.client() as c:
        send(bank, c, pain001("MSG-RCPT", DEBTOR, [
            Tx("RCPT-1", Decimal("41728.21"), "杨磊", "49505976717236739", OTHER_BANK)]))
        assert c.get("/banks/icbc/receipts/RCPT-1").status_code == 404  # not settled yet
        bank.control(c, "POST", "clock", json={"advance_seconds": 120})
        r = c.get("/banks/icbc/receipts/RCPT-1")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        verify_detached(r.content, r.headers["x-signature"], bank_cert(bank))
        ok = answer(bank, c.post("/banks/icbc/receipts/verify", json={
            "bank_reference": r.headers["x-bank-reference"],
            "verification_code": r.headers["x-verification-code"]}))
        forged = answer(bank, c.post("/banks/icbc/receipts/verify", json={
            "bank_reference": r.headers["x-bank-reference"], "verification_code": "AAAA"}))
    assert ok["valid"] is True and forged["valid"] is False


def test_echo_authenticates_the_signer(bank: Server) -> None:
    with bank.client() as c:
        body = "连通性测试".encode()
        ok = c.post("/banks/icbc/echo", content=body, headers=bank.sign_h2h(body))
        bad = c.post("/banks/icbc/echo", content=body)
    assert answer(bank, ok)["echo"] == "连通性测试"
    assert bad.status_code == 401 and answer(bank, bad)["reason_code"] == "DS0E"


def test_a_restarted_bank_remembers_everything(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    body: bytes
    with running_sandbox(tmp_path, config=config) as server:
        body = signed(server, pain001("MSG-RESTART", DEBTOR, [
            Tx("RS-1", Decimal("9.99"), "杨磊", "49505976717236739", OTHER_BANK)]))
        with server.client() as c:
            first = c.post("/banks/icbc/iso/pain.001", content=body).content
    with running_sandbox(tmp_path, config=config) as server:
        with server.client() as c:
            again = c.post("/banks/icbc/iso/pain.001", content=body)
            assert c.get("/banks/icbc/iso/pain.002/MSG-RESTART").status_code == 200
    assert again.content == first and again.headers["x-replayed"] == "true"


def test_intraday_report_and_notifications_validate(bank: Server) -> None:
    with bank.client() as c:
        day = bank_day(c)
        send(bank, c, pain001("MSG-INTRADAY", DEBTOR, [
            Tx("ID-1", Decimal("12.34"), "杨磊", "49505976717236739", OTHER_BANK)]))
        camt052 = verified(bank, c.get("/banks/icbc/iso/camt.052",
                                       params={"account": DEBTOR}).content)
        camt054 = verified(bank, c.get("/banks/icbc/iso/camt.054",
                                       params={"account": DEBTOR, "date": day}).content)
        unknown = c.get("/banks/icbc/iso/camt.053", params={"account": "123456789"})
        bad_date = c.get("/banks/icbc/iso/camt.053", params={"account": DEBTOR, "date": "24.11"})
        far = c.get("/banks/icbc/iso/camt.053", params={"account": DEBTOR, "date": "9999-12-31"})
        wrong_kind = c.get("/banks/icbc/iso/pain.001", params={"account": DEBTOR})
        wrong_dialect = c.get("/banks/cmb/iso/camt.053", params={"account": "755912345610808"})
    schema_valid(camt052, "camt.052.001.08")
    schema_valid(camt054, "camt.054.001.08")
    assert "ID-1" in xpath(camt052, "//d:EndToEndId/text()")
    assert "ID-1" in xpath(camt054, "//d:EndToEndId/text()")
    assert xpath(camt054, "//d:Bal") == []
    assert unknown.status_code == 404 and bad_date.status_code == 400 and far.status_code == 400
    assert wrong_kind.status_code == 404
    assert wrong_dialect.status_code == 404 and "speaks cn-h2h" in wrong_dialect.text


NS03 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"


def test_pain_001_001_03_is_answered_in_pain_002_001_03(bank: Server) -> None:
    doc = pain001("MSG-V03", DEBTOR, [
        Tx("V03-1", Decimal("3.00"), "杨磊", "49505976717236739", OTHER_BANK)])
    tree = etree.fromstring(doc)
    # The same order in the older version: other namespace, BIC instead of BICFI, plain date.
    for el in tree.iter():
        el.tag = el.tag.replace(NS09, NS03)
        if el.tag.endswith("}BICFI"):
            el.tag = f"{{{NS03}}}BIC"
    when = tree.find(f".//{{{NS03}}}ReqdExctnDt")
    when.text = when[0].text
    when.remove(when[0])
    etree.cleanup_namespaces(tree, top_nsmap={None: NS03})
    body = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    schema_valid(etree.fromstring(body), "pain.001.001.03")
    with bank.client() as c:
        r = c.post("/banks/icbc/iso/pain.001", content=signed(bank, body))
    answer = verified(bank, r.content)
    schema_valid(answer, "pain.002.001.03")
    assert statuses(answer) == {"V03-1": ("ACSP", None)}
    assert xpath(answer, "//d:OrgnlPmtInfAndSts/d:OrgnlPmtInfId/text()") == ["MSG-V03-1"]


def test_direct_connect_keys_are_final_and_separate(bank: Server) -> None:
    item = {"业务参考号": "CMB-K1", "付款账号": "755912345610808", "收款账号": "6222000000000000000",
            "收款户名": "黑名单", "联行号": OTHER_BANK, "金额": "1.00"}
    with bank.client() as c:
        refused = answer(bank, h2h(bank, c, "transfer", item))["结果"][0]
        # The same reference, now to a valid payee: still the original refusal, never booked.
        retry = answer(bank, h2h(bank, c, "transfer", {**item, "收款账号": "49505976717236739"}))
        batch = {"批次号": "CMB-KB", "明细": [{**item, "业务参考号": "CMB-K2",
                                              "收款账号": "49505976717236739"}]}
        first = answer(bank, h2h(bank, c, "transfer", batch))
        changed = h2h(bank, c, "transfer", {"批次号": "CMB-KB", "明细": [
            {**item, "业务参考号": "CMB-K3", "收款账号": "49505976717236739"}]})
        # A direct-connect reference that equals an ISO message ID is another key altogether.
        iso_named = answer(bank, h2h(bank, c, "transfer", {
            **item, "业务参考号": "MSG-RULES-1", "收款账号": "49505976717236739"}))
        booked = {p["end_to_end_id"] for p in c.get("/_sandbox/payments/cmb").json()}
    assert (refused["结果"], refused["错误码"]) == ("F", "RR04")
    assert (retry["结果"][0]["结果"], retry["结果"][0]["错误码"]) == ("F", "RR04")
    assert first["结果"][0]["状态"] in ("BNK", "NTE")
    assert changed.status_code == 409 and answer(bank, changed)["错误码"] == "DUPL"
    assert iso_named["结果"][0]["状态"] in ("BNK", "NTE")
    assert "CMB-K1" not in booked and "CMB-K3" not in booked and "CMB-K2" in booked


def test_control_endpoints_answer_bad_input_with_400(bank: Server) -> None:
    with bank.client() as c:
        assert c.post("/_sandbox/clock", content=b"not json").status_code == 400
        assert c.post("/_sandbox/clock", json={"advance_seconds": "abc"}).status_code == 400
        assert c.post("/_sandbox/clock", json={"advance_seconds": -5}).status_code == 400
        assert c.put("/_sandbox/faults", json={"reset_rate": 7}).status_code == 400
        assert c.post("/_sandbox/signers/icbc", content=b"hello").status_code == 400
        assert c.get("/banks/nope/iso/camt.053").status_code == 404
