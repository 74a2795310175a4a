"""Reading what banks send as camt.052 (intraday report), camt.053 (statement) and camt.054
(debit/credit notification), versions .02 to .10, including the Swiss (SIX) variants.

The parser reports what the file says. Every amount keeps the sign its CdtDbtInd gives and the
exact decimals it was written with; nothing is rounded, netted or "fixed". What does not add up
(balances, summary counts and sums, batch totals) or what had to be read leniently (a file that
fails its official schema, or one for which no schema is shipped) becomes a one-line warning on
the statement. A file whose money cannot be read exactly is refused with ``FormatError``.

Balances. The opening balance is OPBD, else PRCD (the previous statement's closing booked
balance, which several banks send instead), else the first of two or more ITBD (an intraday
report's start). The closing balance is CLBD, else the last ITBD. Only when a file has no booked
balance at all is the available one (OPAV / CLAV) used, with a warning, because available
balances include value-dated amounts and credit lines and so need not follow from the entries.

Counterparty. The related party on the side the money went (the debtor of a credit, the
creditor of a debit); when the file names nobody there, the party on the other side, unless that
is this account itself. Reversals and returns describe the original payment in some banks' files
and the return transfer in others', so the side alone cannot be trusted.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, localcontext

from lxml import etree

from yinqi.bankdata import BatchDetail, Statement, StatementLine
from yinqi.currency import Currency
from yinqi.errors import InvalidValue, MoneyError
from yinqi.money import Money

_ISO_NAMESPACE = re.compile(
    r"urn:iso:std:iso:20022:tech:xsd:(camt\.05[234])\.001\.(\d{2})", re.ASCII
)
_SIX_NAMESPACE = re.compile(
    r"http://www\.six-interbank-clearing\.com/de/(camt\.05[234])\.001\.(\d{2})(\.ch\.\d{2})?\.xsd",
    re.ASCII,
)
_VERSIONS = range(2, 11)

# message -> (body element, one block per account report)
_LAYOUT = {
    "camt.052": ("BkToCstmrAcctRpt", "Rpt"),
    "camt.053": ("BkToCstmrStmt", "Stmt"),
    "camt.054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn"),
}

# Every pattern is ASCII-only: Python's \d would also take other scripts' digits.
# ISO amounts are unsigned decimals (the sign is CdtDbtInd); anything else is refused rather
# than guessed at, since a misread amount is worse than an unread file.
_PLAIN_AMOUNT = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_SIGNED_DECIMAL = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?", re.ASCII)
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)

_COUNT = re.compile(r"\d{1,15}", re.ASCII)  # Max15NumericText
_USTRD_WIDTH = 140  # RmtInf/Ustrd is Max140Text
_NOT_PROVIDED = "NOTPROVIDED"


class FormatError(InvalidValue):
    """A bank file that cannot be read faithfully. ``str()`` is one line: source, place, fault."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = " ".join(problem.split())
        super().__init__(f"{source}: {where}: {self.problem}")

    def __reduce__(self) -> tuple[type[FormatError], tuple[str, str, str]]:
        # Rebuilt from its parts, so it survives pickling (a worker process reporting back).
        return type(self), (self.source, self.where, self.problem)


# --- XML shared with the pain.002 parser ----------------------------------------------------------


def parse_xml(data: bytes, source: str) -> etree._Element:
    """Parse without entities, DTDs or network access; a DOCTYPE is refused outright."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"expected the file's bytes, got {type(data).__name__}")
    data = bytes(data).removeprefix(b"\xef\xbb\xbf")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        remove_comments=True, remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FormatError(source, f"line {exc.lineno}",
                          f"not well-formed XML: {exc.msg}") from None
    # ISO 20022 messages never carry a DTD; refusing any DOCTYPE shuts out external entities
    # (XXE) and entity expansion whatever the parser flags would have let through.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        line = data.count(b"\n", 0, max(data.find(b"<!DOCTYPE"), 0)) + 1
        raise FormatError(source, f"line {line}",
                          "a DOCTYPE is not allowed in an ISO 20022 message")
    return root


# An XMLSchema keeps its error log on itself, so two threads validating at once would read each
# other's errors.
_SCHEMA_LOCK = threading.Lock()


@functools.cache
def _official_schema(message_name: str) -> etree.XMLSchema | None:
    # Imported here: the package's __init__ imports this module.
    from connectors.iso20022 import XSD_DIR

    path = XSD_DIR / f"{message_name}.xsd"
    if not path.is_file():
        return None
    return etree.XMLSchema(etree.parse(str(path)))


def leniency_warning(root: etree._Element, message_name: str) -> str | None:
    """None when the official schema of ``message_name`` is shipped and the document passes it."""
    schema = _official_schema(message_name)
    if schema is None:
        return f"read leniently: no official schema shipped for {message_name}"
    with _SCHEMA_LOCK:
        if schema.validate(root):
            return None
        first = schema.error_log[0]
        line, message = first.line, first.message
    # Element names print as {urn:iso:...}Tag; the namespace is already named by message_name.
    message = " ".join(re.sub(r"\{[^}]*\}", "", message).split())
    return f"read leniently: not valid against {message_name}.xsd (line {line}: {message})"


def find(node: etree._Element, path: str) -> etree._Element | None:
    """The first element at ``path`` ("A/B/C" in local names), whatever its namespace."""
    return node.find(_any_namespace(path))


def find_all(node: etree._Element, path: str) -> list[etree._Element]:
    return node.findall(_any_namespace(path))


def text_at(node: etree._Element, path: str) -> str | None:
    """The stripped text at ``path``; None when the element is missing or empty."""
    found = find(node, path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


@functools.cache
def _any_namespace(path: str) -> str:
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def join_lines(lines: Sequence[str], width: int) -> str | None:
    """Repeated text elements as one text.

    A line that fills the element's maximum length was cut there by the sender (as the sandbox
    bank does), so it runs on into the next without a space; shorter lines are separate lines.
    """
    joined = ""
    for index, line in enumerate(lines):
        if index and len(lines[index - 1]) < width:
            joined = joined.rstrip() + " " + line.lstrip()
        else:
            joined += line
    return joined.strip() or None


def end_to_end(text: str | None) -> str | None:
    # ISO's placeholder for "the initiator gave none".
    return None if text is None or text == _NOT_PROVIDED else text


def local_name(node: etree._Element) -> str:
    return etree.QName(node).localname


# --- camt ---------------------------------------------------------------------------------------


def parse_camt(data: bytes, source: str = "<bytes>") -> list[Statement]:
    """One Statement per Stmt (camt.053), Rpt (camt.052) or Ntfctn (camt.054), in file order."""
    root = parse_xml(data, source)
    kind, message_name = _message(root, source)
    body_tag, block_tag = _LAYOUT[kind]
    body = _only_child(root, body_tag, source, message_name)
    shared = [w for w in (leniency_warning(root, message_name),) if w]
    header = find(body, "GrpHdr")
    page_notes = _pagination_warnings(header, "GrpHdr")
    shared += page_notes
    blocks = find_all(body, block_tag)
    if not blocks:
        raise FormatError(source, body_tag, f"the {message_name} message holds no {block_tag}")
    reader = _Reader(source, kind, block_tag, header)
    return [reader.statement(block, f"{block_tag}[{i}]", shared, bool(page_notes))
            for i, block in enumerate(blocks, 1)]


def _message(root: etree._Element, source: str) -> tuple[str, str]:
    """("camt.053", "camt.053.001.04") from the root namespace."""
    qname = etree.QName(root)
    if qname.localname != "Document":
        raise FormatError(source, qname.localname,
                          f"the root element is {qname.localname}, not an ISO 20022 Document")
    namespace = qname.namespace or ""
    six = _SIX_NAMESPACE.fullmatch(namespace)
    match = _ISO_NAMESPACE.fullmatch(namespace) or six
    if match is None:
        raise FormatError(source, "Document", f"namespace {namespace!r} is not a camt.052, "
                                              "camt.053 or camt.054 message")
    kind, version = match.group(1), match.group(2)
    if int(version) not in _VERSIONS:
        raise FormatError(source, "Document",
                          f"{kind}.001.{version} is not supported (versions .02 to .10 are)")
    suffix = (six.group(3) or "") if six else ""
    return kind, f"{kind}.001.{version}{suffix}"


def _only_child(root: etree._Element, tag: str, source: str, message_name: str) -> etree._Element:
    children = list(root)
    if len(children) != 1 or local_name(children[0]) != tag:
        found = ", ".join(local_name(c) for c in children) or "nothing"
        raise FormatError(source, "Document",
                          f"a {message_name} Document holds one {tag}, this one holds {found}")
    return children[0]


def _pagination_warnings(node: etree._Element | None, where: str) -> list[str]:
    """A page that is not the last one cannot balance on its own: say so."""
    if node is None:
        return []
    warnings = []
    for child in node:
        if local_name(child).endswith("Pgntn") and text_at(child, "LastPgInd") in ("false", "0"):
            page = text_at(child, "PgNb") or "?"
            warnings.append(f"{where}/{local_name(child)}: page {page} is not the last page; "
                            "the entries continue in another message")
    return warnings


@dataclass(frozen=True, slots=True)
class _Balance:
    code: str
    amount: Money
    where: str


@dataclass(frozen=True, slots=True)
class _Detail:
    credit: bool
    stated_direction: bool  # the TxDtls has a CdtDbtInd of its own
    batch: BatchDetail


class _Reader:
    """Reads the blocks of one message; ``source`` names the file in every error."""

    def __init__(self, source: str, kind: str, block_tag: str,
                 header: etree._Element | None) -> None:
        self.source = source
        self.kind = kind
        self.block_tag = block_tag
        self.msg_id = text_at(header, "MsgId") if header is not None else None
        self.header = header

    def error(self, where: str, problem: str) -> FormatError:
        return FormatError(self.source, where, problem)

    # --- one statement ---

    def statement(self, block: etree._Element, path: str, shared: list[str],
                  partial: bool) -> Statement:
        """``partial``: the message is one page of several, so the block cannot balance alone."""
        notes: list[str] = list(shared)
        page_notes = _pagination_warnings(block, path)
        notes += page_notes
        account = self._account(block, path)
        balances = self._balances(block, path)
        entries = find_all(block, "Ntry")
        currency = self._currency(block, path, balances, entries)
        opening, closing = _opening_and_closing(balances, notes)
        for balance in (opening, closing):
            if balance is not None and balance.currency.code != currency:
                notes.append(f"{path}: a balance is in {balance.currency.code} "
                             f"but the account currency is {currency}")
        read = [self._line(entry, f"{path}/Ntry[{i}]", currency, account, notes)
                for i, entry in enumerate(entries, 1)]
        lines = tuple(line for line, _ in read)
        self._check_summary(block, path, read, notes)
        if not (partial or page_notes):
            _check_balances(opening, closing, lines, notes)
        return Statement(
            account=account,
            currency=currency,
            statement_id=self._required(block, "Id", path),
            sequence=text_at(block, "ElctrncSeqNb") or text_at(block, "LglSeqNb"),
            opening_balance=opening,
            closing_balance=closing,
            lines=lines,
            created_at=self._created_at(block, path),
            from_date=self._date_time_part(block, "FrToDt/FrDtTm", path),
            to_date=self._date_time_part(block, "FrToDt/ToDtTm", path),
            kind=self.kind,
            msg_id=self.msg_id,
            warnings=tuple(notes),
        )

    def _required(self, node: etree._Element, path: str, where: str) -> str:
        value = text_at(node, path)
        if value is None:
            raise self.error(f"{where}/{path}", "missing")
        return value

    def _account(self, block: etree._Element, path: str) -> str:
        account = _account_id(find(block, "Acct"))
        if account is None:
            raise self.error(f"{path}/Acct/Id", "no account identification (IBAN or Othr/Id)")
        return account

    def _currency(self, block: etree._Element, path: str, balances: Sequence[_Balance],
                  entries: Sequence[etree._Element]) -> str:
        code = text_at(block, "Acct/Ccy")
        if code is not None:
            try:
                return Currency.of(code).code
            except MoneyError as exc:
                raise self.error(f"{path}/Acct/Ccy", str(exc)) from None
        if balances:
            return balances[0].amount.currency.code
        if entries:
            return self._amount(find(entries[0], "Amt"), f"{path}/Ntry[1]/Amt").currency.code
        raise self.error(f"{path}/Acct/Ccy",
                         "no account currency, balance or entry to tell the currency from")

    def _created_at(self, block: etree._Element, path: str) -> datetime | None:
        where, node = f"{path}/CreDtTm", find(block, "CreDtTm")
        if node is None and self.header is not None:
            where, node = "GrpHdr/CreDtTm", find(self.header, "CreDtTm")
        if node is None or not (node.text or "").strip():
            return None
        stamp = self._datetime(node.text or "", where)
        # A stamp without an offset is taken as UTC so every created_at is comparable.
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)

    def _date_time_part(self, node: etree._Element, path: str, where: str) -> date | None:
        text = text_at(node, path)
        return None if text is None else self._datetime(text, f"{where}/{path}").date()

    # --- balances ---

    def _balances(self, block: etree._Element, path: str) -> list[_Balance]:
        balances = []
        for i, node in enumerate(find_all(block, "Bal"), 1):
            where = f"{path}/Bal[{i}]"
            code = text_at(node, "Tp/CdOrPrtry/Cd") or text_at(node, "Tp/CdOrPrtry/Prtry") or ""
            amount = self._amount(find(node, "Amt"), f"{where}/Amt")
            if not self._is_credit(node, where):
                amount = -amount
            balances.append(_Balance(code, amount, where))
        return balances

    # --- entries ---

    def _line(self, entry: etree._Element, where: str, currency: str, own_account: str,
              notes: list[str]) -> tuple[StatementLine, bool]:
        """The line and whether it is a credit (a zero amount carries no sign of its own)."""
        magnitude = self._amount(find(entry, "Amt"), f"{where}/Amt")
        credit = self._is_credit(entry, where)
        if magnitude.currency.code != currency:
            notes.append(f"{where}: amount in {magnitude.currency.code} "
                         f"but the account currency is {currency}")
        signed = magnitude if credit else -magnitude
        grouped = [(dtls_where, dtls, self._details(dtls, dtls_where, credit, own_account, notes))
                   for dtls_where, dtls in _entry_details_blocks(entry, where)]
        for dtls_where, dtls, in_block in grouped:
            self._check_batch_header(dtls, dtls_where, credit, in_block, notes)
        details = [detail for _, _, in_block in grouped for detail in in_block]
        _check_details_sum(where, signed, details, notes)
        line = _LineText.of(details, text_at(entry, "AddtlNtryInf"))
        return StatementLine(
            amount=signed,
            booking_date=self._date_choice(find(entry, "BookgDt"), f"{where}/BookgDt"),
            value_date=self._date_choice(find(entry, "ValDt"), f"{where}/ValDt"),
            end_to_end_id=line.end_to_end_id,
            bank_reference=text_at(entry, "AcctSvcrRef"),
            counterparty_name=line.counterparty_name,
            counterparty_account=line.counterparty_account,
            remittance=line.remittance,
            is_reversal=self._reversal(entry, where, notes),
            entry_ref=text_at(entry, "NtryRef"),
            status=_status(entry, where, notes),
            charges=self._charges(entry, where, notes),
            details=tuple(d.batch for d in details) if len(details) > 1 else (),
        ), credit

    def _reversal(self, entry: etree._Element, where: str, notes: list[str]) -> bool:
        text = text_at(entry, "RvslInd")
        if text is None or text in ("false", "0"):
            return False
        if text in ("true", "1"):
            return True
        notes.append(f"{where}/RvslInd: {text!r} is not a boolean; read as not a reversal")
        return False

    def _details(self, dtls: etree._Element, where: str, credit: bool, own_account: str,
                 notes: list[str]) -> list[_Detail]:
        details = []
        for i, tx in enumerate(find_all(dtls, "TxDtls"), 1):
            path = f"{where}/TxDtls[{i}]"
            detail = self._detail(tx, path, credit, own_account)
            if detail.stated_direction and detail.credit != credit:
                notes.append(f"{path}: {_direction_code(detail.credit)} but the entry is "
                             f"{_direction_code(credit)}")
            details.append(detail)
        return details

    def _detail(self, tx: etree._Element, where: str, entry_credit: bool,
                own_account: str) -> _Detail:
        stated = find(tx, "CdtDbtInd") is not None
        credit = self._is_credit(tx, where) if stated else entry_credit
        amount = self._detail_amount(tx, where)
        if amount is not None and not credit:
            amount = -amount
        name, account = _counterparty(tx, credit, own_account)
        batch = BatchDetail(
            amount=amount,
            end_to_end_id=end_to_end(text_at(tx, "Refs/EndToEndId")),
            counterparty_name=name,
            counterparty_account=account,
            remittance=_remittance(tx),
        )
        return _Detail(credit, stated, batch)

    def _detail_amount(self, tx: etree._Element, where: str) -> Money | None:
        for path in ("Amt", "AmtDtls/TxAmt/Amt"):
            node = find(tx, path)
            if node is not None:
                return self._amount(node, f"{where}/{path}")
        return None

    def _check_batch_header(self, dtls: etree._Element, where: str, credit: bool,
                            details: Sequence[_Detail], notes: list[str]) -> None:
        batch = find(dtls, "Btch")
        if batch is None:
            return
        count = text_at(batch, "NbOfTxs")
        # A batch booked as one lump sum without its transactions is normal (the details come in
        # a camt.054); only a batch that lists some of them can disagree with itself.
        if count is not None and details and _differs(count, len(details)):
            notes.append(f"{where}/Btch/NbOfTxs: the batch says {count} transactions "
                         f"but the entry lists {len(details)}")
        total_node = find(batch, "TtlAmt")
        if total_node is None:
            return
        stated = self._amount(total_node, f"{where}/Btch/TtlAmt")
        direction = text_at(batch, "CdtDbtInd")
        if direction == "DBIT" or (direction is None and not credit):
            stated = -stated
        total = _total(d.batch.amount for d in details)
        if total is not None and total.currency == stated.currency and total != stated:
            notes.append(f"{where}/Btch/TtlAmt: the batch total is {_shown(stated)} "
                         f"but its {len(details)} transaction details add up to {_shown(total)}")

    def _charges(self, entry: etree._Element, where: str, notes: list[str]) -> Money | None:
        amounts = self._charge_amounts(entry, where)
        if not amounts:
            # Some banks (the Finnish samples) itemise charges only per transaction.
            for path, tx in _transaction_details(entry, where):
                amounts += self._charge_amounts(tx, path)
        if not amounts:
            return None
        currencies = sorted({m.currency.code for m in amounts})
        if len(currencies) > 1:
            notes.append(f"{where}/Chrgs: charges in {', '.join(currencies)}; not totalled")
            return None
        return Money.sum(amounts, currencies[0])

    def _charge_amounts(self, node: etree._Element, where: str) -> list[Money]:
        """Each charge as a positive amount: .03+ itemise Rcrd, .02 repeats Chrgs with an Amt."""
        amounts = []
        charges = find_all(node, "Chrgs")
        for i, charge in enumerate(charges, 1):
            path = f"{where}/Chrgs" if len(charges) == 1 else f"{where}/Chrgs[{i}]"
            records = find_all(charge, "Rcrd")
            if records:
                amounts += [self._amount(find(r, "Amt"), f"{path}/Rcrd[{j}]/Amt")
                            for j, r in enumerate(records, 1)]
            elif find(charge, "Amt") is not None:
                amounts.append(self._amount(find(charge, "Amt"), f"{path}/Amt"))
            elif find(charge, "TtlChrgsAndTaxAmt") is not None:
                amounts.append(self._amount(find(charge, "TtlChrgsAndTaxAmt"),
                                            f"{path}/TtlChrgsAndTaxAmt"))
        return amounts

    # --- transaction summary ---

    def _check_summary(self, block: etree._Element, path: str,
                       read: Sequence[tuple[StatementLine, bool]], notes: list[str]) -> None:
        summary = find(block, "TxsSummry")
        if summary is None:
            return
        where = f"{path}/TxsSummry"
        lines = [line for line, _ in read]
        groups = (
            ("TtlNtries", lines),
            ("TtlCdtNtries", [line for line, credit in read if credit]),
            ("TtlDbtNtries", [line for line, credit in read if not credit]),
        )
        for tag, members in groups:
            node = find(summary, tag)
            if node is not None:
                self._check_totals(node, f"{where}/{tag}", members, notes)
        totals = find(summary, "TtlNtries")
        if totals is not None:
            self._check_net(totals, f"{where}/TtlNtries", lines, notes)

    def _check_totals(self, node: etree._Element, where: str, lines: Sequence[StatementLine],
                      notes: list[str]) -> None:
        count = text_at(node, "NbOfNtries")
        if count is not None and _differs(count, len(lines)):
            notes.append(f"{where}/NbOfNtries: says {count} entries "
                         f"but the {self.block_tag} holds {len(lines)}")
        stated = self._decimal(text_at(node, "Sum"), f"{where}/Sum")
        actual = _exact_sum(abs(line.amount.amount) for line in lines)
        if stated is not None and stated != actual:
            notes.append(f"{where}/Sum: says {stated:f} but the entries add up to {actual:f}")

    def _check_net(self, totals: etree._Element, where: str, lines: Sequence[StatementLine],
                   notes: list[str]) -> None:
        # .02 writes TtlNetNtryAmt beside CdtDbtInd; .03 and later wrap both in TtlNetNtry.
        net_node = find(totals, "TtlNetNtry")
        if net_node is not None:
            stated = self._decimal(text_at(net_node, "Amt"), f"{where}/TtlNetNtry/Amt")
            direction = text_at(net_node, "CdtDbtInd")
        else:
            stated = self._decimal(text_at(totals, "TtlNetNtryAmt"), f"{where}/TtlNetNtryAmt")
            direction = text_at(totals, "CdtDbtInd")
        if stated is None:
            return
        if direction == "DBIT":
            stated = -stated
        actual = _exact_sum(line.amount.amount for line in lines)
        if stated != actual:
            notes.append(f"{where}: says the entries net to {_net(stated)} "
                         f"but they net to {_net(actual)}")

    # --- values ---

    def _amount(self, node: etree._Element | None, where: str) -> Money:
        if node is None:
            raise self.error(where, "missing")
        text = (node.text or "").strip()
        code = (node.get("Ccy") or "").strip()
        if not _PLAIN_AMOUNT.fullmatch(text):
            hint = "; the sign belongs in CdtDbtInd" if text.startswith("-") else ""
            raise self.error(where, f"amount {text!r} is not a plain unsigned decimal{hint}")
        if not code:
            raise self.error(where, f"amount {text} has no currency (Ccy attribute)")
        try:
            return Money.of(text, code)
        except MoneyError as exc:
            raise self.error(where, str(exc)) from None

    def _decimal(self, text: str | None, where: str) -> Decimal | None:
        if text is None:
            return None
        if not _SIGNED_DECIMAL.fullmatch(text):
            raise self.error(where, f"{text!r} is not a plain decimal number")
        return Decimal(text)

    def _is_credit(self, node: etree._Element, where: str) -> bool:
        indicator = text_at(node, "CdtDbtInd")
        if indicator == "CRDT":
            return True
        if indicator == "DBIT":
            return False
        shown = "missing" if indicator is None else f"{indicator!r} is neither CRDT nor DBIT"
        raise self.error(f"{where}/CdtDbtInd", shown)

    def _date_choice(self, node: etree._Element | None, where: str) -> date | None:
        """A DateAndDateTimeChoice: Dt, or DtTm whose date is taken in its own stated offset."""
        if node is None:
            return None
        day = text_at(node, "Dt")
        if day is not None:
            return self._date(day, f"{where}/Dt")
        stamp = text_at(node, "DtTm")
        return None if stamp is None else self._datetime(stamp, f"{where}/DtTm").date()

    def _date(self, text: str, where: str) -> date:
        match = _ISO_DATE.fullmatch(text.strip())
        if match is not None:
            with contextlib.suppress(ValueError):  # a well-formed but impossible day
                return date.fromisoformat(match.group(1))
        raise self.error(where, f"{text.strip()!r} is not a date (YYYY-MM-DD)")

    def _datetime(self, text: str, where: str) -> datetime:
        if _ISO_DATETIME.fullmatch(text.strip()):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(text.strip())
        raise self.error(where, f"{text.strip()!r} is not a date-time (YYYY-MM-DDThh:mm:ss)")


# --- the pieces of an entry ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LineText:
    """What the line itself says about its payment(s), from one or several TxDtls."""

    end_to_end_id: str | None
    counterparty_name: str | None
    counterparty_account: str | None
    remittance: str | None

    @classmethod
    def of(cls, details: Sequence[_Detail], entry_info: str | None) -> _LineText:
        # One TxDtls is the entry's own payment; for a batch, only what every payment shares
        # describes the line as a whole.
        batches = [d.batch for d in details]
        return cls(
            end_to_end_id=_shared(b.end_to_end_id for b in batches),
            counterparty_name=_shared(b.counterparty_name for b in batches),
            counterparty_account=_shared(b.counterparty_account for b in batches),
            remittance=_shared(b.remittance for b in batches) or entry_info,
        )


def _transaction_details(entry: etree._Element,
                         where: str) -> list[tuple[str, etree._Element]]:
    """Every TxDtls of an entry with its path; NtryDtls may repeat in every version."""
    return [(f"{block_where}/TxDtls[{i}]", tx)
            for block_where, block in _entry_details_blocks(entry, where)
            for i, tx in enumerate(find_all(block, "TxDtls"), 1)]


def _entry_details_blocks(entry: etree._Element,
                          where: str) -> list[tuple[str, etree._Element]]:
    blocks = find_all(entry, "NtryDtls")
    if len(blocks) == 1:
        return [(f"{where}/NtryDtls", blocks[0])]
    return [(f"{where}/NtryDtls[{i}]", block) for i, block in enumerate(blocks, 1)]


def _status(entry: etree._Element, where: str, notes: list[str]) -> str:
    # .02 to .06 write the code as the text of Sts; .07 and later wrap it in Sts/Cd (or Prtry).
    node = find(entry, "Sts")
    code = None
    if node is not None:
        code = text_at(node, "Cd") or text_at(node, "Prtry") or (node.text or "").strip() or None
    if code is None:
        notes.append(f"{where}/Sts: no entry status; read as BOOK")
        return "BOOK"
    return code


def _account_id(account: etree._Element | None) -> str | None:
    if account is None:
        return None
    return text_at(account, "Id/IBAN") or text_at(account, "Id/Othr/Id")


def _party(tx: etree._Element, role: str) -> tuple[str | None, str | None]:
    # .08 and later put the name under Pty (a party) where earlier versions had it directly.
    name = text_at(tx, f"RltdPties/{role}/Nm") or text_at(tx, f"RltdPties/{role}/Pty/Nm")
    return name, _account_id(find(tx, f"RltdPties/{role}Acct"))


def _counterparty(tx: etree._Element, credit: bool,
                  own_account: str) -> tuple[str | None, str | None]:
    near, far = ("Dbtr", "Cdtr") if credit else ("Cdtr", "Dbtr")
    name, account = _party(tx, near)
    if name or account:
        return name, account
    name, account = _party(tx, far)
    if account is not None and _same_account(account, own_account):
        return None, None
    return name, account


def _same_account(a: str, b: str) -> bool:
    return "".join(a.split()).upper() == "".join(b.split()).upper()


def _remittance(tx: etree._Element) -> str | None:
    unstructured = join_lines([node.text or "" for node in find_all(tx, "RmtInf/Ustrd")],
                              _USTRD_WIDTH)
    if unstructured:
        return unstructured
    references = [ref.text.strip() for ref in find_all(tx, "RmtInf/Strd/CdtrRefInf/Ref")
                  if ref.text and ref.text.strip()]
    return " ".join(references) or None


def _shared(values: Iterable[str | None]) -> str | None:
    """The one value all share; None when they differ or there are none."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _total(amounts: Iterable[Money | None]) -> Money | None:
    """The sum when every amount is known and in one currency; None otherwise."""
    known = list(amounts)
    if not known or any(m is None for m in known):
        return None
    monies = [m for m in known if m is not None]
    if len({m.currency for m in monies}) != 1:
        return None
    return Money.sum(monies, monies[0].currency)


def _check_details_sum(where: str, amount: Money, details: Sequence[_Detail],
                       notes: list[str]) -> None:
    # Only a batch is checked: a single TxDtls often carries the instructed amount in another
    # currency or before charges, which is information, not a contradiction.
    if len(details) < 2:
        return
    total = _total(d.batch.amount for d in details)
    if total is not None and total.currency == amount.currency and total != amount:
        notes.append(f"{where}: the {len(details)} transaction details add up to "
                     f"{_shown(total)} but the entry amount is {_shown(amount)}")


def _opening_and_closing(balances: Sequence[_Balance],
                         notes: list[str]) -> tuple[Money | None, Money | None]:
    by_code: dict[str, list[_Balance]] = {}
    for balance in balances:
        by_code.setdefault(balance.code, []).append(balance)
    opening = _first(by_code, "OPBD", notes) or _first(by_code, "PRCD", notes)
    if "OPBD" in by_code and "PRCD" in by_code:
        opbd, prcd = by_code["OPBD"][0], by_code["PRCD"][0]
        if opbd.amount != prcd.amount:
            notes.append(f"{prcd.where}: the previous closing balance (PRCD) "
                         f"{_shown(prcd.amount)} differs from the opening balance (OPBD) "
                         f"{_shown(opbd.amount)}")
    interim = by_code.get("ITBD", [])
    if opening is None and len(interim) >= 2:
        opening = interim[0]
    closing = _first(by_code, "CLBD", notes)
    if closing is None and interim and interim[-1] is not opening:
        closing = interim[-1]
    if opening is None:
        opening = _available(by_code, "OPAV", "opening", notes)
    if closing is None:
        closing = _available(by_code, "CLAV", "closing", notes)
    return (None if opening is None else opening.amount,
            None if closing is None else closing.amount)


def _first(by_code: dict[str, list[_Balance]], code: str, notes: list[str]) -> _Balance | None:
    found = by_code.get(code, [])
    if len(found) > 1:
        notes.append(f"{found[1].where}: {len(found)} {code} balances; "
                     f"using the first ({_shown(found[0].amount)})")
    return found[0] if found else None


def _available(by_code: dict[str, list[_Balance]], code: str, role: str,
               notes: list[str]) -> _Balance | None:
    balance = _first(by_code, code, notes)
    if balance is not None:
        notes.append(f"{balance.where}: no booked {role} balance; using the available balance "
                     f"{code} {_shown(balance.amount)}")
    return balance


def _check_balances(opening: Money | None, closing: Money | None,
                    lines: Sequence[StatementLine], notes: list[str]) -> None:
    if opening is None or closing is None:
        return
    if opening.currency != closing.currency:
        notes.append(f"balances not checked: the opening balance is in {opening.currency.code}, "
                     f"the closing balance in {closing.currency.code}")
        return
    booked = [line for line in lines if line.status == "BOOK"]
    foreign = [line for line in booked if line.amount.currency != opening.currency]
    if foreign:
        notes.append(f"balances not checked: {len(foreign)} booked entries are not in "
                     f"{opening.currency.code}")
        return
    movement = Money.sum((line.amount for line in booked), opening.currency)
    if opening + movement != closing:
        notes.append(f"opening {_shown(opening)} + entries {_shown(movement)} = "
                     f"{_shown(opening + movement)} but the closing balance is {_shown(closing)}")


def _differs(count: str, actual: int) -> bool:
    """A stated count (Max15NumericText, so "007" is 7) that is not ``actual``."""
    return _COUNT.fullmatch(count) is None or int(count) != actual


def _exact_sum(values: Iterable[Decimal]) -> Decimal:
    # Wide enough for any sum of 30-digit amounts, so no digit is ever rounded away.
    with localcontext() as context:
        context.prec = 100
        return sum(values, Decimal(0))


def _shown(money: Money) -> str:
    return f"{money.amount:f}"


def _net(value: Decimal) -> str:
    return f"{abs(value):f} {'DBIT' if value < 0 else 'CRDT'}"


def _direction_code(credit: bool) -> str:
    return "CRDT" if credit else "DBIT"


__all__ = ["FormatError", "parse_camt"]
