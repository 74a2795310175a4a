"""The sandbox bank's ISO 20022 and MT940 codec.

In: pain.001 payment orders (.001.03 and .001.09), parsed strictly: secure XML parsing, the
official schema, then the header's count and control sum. A message that fails any of these is
refused whole with an ``IsoError`` carrying the ISO status reason code to answer with.
The codec checks form, not business: accounts, balances, CNAPS codes and zero amounts are the
bank's to judge transaction by transaction.

Out: pain.002.001.03 and .10 status reports, camt.052/053/054.001.08 and MT940. Every
XML document is checked against its official schema before it leaves, so the bank never sends
what a real client's validator would refuse.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext

from lxml import etree

from connectors.iso20022 import XSD_DIR
from connectors.sandbox.records import (
    AccountStatement,
    CreditTransfer,
    Entry,
    EntryDetail,
    PaymentInfo,
    PaymentOrder,
    StatusReport,
    TransferStatus,
)
from yinqi.errors import CurrencyError, PrecisionError
from yinqi.money import Money

_ISO_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:"
_PAIN001_VERSIONS = ("pain.001.001.03", "pain.001.001.09")
_PAIN002_VERSIONS = ("pain.002.001.03", "pain.002.001.10")


class IsoError(Exception):
    """A message the sandbox bank refuses, with the ISO 20022 status reason code to answer."""

    def __init__(self, reason_code: str, message: str) -> None:
        # One line, whatever libxml2 or the caller put in: the message goes into logs and AddtlInf.
        self.message = " ".join(message.split())
        self.reason_code = reason_code
        super().__init__(self.message)


# --- schemas ------------------------------------------------------------------------------------

# An XMLSchema keeps its error log on itself, so two threads validating at once would read each
# other's errors; the server validates from a thread pool.
_VALIDATION_LOCK = threading.Lock()


@functools.cache
def _schema(message_name: str) -> etree.XMLSchema:
    path = XSD_DIR / f"{message_name}.xsd"
    if not path.is_file():
        raise IsoError("FF01", f"unsupported message {message_name}: no schema in {XSD_DIR}")
    return etree.XMLSchema(etree.parse(str(path)))


def validate(doc: etree._Element | bytes, message_name: str) -> None:
    """Check a document against the official schema of ``message_name`` (e.g. "camt.053.001.08")."""
    schema = _schema(message_name)
    root = _parse(doc) if isinstance(doc, bytes) else doc
    with _VALIDATION_LOCK:
        if schema.validate(root):
            return
        first = schema.error_log[0]
        line, text = first.line, first.message
    # Element names print as {urn:iso:...}Tag; the namespace is already named by message_name.
    text = re.sub(r"\{[^}]*\}", "", text)
    raise IsoError("FF01", f"{message_name}: line {line}: {text}")


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
        remove_comments=True, remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise IsoError("FF01", f"not well-formed XML: {exc}") from None
    # ISO 20022 messages never carry a DTD; refusing any DOCTYPE shuts out external entities
    # (XXE) and entity-expansion bombs whatever the parser flags would have let through.
    if root.getroottree().docinfo.doctype:
        raise IsoError("FF01", "a DOCTYPE is not allowed in an ISO 20022 message (line 1)")
    return root


# --- pain.001 in --------------------------------------------------------------------------------


class _Finder:
    """Reads a schema-valid message by paths written without the namespace."""

    def __init__(self, namespace: str) -> None:
        self._namespaces = {"m": namespace}

    def all(self, node: etree._Element, path: str) -> list[etree._Element]:
        return node.findall(self._qualify(path), self._namespaces)

    def one(self, node: etree._Element, path: str) -> etree._Element | None:
        return node.find(self._qualify(path), self._namespaces)

    def text(self, node: etree._Element, path: str) -> str | None:
        found = self.one(node, path)
        return None if found is None else found.text or ""

    @staticmethod
    def _qualify(path: str) -> str:
        return "/".join(f"m:{step}" for step in path.split("/"))


def parse_pain001(data: bytes) -> PaymentOrder:
    """Parse and check a pain.001.001.03 or .09 payment order; refuse it with ``IsoError``."""
    root = _parse(data)
    version = _pain001_version(root)
    validate(root, version)
    find = _Finder(_ISO_NAMESPACE + version)
    initiation = root[0]
    header = find.one(initiation, "GrpHdr")
    assert header is not None  # the schema makes GrpHdr mandatory
    blocks = find.all(initiation, "PmtInf")
    _check_totals(find, header, "GrpHdr", find.all(initiation, "PmtInf/CdtTrfTxInf"))
    for block in blocks:
        _check_totals(find, block, "PmtInf", find.all(block, "CdtTrfTxInf"))
    bic_tag = "BIC" if version.endswith(".03") else "BICFI"
    sum_text = find.text(header, "CtrlSum")
    return PaymentOrder(
        version=version,
        msg_id=_required(find, header, "MsgId"),
        created_at=_datetime(_required(find, header, "CreDtTm"), "GrpHdr/CreDtTm"),
        declared_count=int(_required(find, header, "NbOfTxs")),
        declared_sum=None if sum_text is None else Decimal(sum_text.strip()),
        initiating_party=_initiating_party(find, header),
        payments=tuple(_payment_info(find, block, bic_tag) for block in blocks),
    )


def _pain001_version(root: etree._Element) -> str:
    tag = etree.QName(root)
    for version in _PAIN001_VERSIONS:
        if tag.namespace == _ISO_NAMESPACE + version:
            return version
    raise IsoError(
        "FF01",
        f"unsupported message {tag.namespace or tag.localname!r} (line {root.sourceline}): "
        f"the bank accepts {' and '.join(_PAIN001_VERSIONS)}",
    )


def _check_totals(
    find: _Finder, node: etree._Element, where: str, transactions: Sequence[etree._Element]
) -> None:
    count = find.one(node, "NbOfTxs")
    if count is not None and int(count.text or "") != len(transactions):
        raise IsoError(
            "AM18",
            f"{where}/NbOfTxs at line {count.sourceline} says {(count.text or '').strip()} "
            f"but {len(transactions)} CdtTrfTxInf follow",
        )
    control = find.one(node, "CtrlSum")
    if control is None:
        return
    declared = Decimal((control.text or "").strip())
    actual = _exact_sum(Decimal(_amount_text(find, tx)) for tx in transactions)
    if actual != declared:
        raise IsoError(
            "AM10",
            f"{where}/CtrlSum at line {control.sourceline} says {declared} "
            f"but the amounts add up to {actual}",
        )


def _amount_text(find: _Finder, transaction: etree._Element) -> str:
    text = find.text(transaction, "Amt/InstdAmt") or find.text(transaction, "Amt/EqvtAmt/Amt")
    assert text is not None  # the schema makes Amt a choice of the two
    return text.strip()


def _exact_sum(values: Iterable[Decimal]) -> Decimal:
    # Each amount has at most 18 digits, 5 of them decimals; 40 digits of precision leave room
    # for 10**17 of them, so the control-sum comparison never meets a rounded total.
    with localcontext() as context:
        context.prec = 40
        return sum(values, Decimal(0))


def _payment_info(find: _Finder, block: etree._Element, bic_tag: str) -> PaymentInfo:
    pmt_inf_id = _required(find, block, "PmtInfId")
    where = f"PmtInf {pmt_inf_id!r} at line {block.sourceline}"
    method = find.text(block, "PmtMtd")
    if method != "TRF":
        raise IsoError("CH17", f"{where}: PmtMtd {method} is not accepted, only TRF")
    debtor_account = find.one(block, "DbtrAcct")
    execution = find.one(block, "ReqdExctnDt")
    assert debtor_account is not None and execution is not None  # mandatory in the schema
    return PaymentInfo(
        pmt_inf_id=pmt_inf_id,
        debtor_name=_name(find, block, "Dbtr", where),
        debtor_account=_account(find, debtor_account),
        debtor_agent_bic=find.text(block, f"DbtrAgt/FinInstnId/{bic_tag}"),
        requested_execution_date=_execution_date(find, execution, where),
        transfers=tuple(_transfer(find, tx, bic_tag) for tx in find.all(block, "CdtTrfTxInf")),
        urgent=find.text(block, "PmtTpInf/InstrPrty") == "HIGH",
        batch_booking=(find.text(block, "BtchBookg") or "").strip() in ("true", "1"),
    )


def _transfer(find: _Finder, tx: etree._Element, bic_tag: str) -> CreditTransfer:
    end_to_end_id = _required(find, tx, "PmtId/EndToEndId")
    where = f"CdtTrfTxInf {end_to_end_id!r} at line {tx.sourceline}"
    instructed = find.one(tx, "Amt/InstdAmt")
    if instructed is None:
        raise IsoError("CH17", f"{where}: Amt/EqvtAmt is not accepted, give Amt/InstdAmt")
    account = find.one(tx, "CdtrAcct")
    if account is None:
        raise IsoError("CH21", f"{where}: CdtrAcct is missing")
    ustrd = [line.text or "" for line in find.all(tx, "RmtInf/Ustrd")]
    return CreditTransfer(
        end_to_end_id=end_to_end_id,
        instr_id=find.text(tx, "PmtId/InstrId"),
        amount=_instructed_amount(instructed, where),
        currency=instructed.get("Ccy", ""),
        creditor_name=_name(find, tx, "Cdtr", where),
        creditor_account=_account(find, account),
        creditor_agent_bic=find.text(tx, f"CdtrAgt/FinInstnId/{bic_tag}"),
        creditor_agent_cnaps=_cnaps(find, tx),
        remittance=" ".join(ustrd) if ustrd else None,
    )


def _instructed_amount(instructed: etree._Element, where: str) -> Decimal:
    currency = instructed.get("Ccy", "")
    where = f"{where}: InstdAmt at line {instructed.sourceline}"
    try:
        return Money.of(Decimal((instructed.text or "").strip()), currency).amount
    except CurrencyError:
        message = f"{where}: currency {currency} is not one the bank pays in"
        raise IsoError("AM03", message) from None
    except PrecisionError as exc:
        raise IsoError("CH20", f"{where}: {exc}") from None


def _cnaps(find: _Finder, tx: etree._Element) -> str | None:
    member = find.one(tx, "CdtrAgt/FinInstnId/ClrSysMmbId")
    if member is None:
        return None
    system = find.text(member, "ClrSysId/Cd") or find.text(member, "ClrSysId/Prtry")
    # A member id of another clearing system (a US ABA number, a Russian BIK) is no CNAPS code.
    if system not in (None, "CNAPS"):
        return None
    return find.text(member, "MmbId")


def _account(find: _Finder, account: etree._Element) -> str:
    number = find.text(account, "Id/IBAN") or find.text(account, "Id/Othr/Id")
    assert number is not None  # the schema makes Id a choice of the two
    return number


def _name(find: _Finder, node: etree._Element, party: str, where: str) -> str:
    name = find.text(node, f"{party}/Nm")
    if not name:
        raise IsoError("CH21", f"{where}: {party}/Nm is missing")
    return name


def _initiating_party(find: _Finder, header: etree._Element) -> str:
    # Many banks' customers identify the initiating party by an id alone (a BIC, a company
    # number), which the schema allows; the bank still has to know who sent the order.
    for path in ("Nm", "Id/OrgId/AnyBIC", "Id/OrgId/BICOrBEI", "Id/OrgId/Othr/Id",
                 "Id/PrvtId/Othr/Id"):
        found = find.text(header, f"InitgPty/{path}")
        if found:
            return found
    raise IsoError("CH21", f"GrpHdr at line {header.sourceline}: InitgPty has no Nm and no "
                           "identifier the bank reads")


def _required(find: _Finder, node: etree._Element, path: str) -> str:
    text = find.text(node, path)
    assert text is not None, path  # only called for elements the schema makes mandatory
    return text


def _execution_date(find: _Finder, node: etree._Element, where: str) -> date:
    # .03 writes the date itself; .09 wraps it in a choice of Dt and DtTm.
    if len(node) == 0:
        return _date(node.text or "", f"{where}: ReqdExctnDt")
    day = find.text(node, "Dt")
    if day is not None:
        return _date(day, f"{where}: ReqdExctnDt/Dt")
    return _datetime(find.text(node, "DtTm") or "", f"{where}: ReqdExctnDt/DtTm").date()


def _date(text: str, where: str) -> date:
    # xs:date may carry a zone ("2026-11-25+08:00"); a business date is the date as written.
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise IsoError("DT01", f"{where}: date {text.strip()!r} is out of range") from None


def _datetime(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise IsoError("DT01", f"{where}: date-time {text.strip()!r} is out of range") from None


# --- XML out ------------------------------------------------------------------------------------


def _document(message_name: str) -> etree._Element:
    namespace = _ISO_NAMESPACE + message_name
    return etree.Element(f"{{{namespace}}}Document", nsmap={None: namespace})


def _add(parent: etree._Element, path: str, text: str | None = None,
         **attributes: str) -> etree._Element:
    """Append the chain of elements in ``path`` ("A/B/C") and return the last one."""
    namespace = etree.QName(parent).namespace
    node = parent
    for tag in path.split("/"):
        node = etree.SubElement(node, f"{{{namespace}}}{tag}")
    node.attrib.update(attributes)
    if text is not None:
        node.text = text
    return node


def _add_amount(parent: etree._Element, path: str, money: Money) -> None:
    _add(parent, path, f"{abs(money).amount:f}", Ccy=money.currency.code)


def _serialize(root: etree._Element, message_name: str) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(data, message_name)
    return data


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _direction(credit: bool) -> str:
    return "CRDT" if credit else "DBIT"


# --- pain.002 out -------------------------------------------------------------------------------

# OrgnlPmtInfId is mandatory wherever a transaction status may stand; a status whose PmtInf
# the bank no longer knows goes under ISO's usual placeholder for a missing reference.
_UNKNOWN_PMT_INF = "NOTPROVIDED"


def build_pain002(report: StatusReport, version: str) -> bytes:
    """A status report: "pain.002.001.10" answers a .09 order, "pain.002.001.03" a .03 one."""
    if version not in _PAIN002_VERSIONS:
        raise ValueError(f"pain.002 version {version!r} is not one of {_PAIN002_VERSIONS}")
    root = _document(version)
    body = _add(root, "CstmrPmtStsRpt")
    header = _add(body, "GrpHdr")
    _add(header, "MsgId", report.msg_id)
    _add(header, "CreDtTm", report.created_at.isoformat())
    group = _add(body, "OrgnlGrpInfAndSts")
    _add(group, "OrgnlMsgId", report.original_msg_id)
    _add(group, "OrgnlMsgNmId", report.original_msg_name)
    if report.group_status:
        _add(group, "GrpSts", report.group_status)
    _add_reason(group, report.group_reason_code, report.group_reason_text)
    for pmt_inf_id, statuses in _by_payment_block(report.transfers).items():
        block = _add(body, "OrgnlPmtInfAndSts")
        _add(block, "OrgnlPmtInfId", pmt_inf_id)
        for status in statuses:
            _add_transfer_status(block, status)
    return _serialize(root, version)


def _by_payment_block(statuses: Iterable[TransferStatus]) -> dict[str, list[TransferStatus]]:
    blocks: dict[str, list[TransferStatus]] = {}
    for status in statuses:
        blocks.setdefault(status.pmt_inf_id or _UNKNOWN_PMT_INF, []).append(status)
    return blocks


def _add_transfer_status(block: etree._Element, status: TransferStatus) -> None:
    node = _add(block, "TxInfAndSts")
    if status.instr_id:
        _add(node, "OrgnlInstrId", status.instr_id)
    _add(node, "OrgnlEndToEndId", status.end_to_end_id)
    _add(node, "TxSts", status.status)
    _add_reason(node, status.reason_code, status.reason_text)


def _add_reason(parent: etree._Element, code: str | None, text: str | None) -> None:
    if not code and not text:
        return
    info = _add(parent, "StsRsnInf")
    if code:
        _add(info, "Rsn/Cd", code)
    for chunk in _chunks(text or "", 105):  # AddtlInf is Max105Text, repeatable
        _add(info, "AddtlInf", chunk)


# --- camt out -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CamtLayout:
    message_name: str
    root: str
    block: str
    balance_codes: tuple[str, str] | None  # (opening, closing); None: the message has none


_CAMT052 = _CamtLayout("camt.052.001.08", "BkToCstmrAcctRpt", "Rpt", ("OPBD", "ITBD"))
_CAMT053 = _CamtLayout("camt.053.001.08", "BkToCstmrStmt", "Stmt", ("OPBD", "CLBD"))
_CAMT054 = _CamtLayout("camt.054.001.08", "BkToCstmrDbtCdtNtfctn", "Ntfctn", None)

# (kind, credit) -> ISO bank transaction code (domain, family, sub-family).
_BANK_TX_CODES: dict[tuple[str, bool], tuple[str, str, str]] = {
    ("transfer", True): ("PMNT", "RCDT", "DMCT"),
    ("transfer", False): ("PMNT", "ICDT", "DMCT"),
    ("return", True): ("PMNT", "ICDT", "RRTN"),    # our payment came back
    ("return", False): ("PMNT", "RCDT", "RRTN"),   # we sent a received payment back
    ("fee", False): ("ACMT", "MDOP", "CHRG"),
    ("fee", True): ("ACMT", "MCOP", "CHRG"),       # a fee refunded
    ("opening", True): ("ACMT", "OPCL", "ACCO"),
    ("opening", False): ("ACMT", "OPCL", "ACCO"),
}
_MT940_TYPE_CODES = {"transfer": "TRF", "return": "RTI", "fee": "CHG", "opening": "MSC"}


def build_camt052(stmt: AccountStatement) -> bytes:
    """An intraday account report: opening booked (OPBD) and interim booked (ITBD) balances."""
    return _build_camt(stmt, _CAMT052)


def build_camt053(stmt: AccountStatement) -> bytes:
    """An end-of-day statement: opening (OPBD) and closing (CLBD) booked balances."""
    _required_balances(stmt, "camt.053")
    return _build_camt(stmt, _CAMT053)


def build_camt054(stmt: AccountStatement) -> bytes:
    """A debit/credit notification: the entries only, never balances."""
    return _build_camt(stmt, _CAMT054)


def _build_camt(stmt: AccountStatement, layout: _CamtLayout) -> bytes:
    _check_entries(stmt)
    root = _document(layout.message_name)
    body = _add(root, layout.root)
    header = _add(body, "GrpHdr")
    # One statement per message, so its id identifies the message too.
    _add(header, "MsgId", stmt.statement_id)
    _add(header, "CreDtTm", stmt.created_at.isoformat())
    block = _add(body, layout.block)
    _add(block, "Id", stmt.statement_id)
    _add(block, "ElctrncSeqNb", str(stmt.electronic_sequence))
    _add(block, "CreDtTm", stmt.created_at.isoformat())
    period = _add(block, "FrToDt")
    _add(period, "FrDtTm", stmt.from_time.isoformat())
    _add(period, "ToDtTm", stmt.to_time.isoformat())
    _add_account(block, stmt)
    if layout.balance_codes is not None:
        _add_balances(block, stmt, *layout.balance_codes)
    if stmt.entries:
        _add_summary(block, stmt)
    for entry in stmt.entries:
        _add_entry(block, entry)
    return _serialize(root, layout.message_name)


def _add_account(block: etree._Element, stmt: AccountStatement) -> None:
    account = _add(block, "Acct")
    _add(account, "Id/Othr/Id", stmt.account)
    _add(account, "Ccy", stmt.currency)
    _add(account, "Ownr/Nm", stmt.owner_name)
    _add(account, "Svcr/FinInstnId/BICFI", stmt.servicer_bic)


def _add_balances(block: etree._Element, stmt: AccountStatement, opening_code: str,
                  closing_code: str) -> None:
    opening_date, closing_date = _balance_dates(stmt)
    if stmt.opening_balance is not None:
        _add_balance(block, opening_code, Money.of(stmt.opening_balance, stmt.currency),
                     opening_date)
    if stmt.closing_balance is not None:
        _add_balance(block, closing_code, Money.of(stmt.closing_balance, stmt.currency),
                     closing_date)


def _add_balance(block: etree._Element, code: str, balance: Money, on: date) -> None:
    node = _add(block, "Bal")
    _add(node, "Tp/CdOrPrtry/Cd", code)
    _add_amount(node, "Amt", balance)
    _add(node, "CdtDbtInd", _direction(not balance.is_negative))
    _add(node, "Dt/Dt", on.isoformat())


def _add_summary(block: etree._Element, stmt: AccountStatement) -> None:
    credits = [e for e in stmt.entries if e.credit]
    debits = [e for e in stmt.entries if not e.credit]
    credit_sum = Money.sum((Money.of(e.amount, e.currency) for e in credits), stmt.currency)
    debit_sum = Money.sum((Money.of(e.amount, e.currency) for e in debits), stmt.currency)
    net = credit_sum - debit_sum
    summary = _add(block, "TxsSummry")
    total = _add(summary, "TtlNtries")
    _add(total, "NbOfNtries", str(len(stmt.entries)))
    _add(total, "Sum", f"{(credit_sum + debit_sum).amount:f}")
    net_node = _add(total, "TtlNetNtry")
    _add(net_node, "Amt", f"{abs(net).amount:f}")
    _add(net_node, "CdtDbtInd", _direction(not net.is_negative))
    for tag, entries, entries_sum in (("TtlCdtNtries", credits, credit_sum),
                                      ("TtlDbtNtries", debits, debit_sum)):
        node = _add(summary, tag)
        _add(node, "NbOfNtries", str(len(entries)))
        _add(node, "Sum", f"{entries_sum.amount:f}")


def _add_entry(block: etree._Element, entry: Entry) -> None:
    node = _add(block, "Ntry")
    _add_amount(node, "Amt", Money.of(entry.amount, entry.currency))
    _add(node, "CdtDbtInd", _direction(entry.credit))
    if entry.reversal:
        _add(node, "RvslInd", "true")
    _add(node, "Sts/Cd", "BOOK")
    _add(node, "BookgDt/Dt", entry.booking_date.isoformat())
    _add(node, "ValDt/Dt", entry.value_date.isoformat())
    _add(node, "AcctSvcrRef", entry.bank_reference)
    # A reversal carries the code of the transaction it undoes (RvslInd says the rest).
    domain, family, sub_family = _BANK_TX_CODES[(entry.kind, entry.credit != entry.reversal)]
    code = _add(node, "BkTxCd/Domn")
    _add(code, "Cd", domain)
    family_node = _add(code, "Fmly")
    _add(family_node, "Cd", family)
    _add(family_node, "SubFmlyCd", sub_family)
    if entry.details:
        details = _add(node, "NtryDtls")
        if len(entry.details) > 1:
            _add(details, "Btch/NbOfTxs", str(len(entry.details)))
        for detail in entry.details:
            _add_transaction(details, detail, entry)


def _add_transaction(details: etree._Element, detail: EntryDetail, entry: Entry) -> None:
    node = _add(details, "TxDtls")
    if detail.end_to_end_id:
        _add(node, "Refs/EndToEndId", detail.end_to_end_id)
    _add_amount(node, "Amt", Money.of(detail.amount, detail.currency))
    _add(node, "CdtDbtInd", _direction(entry.credit))
    if detail.counterparty_name or detail.counterparty_account:
        role = _counterparty_role(entry)
        parties = _add(node, "RltdPties")
        if detail.counterparty_name:
            _add(parties, f"{role}/Pty/Nm", detail.counterparty_name)
        if detail.counterparty_account:
            _add(parties, f"{role}Acct/Id/Othr/Id", detail.counterparty_account)
    if detail.remittance:
        remittance = _add(node, "RmtInf")
        for chunk in _chunks(detail.remittance, 140):  # Ustrd is Max140Text, repeatable
            _add(remittance, "Ustrd", chunk)


def _counterparty_role(entry: Entry) -> str:
    # Related parties describe the original payment: a reversal or a return moves money back,
    # so the counterparty on a credit that undoes an outgoing payment is still its creditor.
    undoes = entry.reversal or entry.kind == "return"
    received = entry.credit != undoes
    return "Dbtr" if received else "Cdtr"


def _check_entries(stmt: AccountStatement) -> None:
    for entry in stmt.entries:
        where = f"entry {entry.bank_reference}"
        if (entry.kind, entry.credit) not in _BANK_TX_CODES:
            raise ValueError(f"{where}: kind {entry.kind!r} is not one of "
                             f"{sorted(_MT940_TYPE_CODES)}")
        if entry.currency != stmt.currency:
            raise ValueError(f"{where}: currency {entry.currency} is not the account's "
                             f"{stmt.currency}")
        if entry.amount < 0 or any(d.amount < 0 for d in entry.details):
            raise ValueError(f"{where}: amounts are magnitudes; the direction is `credit`")


def _required_balances(stmt: AccountStatement, message: str) -> tuple[Money, Money]:
    if stmt.opening_balance is None or stmt.closing_balance is None:
        raise ValueError(f"statement {stmt.statement_id}: a {message} needs both the opening "
                         "and the closing balance")
    return (Money.of(stmt.opening_balance, stmt.currency),
            Money.of(stmt.closing_balance, stmt.currency))


def _balance_dates(stmt: AccountStatement) -> tuple[date, date]:
    return (stmt.opening_date or stmt.from_time.date(), stmt.closing_date or stmt.to_time.date())


# --- MT940 out ----------------------------------------------------------------------------------

# SWIFT MT fields carry only the X character set. Chinese (or any non-Latin) text cannot be
# written, so each such character becomes '?', while accented Latin letters keep their base
# letter. The camt messages carry the original UTF-8 text; MT940 is a lossy copy.
_SWIFT_X = frozenset(string.ascii_letters + string.digits + "/-?:().,'+ ")
# Reference subfields: no space, and no '/' that could be taken for the '//' separator.
_REFERENCE_CHARS = frozenset(string.ascii_letters + string.digits + "-?:().,'+")
_MT940_LINE = 65
_MT940_INFO_LINES = 6


def build_mt940(stmt: AccountStatement) -> bytes:
    """A SWIFT MT940 statement text block, CRLF line endings, closed by a '-' line."""
    _check_entries(stmt)
    opening, closing = _required_balances(stmt, "MT940")
    opening_date, closing_date = _balance_dates(stmt)
    if not 0 <= stmt.electronic_sequence <= 99999:
        raise ValueError(f"statement {stmt.statement_id}: sequence {stmt.electronic_sequence} "
                         "does not fit :28C:'s 5 digits")
    account = _to_swift_x(stmt.account)
    if account != stmt.account or len(account) > 35:
        raise ValueError(f"account {stmt.account!r} does not fit :25: (35 SWIFT characters)")
    lines = [
        f":20:{_swift_reference(stmt.statement_id)}",
        f":25:{account}",
        f":28C:{stmt.electronic_sequence:05d}/00001",
        f":60F:{_mt_balance(opening, opening_date)}",
    ]
    for entry in stmt.entries:
        lines.append(_mt_statement_line(entry))
        information = _mt_information(entry)
        if information:
            lines.append(":86:" + "\r\n".join(information))
    lines += [f":62F:{_mt_balance(closing, closing_date)}", "-"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _mt_balance(balance: Money, on: date) -> str:
    mark = "D" if balance.is_negative else "C"
    return f"{mark}{on:%y%m%d}{balance.currency.code}{_mt_amount(balance)}"


def _mt_amount(money: Money) -> str:
    whole, _, fraction = f"{abs(money).amount:f}".partition(".")
    text = f"{whole},{fraction}"  # the comma is mandatory, even with no decimals ("100,")
    if len(text) > 15:
        raise ValueError(f"amount {money} does not fit MT940's 15 characters")
    return text


def _mt_statement_line(entry: Entry) -> str:
    amount = _mt_amount(Money.of(entry.amount, entry.currency))
    return (f":61:{entry.value_date:%y%m%d}{entry.booking_date:%m%d}{_mt_mark(entry)}{amount}"
            f"N{_MT940_TYPE_CODES[entry.kind]}{_customer_reference(entry)}"
            f"//{_swift_reference(entry.bank_reference)}")


def _mt_mark(entry: Entry) -> str:
    # RC/RD name the entry being reversed: a reversal that credits the account undoes a debit.
    if entry.reversal:
        return "RD" if entry.credit else "RC"
    return "C" if entry.credit else "D"


def _customer_reference(entry: Entry) -> str:
    # A cut end-to-end id would match the wrong payment, so one that does not fit is left out.
    if len(entry.details) == 1:
        reference = entry.details[0].end_to_end_id or ""
        if 0 < len(reference) <= 16 and set(reference) <= _REFERENCE_CHARS:
            return reference
    return "NONREF"


def _swift_reference(value: str) -> str:
    # 16x: a longer reference keeps its tail, where the sandbox's ids carry their unique part
    # (the account's last digits and the date; the random hex of a booking reference).
    return "".join(c if c in _REFERENCE_CHARS else "-" for c in value)[-16:]


def _mt_information(entry: Entry) -> list[str]:
    parts = [part for d in entry.details
             for part in (d.remittance, d.counterparty_name, d.counterparty_account) if part]
    return _wrap(_to_swift_x(" / ".join(parts)), _MT940_LINE)[:_MT940_INFO_LINES]


def _to_swift_x(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", " ".join(text.split()))
    kept = (c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if c in _SWIFT_X else "?" for c in kept)


def _wrap(text: str, width: int) -> list[str]:
    """Break at spaces where possible; no line may start with ':' or '-'."""
    lines: list[str] = []
    rest = text
    while rest:
        # A line starting with ':' reads as a new field and one with '-' as the end of the
        # message, so such a line is indented by one space.
        lead = " " if rest[0] in ":-" else ""
        room = width - len(lead)
        if len(rest) <= room:
            lines.append(lead + rest)
            break
        cut = rest.rfind(" ", 0, room + 1)
        if cut <= 0:
            cut = room
        lines.append(lead + rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return lines


__all__ = [
    "IsoError",
    "build_camt052",
    "build_camt053",
    "build_camt054",
    "build_mt940",
    "build_pain002",
    "parse_pain001",
    "validate",
]
