"""The pain.002 status-report parser against real bank files, the sandbox bank and edge cases.

Expected values were read off each XML file by hand, not taken from the parser. The real files
are copies (tests/fixtures/iso20022/samples) of /work/shared/samples/iso20022.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.iso20022 import FormatError, ParsedStatusReports, parse_pain002
from connectors.sandbox import iso as sandbox_iso
from connectors.sandbox.records import StatusReport as SandboxReport
from connectors.sandbox.records import TransferStatus
from yinqi.bankdata import StatusReport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "iso20022"
SAMPLES = FIXTURES / "samples"
EDGE = FIXTURES / "edge"
SHARED_SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "iso20022"
needs_shared_samples = pytest.mark.skipif(
    not SHARED_SAMPLES.is_dir(), reason=f"real-world samples not present at {SHARED_SAMPLES}"
)
SWISS = "pain.002.001.03.ch.02"
SWISS_LENIENT = f"read leniently: no official schema shipped for {SWISS}"


def sample(name: str) -> ParsedStatusReports:
    return parse_pain002((SAMPLES / name).read_bytes(), name)


PAIN002_EXPECTED: dict[str, ParsedStatusReports] = {
    # PostFinance accepts a direct-debit block: the status is on the block only.
    "pain002-chdd-cor1_p_ch2909000000250094239_1110097483_0_2018031317221082.xml":
        ParsedStatusReports(
            reports=[StatusReport("MsgId-CHDD-Musterfile", None),
                     StatusReport("MsgId-CHDD-Musterfile", "ACCP")],
            message_name=SWISS, msg_id="20180313375204216308259", warnings=(SWISS_LENIENT,)),
    "pain002-epo_p_0_0_0_2018031510491259.xml": ParsedStatusReports(
        reports=[StatusReport("MsgId-001", "ACTC")],
        message_name=SWISS, msg_id="20180315375204222821684", warnings=(SWISS_LENIENT,)),
    "pain002-epo_p_0_0_0_2018032614401842.xml": ParsedStatusReports(
        reports=[StatusReport("MsgId-005", "RJCT", reason_code="AM10",
                              reason_text="904114;ControlSum fehlerhaft")],
        message_name=SWISS, msg_id="20180326375204011685776", warnings=(SWISS_LENIENT,)),
    # The block is rejected for its own reason (NARR) and its one payment for another (AC01).
    "pain002-epo_p_ch2909000000250094239_1109800799_0_2018032612092784.xml": ParsedStatusReports(
        reports=[
            StatusReport("MsgId-006", None),
            StatusReport("MsgId-006", "RJCT", reason_code="NARR",
                         reason_text="1297193;Sammelauftrag ohne ausführbaren Einzelauftrag"),
            StatusReport("MsgId-006", "RJCT", end_to_end_id="EndToEndId-006-01-01",
                         tx_status="RJCT", reason_code="AC01",
                         reason_text="1301813;Konto ungültig"),
        ],
        message_name=SWISS, msg_id="20180326375204011678275", warnings=(SWISS_LENIENT,)),
    "pain002-epo_p_ch5109000000250092291_1110097605_0_2018031511252307.xml": ParsedStatusReports(
        reports=[
            StatusReport("MsgId-001", None),
            StatusReport("MsgId-001", "PART"),
            StatusReport("MsgId-001", "PART", end_to_end_id="EndToEndId-001-03-04",
                         tx_status="RJCT", reason_code="AC01",
                         reason_text="1301813;Konto ungültig"),
        ],
        message_name=SWISS, msg_id="20180315375204222822452", warnings=(SWISS_LENIENT,)),
    "pain002p-rejected.xml": ParsedStatusReports(
        reports=[
            StatusReport("2017/1013", None),
            StatusReport("2017/1013", "RJCT"),
            StatusReport("2017/1013", "RJCT", end_to_end_id="Ltest", tx_status="RJCT",
                         reason_code="AC01", reason_text="1080407;Payment rejected."),
        ],
        message_name=SWISS, msg_id="KOBE170515813733", warnings=(SWISS_LENIENT,)),
    # Four rejected direct debits in two blocks that carry no status of their own; valid .03.
    "test-sepa-pain-unpaid.xml": ParsedStatusReports(
        reports=[
            StatusReport("MSGID12345678912", None),
            StatusReport("MSGID12345678912", None, end_to_end_id="E2EID1", tx_status="RJCT",
                         reason_code="AC01", reason_text="ACC NUMBER INVALID"),
            StatusReport("MSGID12345678912", None, end_to_end_id="E2EID2", tx_status="RJCT",
                         reason_code="MS02"),
            StatusReport("MSGID12345678912", None, end_to_end_id="E2EID3", tx_status="RJCT",
                         reason_code="MD06"),
            StatusReport("MSGID12345678912", None, end_to_end_id="E2EID4", tx_status="RJCT",
                         reason_code="AM04"),
        ],
        message_name="pain.002.001.03", msg_id="MSGID99345678912", warnings=()),
    "valid_pain_v11.xml": ParsedStatusReports(
        reports=[StatusReport("OrgnlMsgId", None)],
        message_name="pain.002.001.11", msg_id="MsgId",
        warnings=("read leniently: no official schema shipped for pain.002.001.11",)),
}


@pytest.mark.parametrize("name", sorted(PAIN002_EXPECTED))
def test_sample_reports_as_the_file_states_them(name: str) -> None:
    assert sample(name) == PAIN002_EXPECTED[name]


@pytest.mark.parametrize("name", ["statement_1.xml", "valid_camt_v09.xml", "test-camt054.xml"])
def test_other_messages_are_refused(name: str) -> None:
    with pytest.raises(FormatError) as caught:
        sample(name)
    assert caught.value.where == "Document"
    assert caught.value.problem.endswith("is not a pain.002 message")


# --- the shared samples folder ------------------------------------------------------------------


def shared_sample_names() -> list[str]:
    return sorted(p.name for p in SHARED_SAMPLES.iterdir()) if SHARED_SAMPLES.is_dir() else []


@needs_shared_samples
def test_every_pain002_sample_has_expected_values() -> None:
    pain002 = {name for name in shared_sample_names()
               if b"pain.002" in (SHARED_SAMPLES / name).read_bytes()[:2000]}
    assert pain002 == set(PAIN002_EXPECTED)


@needs_shared_samples
@pytest.mark.parametrize("name", shared_sample_names())
def test_every_sample_parses_or_is_refused_in_one_line(name: str) -> None:
    try:
        parsed = parse_pain002((SHARED_SAMPLES / name).read_bytes(), name)
    except FormatError as exc:
        assert name not in PAIN002_EXPECTED
        assert "\n" not in str(exc) and str(exc).startswith(f"{name}: ")
    else:
        assert name in PAIN002_EXPECTED
        assert all("\n" not in w for w in parsed.warnings)


# --- hand-written ------------------------------------------------------------------------------


def test_statuses_at_every_level() -> None:
    parsed = parse_pain002((EDGE / "pain002_v10_statuses.xml").read_bytes(), "edge.xml")
    assert (parsed.message_name, parsed.msg_id) == ("pain.002.001.10", "STS-EDGE-10")
    assert parsed.reports == [
        StatusReport("YQ-BATCH-42", "PART", reason_text="Some payments were rejected"),
        StatusReport("YQ-BATCH-42", "ACSC"),
        # No TxSts: the block's ACSC is the status that covers this payment.
        StatusReport("YQ-BATCH-42", "ACSC", end_to_end_id="E2E-1"),
        StatusReport("YQ-BATCH-42", "ACSC", end_to_end_id="E2E-2", tx_status="ACSC",
                     bank_reference="BANKREF-2"),
        StatusReport("YQ-BATCH-42", "PART", end_to_end_id="E2E-3", tx_status="RJCT",
                     reason_code="AC04", reason_text="account closed"),
        StatusReport("YQ-BATCH-42", "PART", end_to_end_id=None, tx_status="RJCT",
                     reason_code="X99"),
    ]
    assert parsed.warnings == (
        "OrgnlPmtInfAndSts[2]/TxInfAndSts[1]: 2 reason codes (AC04, AM04); reporting the first",)


def pain002(body: str, version: str = "10") -> bytes:
    return (f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.{version}">'
            f"<CstmrPmtStsRpt><GrpHdr><MsgId>R-1</MsgId>"
            f"<CreDtTm>2024-03-01T10:00:00</CreDtTm></GrpHdr>{body}</CstmrPmtStsRpt>"
            "</Document>").encode()


GROUP = "<OrgnlGrpInfAndSts><OrgnlMsgId>O-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09"\
        "</OrgnlMsgNmId><GrpSts>RJCT</GrpSts></OrgnlGrpInfAndSts>"


def test_minimal_valid_report() -> None:
    parsed = parse_pain002(pain002(GROUP))
    assert parsed == ParsedStatusReports([StatusReport("O-1", "RJCT")], "pain.002.001.10",
                                         "R-1", ())


@pytest.mark.parametrize(("data", "where", "problem"), [
    (b"<Document", "line 1", "not well-formed XML"),
    (pain002(""), "CstmrPmtStsRpt/OrgnlGrpInfAndSts",
     "a status report answers one original message; found 0"),
    (pain002(GROUP.replace("<OrgnlMsgId>O-1</OrgnlMsgId>", "")), "OrgnlGrpInfAndSts/OrgnlMsgId",
     "missing"),
    (pain002(GROUP).replace(b"<MsgId>R-1</MsgId>", b""), "GrpHdr/MsgId", "missing"),
    (pain002(GROUP, "12"), "Document",
     "pain.002.001.12 is not supported (versions .03 to .11 are)"),
    (pain002(GROUP, "02"), "Document", "pain.002.001.02 is not supported"),
    (pain002(GROUP).replace(b"CstmrPmtStsRpt", b"CstmrCdtTrfInitn"), "Document",
     "holds one CstmrPmtStsRpt, this one holds CstmrCdtTrfInitn"),
    (b"<SignedEnvelope>" + pain002(GROUP) + b"</SignedEnvelope>", "SignedEnvelope",
     "not an ISO 20022 Document"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://evil.example/">]>'
     + pain002(GROUP.replace("O-1", "&e;")), "line 1", "a DOCTYPE is not allowed"),
])
def test_what_is_not_a_status_report_is_refused(data: bytes, where: str, problem: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_pain002(data, "r.xml")
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"r.xml: {where}: ") and "\n" not in str(caught.value)


def test_schema_failure_is_read_leniently_and_said() -> None:
    parsed = parse_pain002(pain002(GROUP.replace("<GrpSts>RJCT</GrpSts>",
                                                 "<GrpSts>TOOLONG</GrpSts>")))
    assert parsed.reports == [StatusReport("O-1", "TOOLONG")]
    [warning] = parsed.warnings
    assert warning.startswith("read leniently: not valid against pain.002.001.10.xsd (line 1: ")
    assert "GrpSts" in warning


# --- what the sandbox bank sends ----------------------------------------------------------------


CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize("version", ["pain.002.001.03", "pain.002.001.10"])
def test_sandbox_status_report_reads_back(version: str) -> None:
    long_reason = "账户已销户，" + "请核对收款人账号后重新发起支付 " * 8
    report = SandboxReport(
        msg_id="STS-1A2B3C", created_at=datetime(2026, 11, 25, 10, 0, tzinfo=CST),
        original_msg_id="YQ-20261125-0001", original_msg_name="pain.001.001.09",
        group_status="PART", group_reason_code=None, group_reason_text=None,
        transfers=(
            TransferStatus("E2E-1", "I-1", "ACSC", pmt_inf_id="PMT-A"),
            TransferStatus("E2E-2", None, "RJCT", "AC04", long_reason, pmt_inf_id="PMT-A"),
            TransferStatus("E2E-3", "I-3", "RJCT", "AM04", "余额不足"),
        ),
    )
    data = sandbox_iso.build_pain002(report, version)
    parsed = parse_pain002(data, "sandbox")
    assert (parsed.message_name, parsed.msg_id, parsed.warnings) == (version, "STS-1A2B3C", ())
    # The sandbox cuts long reasons into 105-character AddtlInf lines; they run on again.
    assert parsed.reports == [
        StatusReport("YQ-20261125-0001", "PART"),
        StatusReport("YQ-20261125-0001", "PART", end_to_end_id="E2E-1", tx_status="ACSC"),
        StatusReport("YQ-20261125-0001", "PART", end_to_end_id="E2E-2", tx_status="RJCT",
                     reason_code="AC04", reason_text=long_reason.strip()),
        StatusReport("YQ-20261125-0001", "PART", end_to_end_id="E2E-3", tx_status="RJCT",
                     reason_code="AM04", reason_text="余额不足"),
    ]
