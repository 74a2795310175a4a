"""The sandbox bank's ISO 20022 / MT940 codec: strict parsing in, schema-valid documents out.

Every XML the codec writes is checked here against the official XSD with a schema object of
the test's own, independent of ``iso.validate``, and read back with XPath.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from connectors.iso20022 import XSD_DIR
from connectors.sandbox import iso
from connectors.sandbox.records import (
    AccountStatement,
    Entry,
    EntryDetail,
    StatusReport,
    TransferStatus,
)
from yinqi.errors import MoneyError

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "iso20022"
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"real-world samples not present at {SAMPLES}"
)
CST = timezone(timedelta(hours=8))


@functools.cache
def official_schema(message_name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{message_name}.xsd")))


def assert_valid(data: bytes, message_name: str) -> etree._Element:
    """Check ``data`` against the official XSD and return its root."""
    root = etree.fromstring(data)
    schema = official_schema(message_name)
    assert schema.validate(root), schema.error_log
    assert data.startswith(b"<?xml")
    assert root.nsmap[None] == f"urn:iso:std:iso:20022:tech:xsd:{message_name}"
    return root


def xpath(root: etree._Element, path: str) -> list[str]:
    """Text of the nodes at ``path``; 'm:' is the message namespace."""
    found = root.xpath(path, namespaces={"m": root.nsmap[None]})
    assert isinstance(found, list)
    return [node if isinstance(node, str) else node.text for node in found]


# --- pain.001 fixtures --------------------------------------------------------------------------

PAIN001_V03 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>YQ-20261125-0001</MsgId>
      <CreDtTm>2026-11-25T09:30:00+08:00</CreDtTm>
      <NbOfTxs>2</NbOfTxs>
      <CtrlSum>12345.61</CtrlSum>
      <InitgPty><Nm>北京银启科技有限公司</Nm></InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>PMT-A</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <NbOfTxs>2</NbOfTxs>
      <PmtTpInf><InstrPrty>HIGH</InstrPrty></PmtTpInf>
      <ReqdExctnDt>2026-11-26</ReqdExctnDt>
      <Dbtr><Nm>北京银启科技有限公司</Nm></Dbtr>
      <DbtrAcct><Id><Othr><Id>110060149018000123456</Id></Othr></Id></DbtrAcct>
      <DbtrAgt><FinInstnId><BIC>BKCHCNBJ</BIC></FinInstnId></DbtrAgt>
      <CdtTrfTxInf>
        <PmtId><InstrId>INSTR-1</InstrId><EndToEndId>E2E-0001</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="CNY">12345.6</InstdAmt></Amt>
        <CdtrAgt>
          <FinInstnId>
            <ClrSysMmbId>
              <ClrSysId><Cd>CNAPS</Cd></ClrSysId><MmbId>102100099996</MmbId>
            </ClrSysMmbId>
          </FinInstnId>
        </CdtrAgt>
        <Cdtr><Nm>上海某某贸易有限公司</Nm></Cdtr>
        <CdtrAcct><Id><Othr><Id>6222020200012345678</Id></Othr></Id></CdtrAcct>
        <RmtInf><Ustrd>货款</Ustrd><Ustrd>2026年11月</Ustrd></RmtInf>
      </CdtTrfTxInf>
      <CdtTrfTxInf>
        <PmtId><EndToEndId>E2E-0002</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="CNY">0.01</InstdAmt></Amt>
        <CdtrAgt><FinInstnId><BIC>ICBKCNBJ</BIC></FinInstnId></CdtrAgt>
        <Cdtr><Nm>深圳某某电子有限公司</Nm></Cdtr>
        <CdtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></CdtrAcct>
      </CdtTrfTxInf>
    </PmtInf>
  </CstmrCdtTrfInitn>
</Document>
"""

PAIN001_V09 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>YQ-20261125-0002</MsgId>
      <CreDtTm>2026-11-25T10:00:00.250Z</CreDtTm>
      <NbOfTxs>3</NbOfTxs>
      <InitgPty><Id><OrgId><Othr><Id>91110000MA01ABCD2X</Id></Othr></OrgId></Id></InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>PMT-B1</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <BtchBookg>true</BtchBookg>
      <ReqdExctnDt><Dt>2026-11-27</Dt></ReqdExctnDt>
      <Dbtr><Nm>北京银启科技有限公司</Nm></Dbtr>
      <DbtrAcct><Id><Othr><Id>110060149018000123456</Id></Othr></Id></DbtrAcct>
      <DbtrAgt><FinInstnId><BICFI>BKCHCNBJ110</BICFI></FinInstnId></DbtrAgt>
      <CdtTrfTxInf>
        <PmtId><EndToEndId>E2E-1001</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="CNY">800.00</InstdAmt></Amt>
        <CdtrAgt>
          <FinInstnId><ClrSysMmbId><MmbId>308584000013</MmbId></ClrSysMmbId></FinInstnId>
        </CdtrAgt>
        <Cdtr><Nm>招商某某物流有限公司</Nm></Cdtr>
        <CdtrAcct><Id><Othr><Id>755912345610901</Id></Othr></Id></CdtrAcct>
        <RmtInf><Ustrd>运费</Ustrd></RmtInf>
      </CdtTrfTxInf>
      <CdtTrfTxInf>
        <PmtId><InstrId>I-1002</InstrId><EndToEndId>E2E-1002</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="JPY">1500</InstdAmt></Amt>
        <CdtrAgt>
          <FinInstnId>
            <BICFI>MHCBJPJT</BICFI>
            <ClrSysMmbId><ClrSysId><Cd>JPZGN</Cd></ClrSysId><MmbId>0001</MmbId></ClrSysMmbId>
          </FinInstnId>
        </CdtrAgt>
        <Cdtr><Nm>株式会社テスト</Nm></Cdtr>
        <CdtrAcct><Id><Othr><Id>1234567</Id></Othr></Id></CdtrAcct>
      </CdtTrfTxInf>
    </PmtInf>
    <PmtInf>
      <PmtInfId>PMT-B2</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <PmtTpInf><InstrPrty>NORM</InstrPrty></PmtTpInf>
      <ReqdExctnDt><DtTm>2026-11-28T10:00:00+08:00</DtTm></ReqdExctnDt>
      <Dbtr><Nm>北京银启科技有限公司</Nm></Dbtr>
      <DbtrAcct><Id><Othr><Id>110060149018000999999</Id></Othr></Id></DbtrAcct>
      <DbtrAgt><FinInstnId/></DbtrAgt>
      <CdtTrfTxInf>
        <PmtId><EndToEndId>E2E-2001</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="CNY">99999999.99</InstdAmt></Amt>
        <Cdtr><Nm>杭州某某网络技术有限公司</Nm></Cdtr>
        <CdtrAcct><Id><Othr><Id>33050161234500000123</Id></Othr></Id></CdtrAcct>
      </CdtTrfTxInf>
    </PmtInf>
  </CstmrCdtTrfInitn>
</Document>
"""


def v03(*replacements: tuple[str, str]) -> bytes:
    """The .03 fixture with each (old, new) replaced once; a missing ``old`` fails the test."""
    text = PAIN001_V03
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text.encode()


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def refused(data: bytes) -> iso.IsoError:
    with pytest.raises(iso.IsoError) as caught:
        iso.parse_pain001(data)
    assert "\n" not in str(caught.value)
    return caught.value


# --- pain.001 in --------------------------------------------------------------------------------


def test_fixtures_are_schema_valid() -> None:
    assert_valid(PAIN001_V03.encode(), "pain.001.001.03")
    assert_valid(PAIN001_V09.encode(), "pain.001.001.09")


def test_parse_v03_reads_every_field_exactly() -> None:
    order = iso.parse_pain001(PAIN001_V03.encode())

    assert order.version == "pain.001.001.03"
    assert order.msg_id == "YQ-20261125-0001"
    assert order.created_at == datetime(2026, 11, 25, 9, 30, tzinfo=CST)
    assert order.declared_count == 2
    assert order.declared_sum == Decimal("12345.61")
    assert order.initiating_party == "北京银启科技有限公司"
    (payment,) = order.payments
    assert payment.pmt_inf_id == "PMT-A"
    assert payment.debtor_name == "北京银启科技有限公司"
    assert payment.debtor_account == "110060149018000123456"
    assert payment.debtor_agent_bic == "BKCHCNBJ"
    assert payment.requested_execution_date == date(2026, 11, 26)
    assert payment.urgent is True
    assert payment.batch_booking is False
    first, second = payment.transfers
    assert first.instr_id == "INSTR-1"
    assert first.end_to_end_id == "E2E-0001"
    # Written as 12345.6; read at the currency's exact precision.
    assert first.amount == Decimal("12345.60") and str(first.amount) == "12345.60"
    assert isinstance(first.amount, Decimal)
    assert first.currency == "CNY"
    assert first.creditor_name == "上海某某贸易有限公司"
    assert first.creditor_account == "6222020200012345678"
    assert first.creditor_agent_cnaps == "102100099996"
    assert first.creditor_agent_bic is None
    assert first.remittance == "货款 2026年11月"
    assert second.instr_id is None
    assert str(second.amount) == "0.01"
    assert second.creditor_account == "DE89370400440532013000"
    assert second.creditor_agent_bic == "ICBKCNBJ"
    assert second.creditor_agent_cnaps is None
    assert second.remittance is None


def test_parse_v09_reads_the_new_shapes() -> None:
    order = iso.parse_pain001(PAIN001_V09.encode())

    assert order.version == "pain.001.001.09"
    assert order.created_at == datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=timezone.utc)
    assert order.declared_count == 3
    assert order.declared_sum is None
    assert order.initiating_party == "91110000MA01ABCD2X"  # identified by id alone
    first, second = order.payments
    assert first.requested_execution_date == date(2026, 11, 27)       # ReqdExctnDt/Dt
    assert second.requested_execution_date == date(2026, 11, 28)      # ReqdExctnDt/DtTm
    assert first.debtor_agent_bic == "BKCHCNBJ110"                    # BICFI
    assert second.debtor_agent_bic is None
    assert first.batch_booking is True and second.batch_booking is False
    assert first.urgent is False and second.urgent is False           # NORM is not urgent
    cny, jpy = first.transfers
    assert cny.creditor_agent_cnaps == "308584000013"   # no clearing system named: CNAPS
    assert cny.remittance == "运费"
    assert jpy.amount == Decimal("1500") and str(jpy.amount) == "1500"
    assert jpy.instr_id == "I-1002"
    assert jpy.creditor_agent_bic == "MHCBJPJT"
    assert jpy.creditor_agent_cnaps is None             # a Zengin code is no CNAPS code
    (big,) = second.transfers
    assert big.amount == Decimal("99999999.99")
    assert [t.end_to_end_id for t in order.transfers] == ["E2E-1001", "E2E-1002", "E2E-2001"]


def test_byte_order_mark_is_accepted() -> None:
    order = iso.parse_pain001(b"\xef\xbb\xbf" + PAIN001_V03.encode())
    assert order.msg_id == "YQ-20261125-0001"


@pytest.mark.parametrize("data", [b"", b"not xml at all", b"<Document>", "汇款".encode()])
def test_not_xml_is_ff01(data: bytes) -> None:
    error = refused(data)
    assert error.reason_code == "FF01"
    assert "not well-formed XML" in str(error)


@pytest.mark.parametrize("namespace", [
    "urn:iso:std:iso:20022:tech:xsd:pain.001.001.08",
    "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03",
    "http://www.six-interbank-clearing.com/de/pain.001.001.03.ch.02.xsd",
])
def test_wrong_namespace_is_unsupported(namespace: str) -> None:
    error = refused(v03(("urn:iso:std:iso:20022:tech:xsd:pain.001.001.03", namespace)))
    assert error.reason_code == "FF01"
    assert "unsupported" in str(error) and namespace in str(error)


def test_schema_violation_names_the_line() -> None:
    bad = '<InstdAmt Ccy="CNY">12,345.60</InstdAmt>'
    data = v03(('<InstdAmt Ccy="CNY">12345.6</InstdAmt>', bad))
    error = refused(data)
    assert error.reason_code == "FF01"
    assert str(error).startswith("pain.001.001.03: line ")
    assert f"line {line_of(data.decode(), bad)}:" in str(error)
    assert "InstdAmt" in str(error)


def test_missing_mandatory_element_is_ff01() -> None:
    error = refused(v03(("<MsgId>YQ-20261125-0001</MsgId>", "")))
    assert error.reason_code == "FF01"
    assert "CreDtTm" in str(error)


@pytest.mark.parametrize("count", ["1", "3"])
def test_group_count_mismatch_is_am18(count: str) -> None:
    data = v03(("<NbOfTxs>2</NbOfTxs>\n      <CtrlSum>",
                f"<NbOfTxs>{count}</NbOfTxs>\n      <CtrlSum>"))
    error = refused(data)
    assert error.reason_code == "AM18"
    line = line_of(data.decode(), f"<NbOfTxs>{count}</NbOfTxs>")
    assert f"GrpHdr/NbOfTxs at line {line} says {count} but 2 CdtTrfTxInf" in str(error)


def test_block_count_mismatch_is_am18() -> None:
    error = refused(v03(("<NbOfTxs>2</NbOfTxs>\n      <PmtTpInf>",
                         "<NbOfTxs>5</NbOfTxs>\n      <PmtTpInf>")))
    assert error.reason_code == "AM18"
    assert "PmtInf/NbOfTxs" in str(error)


@pytest.mark.parametrize("control_sum", ["12345.60", "12345.62", "1234.561"])
def test_control_sum_mismatch_is_am10(control_sum: str) -> None:
    error = refused(v03(("<CtrlSum>12345.61</CtrlSum>", f"<CtrlSum>{control_sum}</CtrlSum>")))
    assert error.reason_code == "AM10"
    assert f"GrpHdr/CtrlSum at line 8 says {control_sum}" in str(error)
    assert "add up to 12345.61" in str(error)


def test_control_sum_compares_numbers_not_text() -> None:
    order = iso.parse_pain001(v03(("<CtrlSum>12345.61</CtrlSum>", "<CtrlSum>12345.6100</CtrlSum>")))
    assert order.declared_sum == Decimal("12345.61")


def test_external_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    doctype = (f'<!DOCTYPE Document [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
               '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">')
    data = v03(('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">', doctype),
               ("<MsgId>YQ-20261125-0001</MsgId>", "<MsgId>&xxe;</MsgId>"))
    error = refused(data)
    assert error.reason_code == "FF01"
    assert "DOCTYPE" in str(error)
    assert "TOP-SECRET-MARKER" not in str(error)


def test_entity_expansion_bomb_is_refused() -> None:
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    data = v03(('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">',
                f'<!DOCTYPE Document [{entities}]>\n'
                '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">'),
               ("<MsgId>YQ-20261125-0001</MsgId>", "<MsgId>&i;</MsgId>"))
    assert refused(data).reason_code == "FF01"


@pytest.mark.parametrize(("old", "new", "code", "words"), [
    ('<InstdAmt Ccy="CNY">0.01</InstdAmt>', '<InstdAmt Ccy="XYZ">0.01</InstdAmt>',
     "AM03", "currency XYZ"),
    ('<InstdAmt Ccy="CNY">0.01</InstdAmt>', '<InstdAmt Ccy="CNY">0.001</InstdAmt>',
     "CH20", "3 decimals"),
    ('<InstdAmt Ccy="CNY">0.01</InstdAmt>',
     '<EqvtAmt><Amt Ccy="CNY">0.01</Amt><CcyOfTrf>USD</CcyOfTrf></EqvtAmt>', "CH17", "EqvtAmt"),
    ("<Cdtr><Nm>深圳某某电子有限公司</Nm></Cdtr>", "", "CH21", "Cdtr/Nm"),
    ("<CdtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></CdtrAcct>", "", "CH21",
     "CdtrAcct"),
    ("<PmtMtd>TRF</PmtMtd>", "<PmtMtd>CHK</PmtMtd>", "CH17", "PmtMtd CHK"),
    ("<InitgPty><Nm>北京银启科技有限公司</Nm></InitgPty>", "<InitgPty/>", "CH21", "InitgPty"),
    ("<CreDtTm>2026-11-25T09:30:00+08:00</CreDtTm>", "<CreDtTm>2026-11-25T24:00:00</CreDtTm>",
     "DT01", "CreDtTm"),
])
def test_transactions_the_bank_cannot_carry_are_refused(old: str, new: str, code: str,
                                                         words: str) -> None:
    # The control sum covers the amount, so keep it right for the amount cases.
    fixes = [("<CtrlSum>12345.61</CtrlSum>", "<CtrlSum>12345.601</CtrlSum>")] if (
        "0.001" in new) else []
    error = refused(v03((old, new), *fixes))
    assert error.reason_code == code
    assert words in str(error)


def test_bank_parses_what_a_precision_check_passes() -> None:
    order = iso.parse_pain001(v03(('<InstdAmt Ccy="CNY">0.01</InstdAmt>',
                                   '<InstdAmt Ccy="CNY">0.01000</InstdAmt>')))
    assert str(order.transfers[1].amount) == "0.01"


def test_validate_helper_accepts_bytes_and_elements() -> None:
    iso.validate(PAIN001_V03.encode(), "pain.001.001.03")
    iso.validate(etree.fromstring(PAIN001_V09.encode()), "pain.001.001.09")
    with pytest.raises(iso.IsoError) as caught:
        iso.validate(PAIN001_V03.encode(), "pain.001.001.09")
    assert caught.value.reason_code == "FF01"
    assert str(caught.value).startswith("pain.001.001.09: line 2: ")


# --- pain.002 out -------------------------------------------------------------------------------

LONG_TEXT = "账户名称与账号不符，请核对收款人户名。" * 8   # 152 characters: two AddtlInf


def status_report(original: str = "pain.001.001.09") -> StatusReport:
    return StatusReport(
        msg_id="STS-0001",
        created_at=datetime(2026, 11, 25, 10, 5, tzinfo=CST),
        original_msg_id="YQ-20261125-0002",
        original_msg_name=original,
        group_status="PART",
        group_reason_code="NARR",
        group_reason_text="部分成功",
        transfers=(
            TransferStatus("E2E-1001", None, "ACSC", pmt_inf_id="PMT-B1"),
            TransferStatus("E2E-1002", "I-1002", "RJCT", "AC04", LONG_TEXT, pmt_inf_id="PMT-B1"),
            TransferStatus("E2E-2001", None, "PDNG", pmt_inf_id="PMT-B2"),
            TransferStatus("E2E-9999", "I-9", "ACSP"),  # the bank no longer knows its block
        ),
    )


@pytest.mark.parametrize(("version", "original"), [("pain.002.001.10", "pain.001.001.09"),
                                                   ("pain.002.001.03", "pain.001.001.03")])
def test_pain002_round_trip(version: str, original: str) -> None:
    root = assert_valid(iso.build_pain002(status_report(original), version), version)

    assert xpath(root, "//m:GrpHdr/m:MsgId") == ["STS-0001"]
    assert xpath(root, "//m:GrpHdr/m:CreDtTm") == ["2026-11-25T10:05:00+08:00"]
    group = "/m:Document/m:CstmrPmtStsRpt/m:OrgnlGrpInfAndSts"
    assert xpath(root, f"{group}/m:OrgnlMsgId") == ["YQ-20261125-0002"]
    assert xpath(root, f"{group}/m:OrgnlMsgNmId") == [original]
    assert xpath(root, f"{group}/m:GrpSts") == ["PART"]
    assert xpath(root, f"{group}/m:StsRsnInf/m:Rsn/m:Cd") == ["NARR"]
    assert xpath(root, f"{group}/m:StsRsnInf/m:AddtlInf") == ["部分成功"]
    blocks = "/m:Document/m:CstmrPmtStsRpt/m:OrgnlPmtInfAndSts"
    assert xpath(root, f"{blocks}/m:OrgnlPmtInfId") == ["PMT-B1", "PMT-B2", "NOTPROVIDED"]
    tx = f"{blocks}/m:TxInfAndSts"
    assert xpath(root, f"{tx}/m:OrgnlEndToEndId") == ["E2E-1001", "E2E-1002", "E2E-2001",
                                                      "E2E-9999"]
    assert xpath(root, f"{tx}/m:TxSts") == ["ACSC", "RJCT", "PDNG", "ACSP"]
    assert xpath(root, f"{tx}/m:OrgnlInstrId") == ["I-1002", "I-9"]
    assert xpath(root, f"{tx}/m:StsRsnInf/m:Rsn/m:Cd") == ["AC04"]
    chunks = xpath(root, f"{tx}/m:StsRsnInf/m:AddtlInf")
    assert len(chunks) == 2 and all(len(c) <= 105 for c in chunks)
    assert "".join(chunks) == LONG_TEXT


def test_pain002_group_only_rejection() -> None:
    report = StatusReport(msg_id="NAK-1", created_at=datetime(2026, 11, 25, 10, 5),
                          original_msg_id="YQ-1", original_msg_name="pain.001.001.03",
                          group_status="RJCT", group_reason_code="AM18",
                          group_reason_text="GrpHdr/NbOfTxs at line 7 says 3 but 2 follow")
    root = assert_valid(iso.build_pain002(report, "pain.002.001.03"), "pain.002.001.03")
    assert xpath(root, "//m:GrpSts") == ["RJCT"]
    assert xpath(root, "//m:Rsn/m:Cd") == ["AM18"]
    assert xpath(root, "//m:OrgnlPmtInfAndSts") == []


def test_pain002_without_group_status() -> None:
    report = replace(status_report(), group_status=None, group_reason_code=None,
                     group_reason_text=None)
    root = assert_valid(iso.build_pain002(report, "pain.002.001.10"), "pain.002.001.10")
    assert xpath(root, "//m:GrpSts") == []
    assert xpath(root, "//m:OrgnlGrpInfAndSts/m:StsRsnInf") == []


@pytest.mark.parametrize("version", ["pain.002.001.03", "pain.002.001.10"])
@pytest.mark.parametrize("status", ["ACTC", "ACSP", "ACSC", "RJCT", "PDNG"])
def test_pain002_every_transaction_status_validates(version: str, status: str) -> None:
    report = replace(status_report(), group_status=status if status != "PDNG" else "PART",
                     transfers=(TransferStatus("E2E-1", None, status, pmt_inf_id="P"),))
    root = assert_valid(iso.build_pain002(report, version), version)
    assert xpath(root, "//m:TxSts") == [status]


def test_pain002_output_is_checked_against_the_schema() -> None:
    # .03's TxSts code list has no PART: the gate refuses to send it.
    report = replace(status_report(), transfers=(TransferStatus("E2E-1", None, "PART"),))
    with pytest.raises(iso.IsoError) as caught:
        iso.build_pain002(report, "pain.002.001.03")
    assert caught.value.reason_code == "FF01"
    assert "pain.002.001.03: line " in str(caught.value) and "TxSts" in str(caught.value)


def test_pain002_unknown_version() -> None:
    with pytest.raises(ValueError, match="pain.002.001.11"):
        iso.build_pain002(status_report(), "pain.002.001.11")


# --- camt out -----------------------------------------------------------------------------------

DAY = date(2026, 11, 25)
OWNER = "北京银启科技有限公司"


def statement(**changes: object) -> AccountStatement:
    batch = Entry(
        amount=Decimal("600.00"), currency="CNY", credit=False, booking_date=DAY,
        value_date=DAY, bank_reference="B0000000000000001", kind="transfer",
        details=tuple(
            EntryDetail(f"E2E-B{i}", Decimal(f"{i}00"), "CNY", f"收款人{i}号有限公司",
                        f"62220202000123456{i}", f"批量代发 第{i}笔")
            for i in (1, 2, 3)
        ),
    )
    reversal = Entry(
        amount=Decimal("200"), currency="CNY", credit=True, booking_date=DAY,
        value_date=DAY, bank_reference="B0000000000000002", reversal=True,
        details=(EntryDetail("E2E-R1", Decimal("200"), "CNY", "退回收款人", "6222000011112222",
                             "退汇"),),
    )
    fee = Entry(amount=Decimal("15"), currency="CNY", credit=False, booking_date=DAY,
                value_date=DAY, bank_reference="B0000000000000003", kind="fee")
    incoming = Entry(
        amount=Decimal("5000"), currency="CNY", credit=True, booking_date=DAY,
        value_date=date(2026, 11, 26), bank_reference="B0000000000000004",
        details=(EntryDetail("IN-7788", Decimal("5000"), "CNY", "深圳某某公司",
                             "4000023009200123456", "货款 INV-2026-11"),),
    )
    returned = Entry(amount=Decimal("300.00"), currency="CNY", credit=True, booking_date=DAY,
                     value_date=DAY, bank_reference="B0000000000000005", kind="return",
                     details=(EntryDetail("E2E-B3", Decimal("300.00"), "CNY", "收款人3号有限公司",
                                          "622202020001234563"),))
    values: dict[str, object] = dict(
        statement_id="BKCH-6222020200012345678-20261125", electronic_sequence=42,
        created_at=datetime(2026, 11, 25, 23, 59, 59, tzinfo=CST),
        from_time=datetime(2026, 11, 25, 0, 0, tzinfo=CST),
        to_time=datetime(2026, 11, 25, 23, 59, 59, tzinfo=CST),
        account="6222020200012345678", currency="CNY", owner_name=OWNER,
        servicer_bic="BKCHCNBJ110",
        opening_balance=Decimal("-1500.5"), closing_balance=Decimal("3384.50"),
        opening_date=DAY, closing_date=DAY,
        entries=(batch, reversal, fee, incoming, returned),
    )
    values.update(changes)
    return AccountStatement(**values)  # type: ignore[arg-type]


def test_statement_fixture_adds_up() -> None:
    stmt = statement()
    moved = sum((e.amount if e.credit else -e.amount for e in stmt.entries), Decimal(0))
    assert stmt.opening_balance is not None
    assert stmt.opening_balance + moved == stmt.closing_balance


def test_camt053_round_trip() -> None:
    root = assert_valid(iso.build_camt053(statement()), "camt.053.001.08")
    stmt = "/m:Document/m:BkToCstmrStmt/m:Stmt"

    assert xpath(root, "//m:GrpHdr/m:MsgId") == ["BKCH-6222020200012345678-20261125"]
    assert xpath(root, f"{stmt}/m:Id") == ["BKCH-6222020200012345678-20261125"]
    assert xpath(root, f"{stmt}/m:ElctrncSeqNb") == ["42"]
    assert xpath(root, f"{stmt}/m:FrToDt/m:FrDtTm") == ["2026-11-25T00:00:00+08:00"]
    assert xpath(root, f"{stmt}/m:FrToDt/m:ToDtTm") == ["2026-11-25T23:59:59+08:00"]
    assert xpath(root, f"{stmt}/m:Acct/m:Id/m:Othr/m:Id") == ["6222020200012345678"]
    assert xpath(root, f"{stmt}/m:Acct/m:Ccy") == ["CNY"]
    assert xpath(root, f"{stmt}/m:Acct/m:Ownr/m:Nm") == [OWNER]
    assert xpath(root, f"{stmt}/m:Acct/m:Svcr/m:FinInstnId/m:BICFI") == ["BKCHCNBJ110"]
    # The debit opening balance: a magnitude with DBIT, at the currency's two decimals.
    assert xpath(root, f"{stmt}/m:Bal/m:Tp/m:CdOrPrtry/m:Cd") == ["OPBD", "CLBD"]
    assert xpath(root, f"{stmt}/m:Bal/m:Amt") == ["1500.50", "3384.50"]
    assert xpath(root, f"{stmt}/m:Bal/m:Amt/@Ccy") == ["CNY", "CNY"]
    assert xpath(root, f"{stmt}/m:Bal/m:CdtDbtInd") == ["DBIT", "CRDT"]
    assert xpath(root, f"{stmt}/m:Bal/m:Dt/m:Dt") == ["2026-11-25", "2026-11-25"]

    ntry = f"{stmt}/m:Ntry"
    assert xpath(root, f"{ntry}/m:Amt") == ["600.00", "200.00", "15.00", "5000.00", "300.00"]
    assert xpath(root, f"{ntry}/m:CdtDbtInd") == ["DBIT", "CRDT", "DBIT", "CRDT", "CRDT"]
    assert xpath(root, f"{ntry}/m:Sts/m:Cd") == ["BOOK"] * 5
    assert xpath(root, f"{ntry}/m:ValDt/m:Dt")[3] == "2026-11-26"
    assert xpath(root, f"{ntry}/m:AcctSvcrRef") == [f"B000000000000000{i}" for i in range(1, 6)]
    assert xpath(root, f"{ntry}[m:RvslInd='true']/m:AcctSvcrRef") == ["B0000000000000002"]
    codes = [
        "/".join(xpath(e, "m:BkTxCd/m:Domn/m:Cd | m:BkTxCd/m:Domn/m:Fmly/m:Cd "
                          "| m:BkTxCd/m:Domn/m:Fmly/m:SubFmlyCd"))
        for e in root.xpath(ntry, namespaces={"m": root.nsmap[None]})
    ]
    # The reversal (2nd) undoes an outgoing transfer, so it carries that transfer's ICDT code.
    assert codes == ["PMNT/ICDT/DMCT", "PMNT/ICDT/DMCT", "ACMT/MDOP/CHRG", "PMNT/RCDT/DMCT",
                     "PMNT/ICDT/RRTN"]


def test_camt053_batch_booking_has_one_detail_per_payment() -> None:
    root = assert_valid(iso.build_camt053(statement()), "camt.053.001.08")
    batch = "//m:Ntry[m:AcctSvcrRef='B0000000000000001']/m:NtryDtls"

    assert xpath(root, f"{batch}/m:Btch/m:NbOfTxs") == ["3"]
    assert xpath(root, f"{batch}/m:TxDtls/m:Refs/m:EndToEndId") == ["E2E-B1", "E2E-B2", "E2E-B3"]
    amounts = xpath(root, f"{batch}/m:TxDtls/m:Amt")
    assert amounts == ["100.00", "200.00", "300.00"]
    assert sum(map(Decimal, amounts)) == Decimal(xpath(root, f"{batch}/../m:Amt")[0])
    assert xpath(root, f"{batch}/m:TxDtls/m:CdtDbtInd") == ["DBIT"] * 3
    # Money out: the counterparty is the creditor.
    assert xpath(root, f"{batch}/m:TxDtls/m:RltdPties/m:Cdtr/m:Pty/m:Nm") == [
        "收款人1号有限公司", "收款人2号有限公司", "收款人3号有限公司"]
    assert xpath(root, f"{batch}/m:TxDtls/m:RltdPties/m:CdtrAcct/m:Id/m:Othr/m:Id")[0] == (
        "622202020001234561")
    assert xpath(root, f"{batch}/m:TxDtls/m:RmtInf/m:Ustrd")[1] == "批量代发 第2笔"


def test_camt053_single_payments_and_counterparty_roles() -> None:
    root = assert_valid(iso.build_camt053(statement()), "camt.053.001.08")

    def entry(ref: str) -> str:
        return f"//m:Ntry[m:AcctSvcrRef='{ref}']/m:NtryDtls"

    incoming = entry("B0000000000000004")
    assert xpath(root, f"{incoming}/m:Btch") == []
    assert xpath(root, f"{incoming}/m:TxDtls/m:Refs/m:EndToEndId") == ["IN-7788"]
    assert xpath(root, f"{incoming}/m:TxDtls/m:RltdPties/m:Dbtr/m:Pty/m:Nm") == ["深圳某某公司"]
    assert xpath(root, f"{incoming}/m:TxDtls/m:RltdPties/m:DbtrAcct/m:Id/m:Othr/m:Id") == [
        "4000023009200123456"]
    assert xpath(root, f"{incoming}/m:TxDtls/m:RmtInf/m:Ustrd") == ["货款 INV-2026-11"]
    # A reversal or a return credits money back: the counterparty stays the original creditor.
    for ref in ("B0000000000000002", "B0000000000000005"):
        assert xpath(root, f"{entry(ref)}/m:TxDtls/m:RltdPties/m:Cdtr/m:Pty/m:Nm")
        assert xpath(root, f"{entry(ref)}/m:TxDtls/m:RltdPties/m:Dbtr") == []
    assert xpath(root, "//m:Ntry[m:AcctSvcrRef='B0000000000000003']/m:NtryDtls") == []


def test_camt053_summary() -> None:
    root = assert_valid(iso.build_camt053(statement()), "camt.053.001.08")
    summary = "//m:TxsSummry"
    assert xpath(root, f"{summary}/m:TtlNtries/m:NbOfNtries") == ["5"]
    assert xpath(root, f"{summary}/m:TtlNtries/m:Sum") == ["6115.00"]
    assert xpath(root, f"{summary}/m:TtlNtries/m:TtlNetNtry/m:Amt") == ["4885.00"]
    assert xpath(root, f"{summary}/m:TtlNtries/m:TtlNetNtry/m:CdtDbtInd") == ["CRDT"]
    assert xpath(root, f"{summary}/m:TtlCdtNtries/m:Sum") == ["5500.00"]
    assert xpath(root, f"{summary}/m:TtlDbtNtries/m:NbOfNtries") == ["2"]
    assert xpath(root, f"{summary}/m:TtlDbtNtries/m:Sum") == ["615.00"]


def test_camt052_reports_interim_balance() -> None:
    root = assert_valid(iso.build_camt052(statement()), "camt.052.001.08")
    rpt = "/m:Document/m:BkToCstmrAcctRpt/m:Rpt"
    assert xpath(root, f"{rpt}/m:Bal/m:Tp/m:CdOrPrtry/m:Cd") == ["OPBD", "ITBD"]
    assert xpath(root, f"{rpt}/m:Bal/m:CdtDbtInd") == ["DBIT", "CRDT"]
    assert len(xpath(root, f"{rpt}/m:Ntry")) == 5


def test_camt052_without_balances() -> None:
    stmt = statement(opening_balance=None, closing_balance=None, entries=())
    root = assert_valid(iso.build_camt052(stmt), "camt.052.001.08")
    assert xpath(root, "//m:Bal") == [] and xpath(root, "//m:TxsSummry") == []


def test_camt054_has_entries_but_no_balances() -> None:
    root = assert_valid(iso.build_camt054(statement()), "camt.054.001.08")
    ntfctn = "/m:Document/m:BkToCstmrDbtCdtNtfctn/m:Ntfctn"
    assert xpath(root, f"{ntfctn}/m:Id") == ["BKCH-6222020200012345678-20261125"]
    assert xpath(root, "//m:Bal") == []
    assert xpath(root, f"{ntfctn}/m:Ntry/m:Amt") == ["600.00", "200.00", "15.00", "5000.00",
                                                     "300.00"]


def test_camt053_needs_both_balances() -> None:
    with pytest.raises(ValueError, match="opening and the closing balance"):
        iso.build_camt053(statement(opening_balance=None))


def test_camt_amounts_take_the_currency_decimals() -> None:
    entry = Entry(amount=Decimal("1500"), currency="JPY", credit=True, booking_date=DAY,
                  value_date=DAY, bank_reference="J1")
    stmt = statement(currency="JPY", opening_balance=Decimal("0"), closing_balance=Decimal("1500"),
                     entries=(entry,))
    root = assert_valid(iso.build_camt053(stmt), "camt.053.001.08")
    assert xpath(root, "//m:Bal/m:Amt") == ["0", "1500"]
    assert xpath(root, "//m:Ntry/m:Amt") == ["1500"]
    assert xpath(root, "//m:Ntry/m:Amt/@Ccy") == ["JPY"]


@pytest.mark.parametrize(("change", "error"), [
    ({"amount": Decimal("-5")}, ValueError),
    ({"kind": "interest"}, ValueError),
    ({"currency": "USD"}, ValueError),
    ({"amount": Decimal("1.001")}, MoneyError),
])
def test_camt_refuses_entries_it_cannot_write(change: dict[str, object],
                                              error: type[Exception]) -> None:
    entry = replace(statement().entries[2], **change)  # type: ignore[arg-type]
    with pytest.raises(error):
        iso.build_camt053(statement(entries=(entry,)))


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=400))
def test_camt_carries_any_remittance_text_exactly(remittance: str) -> None:
    detail = EntryDetail("E2E-X", Decimal("1"), "CNY", remittance=remittance)
    entry = Entry(Decimal("1"), "CNY", True, DAY, DAY, "X1", details=(detail,))
    root = assert_valid(iso.build_camt054(statement(entries=(entry,))), "camt.054.001.08")
    lines = xpath(root, "//m:Ustrd")
    assert all(len(line) <= 140 for line in lines)
    assert "".join(lines) == remittance


# --- MT940 out ----------------------------------------------------------------------------------


def mt940_statement() -> AccountStatement:
    incoming = Entry(
        amount=Decimal("5000"), currency="CNY", credit=True, booking_date=DAY, value_date=DAY,
        bank_reference="B1234567890ABCDEF",
        details=(EntryDetail("IN-7788", Decimal("5000"), "CNY", "深圳某某公司",
                             "4000023009200123456", "Invoice 2026/11 Café"),),
    )
    fee = Entry(amount=Decimal("15.00"), currency="CNY", credit=False, booking_date=DAY,
                value_date=DAY, bank_reference="F0001", kind="fee")
    reversal = Entry(
        amount=Decimal("200.00"), currency="CNY", credit=True, booking_date=date(2026, 11, 26),
        value_date=DAY, bank_reference="R0001", reversal=True,
        details=(EntryDetail("E2E-0002-TOO-LONG-FOR-MT", Decimal("200"), "CNY",
                             remittance="refund"),),
    )
    return statement(statement_id="STMT-20261125", opening_balance=Decimal("-1500.50"),
                     closing_balance=Decimal("3684.50"), entries=(incoming, fee, reversal))


def test_mt940_exact_text() -> None:
    expected = (
        ":20:STMT-20261125\r\n"
        ":25:6222020200012345678\r\n"
        ":28C:00042/00001\r\n"
        ":60F:D261125CNY1500,50\r\n"
        ":61:2611251125C5000,00NTRFIN-7788//1234567890ABCDEF\r\n"
        ":86:Invoice 2026/11 Cafe / ?????? / 4000023009200123456\r\n"
        ":61:2611251125D15,00NCHGNONREF//F0001\r\n"
        ":61:2611251126RD200,00NTRFNONREF//R0001\r\n"
        ":86:refund\r\n"
        ":62F:C261125CNY3684,50\r\n"
        "-\r\n"
    )
    assert iso.build_mt940(mt940_statement()).decode("ascii") == expected


def test_mt940_lines_end_in_crlf_only() -> None:
    text = iso.build_mt940(statement())
    assert text.endswith(b"\r\n")
    assert text.count(b"\n") == text.count(b"\r\n") == text.count(b"\r")


def test_mt940_reversal_of_a_credit_is_rc() -> None:
    entry = Entry(Decimal("10"), "CNY", False, DAY, DAY, "R2", reversal=True)
    stmt = statement(opening_balance=Decimal("10"), closing_balance=Decimal("0"), entries=(entry,))
    assert b":61:2611251125RC10,00NTRFNONREF//R2\r\n" in iso.build_mt940(stmt)


def test_mt940_batch_and_return_entries() -> None:
    text = iso.build_mt940(statement()).decode("ascii")
    assert ":20:2345678-20261125\r\n" in text  # a long statement id keeps its tail
    assert ":61:2611251125D600,00NTRFNONREF//0000000000000001\r\n" in text
    assert ":61:2611251125C300,00NRTIE2E-B3//0000000000000005\r\n" in text
    assert ":60F:D261125CNY1500,50\r\n" in text and ":62F:C261125CNY3384,50\r\n" in text


def test_mt940_amount_without_decimals_keeps_its_comma() -> None:
    entry = Entry(Decimal("1500"), "JPY", True, DAY, DAY, "J1")
    stmt = statement(currency="JPY", opening_balance=Decimal("0"), closing_balance=Decimal("1500"),
                     entries=(entry,))
    text = iso.build_mt940(stmt).decode("ascii")
    assert ":60F:C261125JPY0,\r\n" in text
    assert ":61:2611251125C1500,NTRFNONREF//J1\r\n" in text


def test_mt940_needs_balances_and_a_five_digit_sequence() -> None:
    with pytest.raises(ValueError, match="closing balance"):
        iso.build_mt940(statement(closing_balance=None))
    with pytest.raises(ValueError, match="28C"):
        iso.build_mt940(statement(electronic_sequence=100000))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=600))
def test_mt940_information_stays_in_bounds(remittance: str) -> None:
    detail = EntryDetail("E2E-X", Decimal("1"), "CNY", "上海某某公司", "62220001", remittance)
    entry = Entry(Decimal("1"), "CNY", True, DAY, DAY, "X1", details=(detail,))
    stmt = statement(opening_balance=Decimal("0"), closing_balance=Decimal("1"), entries=(entry,))
    lines = iso.build_mt940(stmt).decode("ascii").split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(":86:"))
    end = next(i for i, line in enumerate(lines) if line.startswith(":62F:"))
    information = [lines[start][4:], *lines[start + 1:end]]
    assert 1 <= len(information) <= 6
    assert all(len(line) <= 65 for line in information)
    assert not any(line.startswith((":", "-")) for line in information[1:])


# --- real-world samples -------------------------------------------------------------------------


@needs_samples
def test_swiss_variant_is_refused_as_unsupported() -> None:
    error = refused((SAMPLES / "musterfile_pain.001_Nov2020.xml").read_bytes())
    assert error.reason_code == "FF01"
    assert "unsupported" in str(error)


@needs_samples
@pytest.mark.parametrize(("name", "msg_id", "amount", "currency", "creditor"), [
    ("International_payment_RUB_naujas_1.xml", "MSGID0003", "1000.00", "RUB", "COMPANY Z"),
    ("International_payment_USD_naujas_1.xml", "MSGID0002", "111.11", "USD", "COMPANY Z"),
    ("sepa_payment_naujas_1.xml", "MSGID0001", "99.99", "EUR", "IMONE Z"),
])
def test_lithuanian_pain001_samples_validate_and_parse(name: str, msg_id: str, amount: str,
                                                      currency: str, creditor: str) -> None:
    data = (SAMPLES / name).read_bytes()
    assert official_schema("pain.001.001.03").validate(etree.fromstring(data))
    order = iso.parse_pain001(data)
    assert order.version == "pain.001.001.03"
    assert order.msg_id == msg_id
    assert order.initiating_party == "IMONE X"
    (transfer,) = order.transfers
    assert transfer.amount == Decimal(amount) and transfer.currency == currency
    assert transfer.creditor_name == creditor


@needs_samples
def test_rub_sample_clearing_code_is_not_taken_for_cnaps() -> None:
    data = (SAMPLES / "International_payment_RUB_naujas_1.xml").read_bytes()
    (transfer,) = iso.parse_pain001(data).transfers
    assert transfer.creditor_agent_cnaps is None  # RUCBC, a Russian BIK
    assert transfer.creditor_account == "1234567890"
