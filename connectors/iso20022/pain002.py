"""Reading pain.002 customer payment status reports, versions .03 to .11 and the Swiss
pain.002.001.03.ch.02 variant, as real banks and the sandbox bank send them (the bare Document).

Reports come out in file order:

* one per original group (OrgnlGrpInfAndSts): ``group_status`` is GrpSts, no end-to-end id;
* one per payment-information block (OrgnlPmtInfAndSts) that carries a status or a reason of
  its own (PmtInfSts, StsRsnInf): ``group_status`` is PmtInfSts, no end-to-end id. It is the
  status of every payment in that block, which is all the bank may say about them;
* one per transaction (TxInfAndSts): ``tx_status`` is TxSts and ``group_status`` the status of
  its block, else of the group, so a transaction without a TxSts still has the status that
  covers it.

A report without an end-to-end id therefore speaks for a whole group or block of payments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from connectors.iso20022.camt import (
    FormatError,
    end_to_end,
    find,
    find_all,
    join_lines,
    leniency_warning,
    local_name,
    parse_xml,
    text_at,
)
from yinqi.bankdata import StatusReport

_ISO_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:pain\.002\.001\.(\d{2})", re.ASCII)
_SIX_NAMESPACE = re.compile(
    r"http://www\.six-interbank-clearing\.com/de/pain\.002\.001\.(\d{2})(\.ch\.\d{2})\.xsd",
    re.ASCII,
)
# .11 reads like .10 for every element used here; later versions are refused until checked.
_VERSIONS = range(3, 12)
_ADDTL_INF_WIDTH = 105  # StsRsnInf/AddtlInf is Max105Text


@dataclass(frozen=True, slots=True)
class ParsedStatusReports:
    """The reports in file order, and what had to be read leniently (one line each)."""

    reports: list[StatusReport]
    message_name: str  # e.g. "pain.002.001.10" or "pain.002.001.03.ch.02"
    msg_id: str  # the status report's own GrpHdr/MsgId
    warnings: tuple[str, ...]


def parse_pain002(data: bytes, source: str = "<bytes>") -> ParsedStatusReports:
    """Read one status report; ``source`` (a file name) opens every FormatError's message."""
    root = parse_xml(data, source)
    message_name = _message_name(root, source)
    body = _body(root, source, message_name)
    warnings = [w for w in (leniency_warning(root, message_name),) if w]
    msg_id = _required(body, "GrpHdr/MsgId", "", source)
    groups = find_all(body, "OrgnlGrpInfAndSts")
    if len(groups) != 1:
        raise FormatError(source, "CstmrPmtStsRpt/OrgnlGrpInfAndSts",
                          f"a status report answers one original message; found {len(groups)}")
    group = groups[0]
    original = _required(group, "OrgnlMsgId", "OrgnlGrpInfAndSts/", source)
    group_status = text_at(group, "GrpSts")
    reports = [_report(original, group_status, group, "OrgnlGrpInfAndSts", warnings)]
    for i, block in enumerate(find_all(body, "OrgnlPmtInfAndSts"), 1):
        reports += _block_reports(original, group_status, block, f"OrgnlPmtInfAndSts[{i}]",
                                  warnings)
    return ParsedStatusReports(reports, message_name, msg_id, tuple(warnings))


def _message_name(root: etree._Element, source: str) -> str:
    qname = etree.QName(root)
    if qname.localname != "Document":
        raise FormatError(source, qname.localname,
                          f"the root element is {qname.localname}, not an ISO 20022 Document")
    namespace = qname.namespace or ""
    six = _SIX_NAMESPACE.fullmatch(namespace)
    match = _ISO_NAMESPACE.fullmatch(namespace) or six
    if match is None:
        raise FormatError(source, "Document", f"namespace {namespace!r} is not a pain.002 message")
    version = match.group(1)
    if int(version) not in _VERSIONS:
        raise FormatError(source, "Document",
                          f"pain.002.001.{version} is not supported (versions .03 to .11 are)")
    return f"pain.002.001.{version}{six.group(2) if six else ''}"


def _body(root: etree._Element, source: str, message_name: str) -> etree._Element:
    children = list(root)
    if len(children) != 1 or local_name(children[0]) != "CstmrPmtStsRpt":
        found = ", ".join(local_name(c) for c in children) or "nothing"
        raise FormatError(source, "Document",
                          f"a {message_name} Document holds one CstmrPmtStsRpt, "
                          f"this one holds {found}")
    return children[0]


def _required(node: etree._Element, path: str, prefix: str, source: str) -> str:
    value = text_at(node, path)
    if value is None:
        raise FormatError(source, f"{prefix}{path}", "missing")
    return value


def _block_reports(original: str, group_status: str | None, block: etree._Element,
                   where: str, warnings: list[str]) -> list[StatusReport]:
    block_status = text_at(block, "PmtInfSts")
    reports = []
    if block_status is not None or find(block, "StsRsnInf") is not None:
        reports.append(_report(original, block_status, block, where, warnings))
    for i, tx in enumerate(find_all(block, "TxInfAndSts"), 1):
        reports.append(_report(
            original, block_status or group_status, tx, f"{where}/TxInfAndSts[{i}]", warnings,
            end_to_end_id=end_to_end(text_at(tx, "OrgnlEndToEndId")),
            tx_status=text_at(tx, "TxSts"),
            bank_reference=text_at(tx, "AcctSvcrRef"),
        ))
    return reports


def _report(original: str, status: str | None, node: etree._Element, where: str,
            warnings: list[str], **transaction: str | None) -> StatusReport:
    code, text = _reason(node, where, warnings)
    return StatusReport(msg_id=original, group_status=status, reason_code=code,
                        reason_text=text, **transaction)


def _reason(node: etree._Element, where: str,
            warnings: list[str]) -> tuple[str | None, str | None]:
    """The first reason code, and every additional-information line of every reason."""
    reasons = find_all(node, "StsRsnInf")
    codes = [code for code in (text_at(r, "Rsn/Cd") or text_at(r, "Rsn/Prtry") for r in reasons)
             if code]
    if len(codes) > 1:
        warnings.append(f"{where}: {len(codes)} reason codes ({', '.join(codes)}); "
                        f"reporting the first")
    lines = [info.text or "" for r in reasons for info in find_all(r, "AddtlInf")]
    return (codes[0] if codes else None), join_lines(lines, _ADDTL_INF_WIDTH)


__all__ = ["ParsedStatusReports", "parse_pain002"]
