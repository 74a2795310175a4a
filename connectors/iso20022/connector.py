"""The ISO 20022 connector: pain.001 out, pain.002 / camt.052 / camt.053 / camt.054 in.

Orders travel in a signed envelope (XML-DSig); every answer must carry the bank's signature,
and only the document taken from the verified signature is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from connectors import detached
from connectors.archive import Archive
from connectors.base import (
    Balance,
    BankConnector,
    DownloadedReceipt,
    Echo,
    Exchange,
    OutgoingBatch,
    Signer,
    StatusAnswer,
    Submission,
)
from connectors.errors import BadBankAnswer, BankError, BankRefused
from connectors.iso20022.camt import parse_camt
from connectors.iso20022.pain001 import (
    Debtor,
    Order,
    SignatureRefused,
    build_pain001,
    sign_envelope,
    validate_pain001,
    verify_bank_envelope,
)
from connectors.iso20022.pain002 import parse_pain002
from connectors.transport import Transport
from yinqi.bankdata import Receipt, Statement, StatusReport

VERSION = "pain.001.001.09"


class IsoConnector(BankConnector):
    def __init__(self, code: str, transport: Transport, signer: Signer, bank_cert_pem: bytes,
                 archive: Archive, *, version: str = VERSION) -> None:
        self.code, self._t, self._signer, self._archive = code, transport, signer, archive
        self._bank_cert = bank_cert_pem
        self._trusted = {Signer(signer.private_key, bank_cert_pem).fingerprint: bank_cert_pem}
        self._version = version

    def close(self) -> None:
        self._t.close()

    # --- answers --------------------------------------------------------------------------

    def _open(self, data: bytes, what: str) -> bytes:
        try:
            document, _ = verify_bank_envelope(data, self._trusted)
        except SignatureRefused as exc:
            raise BadBankAnswer(self.code, f"{what}: {exc}") from None
        return document

    def _reports(self, document: bytes, what: str) -> tuple[StatusReport, ...]:
        try:
            return tuple(parse_pain002(document, source=what).reports)
        except ValueError as exc:
            raise BadBankAnswer(self.code, f"{what}: unreadable pain.002 ({exc})") from None

    # --- the interface ----------------------------------------------------------------------

    def prepare(self, batch: OutgoingBatch) -> bytes:
        d = batch.debtor
        order = Order(msg_id=batch.msg_id, created_at=batch.created_at,
                      debtor=Debtor(name=d.company, account=d.account, bic=d.bic, cnaps=d.cnaps,
                                    credit_code=d.credit_code),
                      execution_date=batch.execution_date, payments=batch.payments,
                      urgent=batch.urgent, batch_booking=batch.batch_booking,
                      initiating_party=d.company, currency=d.currency)
        document = build_pain001(order, self._version)
        validate_pain001(document, self._version)
        return sign_envelope(document, self._signer.private_key, self._signer.certificate_pem)

    def send_signed(self, msg_id: str, body: bytes) -> Submission:
        """Send an already signed order (a resend must be these exact bytes)."""
        sent, sent_hash = self._archive.keep("pain.001", msg_id, body, suffix=".xml")
        r = self._t.request("POST", "/iso/pain.001", idempotent=False, content=body,
                            headers={"Content-Type": "application/xml"})
        received, received_hash = self._archive.keep("pain.002", msg_id, r.content, suffix=".xml")
        exchange = Exchange(sent, sent_hash, received, received_hash)
        if r.status_code not in (200, 422):
            raise BankRefused(self.code, f"order {msg_id} refused with HTTP {r.status_code}: "
                              f"{r.text[:120]}", status_code=r.status_code, body=r.content)
        reports = self._reports(self._open(r.content, f"answer to {msg_id}"), f"answer to {msg_id}")
        taken = r.status_code == 200 and not any(
            rep.end_to_end_id is None and rep.group_status == "RJCT" for rep in reports)
        return Submission(msg_id, taken, reports, r.headers.get("x-replayed") == "true", exchange)

    def status(self, msg_id: str, end_to_end_ids: Sequence[str] = ()) -> StatusAnswer:
        r = self._t.request("GET", f"/iso/pain.002/{msg_id}", idempotent=True)
        if r.status_code == 404:
            return StatusAnswer(received=False)
        if r.status_code != 200:
            raise BankRefused(self.code, f"status of {msg_id}: HTTP {r.status_code}",
                              status_code=r.status_code, body=r.content)
        path, digest = self._archive.keep("pain.002", msg_id, r.content, suffix=".xml")
        reports = self._reports(self._open(r.content, f"status of {msg_id}"), f"status of {msg_id}")
        wanted = set(end_to_end_ids)
        if wanted:
            reports = tuple(rep for rep in reports
                            if rep.end_to_end_id is None or rep.end_to_end_id in wanted)
        return StatusAnswer(True, reports, Exchange(None, None, path, digest))

    def _camt(self, kind: str, params: dict[str, str]) -> list[Statement]:
        r = self._t.request("GET", f"/iso/{kind}", idempotent=True, params=params)
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise BankRefused(self.code, f"{kind}: HTTP {r.status_code} {r.text[:120]}",
                              status_code=r.status_code, body=r.content)
        name = f"{params.get('account', '')}-{params.get('from', params.get('date', 'today'))}"
        self._archive.keep(kind, name, r.content, suffix=".xml")
        try:
            return parse_camt(self._open(r.content, kind), source=f"{self.code} {kind}")
        except ValueError as exc:
            raise BadBankAnswer(self.code, f"{kind}: {exc}") from None

    def balance(self, account: str, currency: str) -> Balance:
        [report, *_] = self._camt("camt.052", {"account": account}) or [None]
        if report is None or report.closing_balance is None:
            raise BadBankAnswer(self.code, f"camt.052 for {account} has no balance")
        return Balance(self.code, account, report.closing_balance, None,
                       report.created_at or _now())

    def statements(self, account: str, first: date, last: date) -> list[Statement]:
        return self._camt("camt.053", {"account": account, "from": first.isoformat(),
                                       "to": last.isoformat()})

    def notifications(self, account: str, day: date) -> list[Statement]:
        return self._camt("camt.054", {"account": account, "date": day.isoformat()})

    def receipt(self, reference: str) -> DownloadedReceipt:
        return download_receipt(self, self._t, self._archive, self._bank_cert, reference)

    def receipts(self, references: Sequence[str]) -> dict[str, DownloadedReceipt | BankError]:
        return download_receipts(self, self._t, self._archive, self._bank_cert, references)

    def echo(self, text: str) -> Echo:
        return signed_echo(self.code, self._t, self._signer, self._bank_cert, text)


#: References per batch download request (the sandbox bank takes up to 1,000).
RECEIPTS_PER_REQUEST = 250
#: What a bank without batch download answers to it.
_NO_BATCH_DOWNLOAD = (404, 405, 501)


def download_receipts(connector: BankConnector, t: Transport, archive: Archive,
                      bank_cert: bytes, references: Sequence[str], *,
                      per_request: int = RECEIPTS_PER_REQUEST
                      ) -> dict[str, DownloadedReceipt | BankError]:
    """Receipts in batches (``POST /receipts/batch``), one by one where the bank has no batch
    download. The whole answer must carry the bank's signature (else nothing in it is read);
    each receipt in it is then checked and kept exactly as a single download is: its own
    signature over its own PDF bytes, its own archive file and SHA-256."""
    out: dict[str, DownloadedReceipt | BankError] = {}
    refs = list(dict.fromkeys(references))
    for start in range(0, len(refs), per_request):
        chunk = refs[start:start + per_request]
        try:
            got = _receipt_batch(connector, t, archive, bank_cert, chunk)
        except BankError as exc:
            got = dict.fromkeys(chunk, exc)
        if got is None:  # no batch download at this bank
            for ref in refs[start:]:
                try:
                    out[ref] = download_receipt(connector, t, archive, bank_cert, ref)
                except BankError as exc:
                    out[ref] = exc
            return out
        out.update(got)
    return out


def _receipt_batch(connector: BankConnector, t: Transport, archive: Archive, bank_cert: bytes,
                   refs: list[str]) -> dict[str, DownloadedReceipt | BankError] | None:
    import base64
    import binascii
    import json

    body = json.dumps({"references": refs}).encode("utf-8")
    r = t.request("POST", "/receipts/batch", idempotent=True, content=body,
                  headers={"Content-Type": "application/json"})
    if r.status_code in _NO_BATCH_DOWNLOAD:
        return None
    what = f"receipt batch ({len(refs)} references from {refs[0]})"
    if r.status_code != 200:
        raise BankRefused(connector.code, f"{what}: HTTP {r.status_code} {r.text[:120]}",
                          status_code=r.status_code, body=r.content)
    try:
        detached.verify(r.content, r.headers.get("x-signature"), bank_cert)
    except detached.DetachedSignatureError as exc:
        raise BadBankAnswer(connector.code, f"{what}: {exc}") from None
    try:
        data = json.loads(r.content)
        items = {str(item["reference"]): item for item in data["receipts"]}
        not_ready = {str(ref) for ref in data["not_ready"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise BadBankAnswer(connector.code, f"{what}: unreadable answer ({exc})") from None
    out: dict[str, DownloadedReceipt | BankError] = {}
    for ref in refs:
        item = items.get(ref)
        if item is None:
            out[ref] = (BankRefused(connector.code, f"receipt {ref}: not settled (yet)",
                                    status_code=404) if ref in not_ready else
                        BadBankAnswer(connector.code, f"{what}: no word on receipt {ref}"))
            continue
        try:
            pdf = base64.b64decode(item["pdf"], validate=True)
            signature = item.get("signature")
            bank_reference = str(item.get("bank_reference") or "")
            code = str(item.get("verification_code") or "")
        except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
            out[ref] = BadBankAnswer(connector.code, f"receipt {ref}: unreadable ({exc})")
            continue
        out[ref] = _kept_receipt(archive, bank_cert, ref, pdf, signature, bank_reference, code)
    return out


def _kept_receipt(archive: Archive, bank_cert: bytes, reference: str, pdf: bytes,
                  signature: str | None, bank_reference: str,
                  verification_code: str) -> DownloadedReceipt:
    """Archive the PDF as received, then check the bank's signature over exactly its bytes."""
    path, digest = archive.keep("receipt", reference, pdf, suffix=".pdf")
    try:
        detached.verify(pdf, signature, bank_cert)
        valid = True
    except detached.DetachedSignatureError:
        valid = False
    receipt = Receipt(end_to_end_id=reference, bank_reference=bank_reference,
                      verification_code=verification_code, content=pdf,
                      signature_valid=valid)
    return DownloadedReceipt(receipt, valid, path, digest)


def download_receipt(connector: BankConnector, t: Transport, archive: Archive,
                     bank_cert: bytes, reference: str) -> DownloadedReceipt:
    r = t.request("GET", f"/receipts/{reference}", idempotent=True)
    if r.status_code != 200:
        raise BankRefused(connector.code, f"receipt {reference}: HTTP {r.status_code} "
                          f"{r.text[:120]}", status_code=r.status_code, body=r.content)
    return _kept_receipt(archive, bank_cert, reference, r.content,
                         r.headers.get("x-signature"), r.headers.get("x-bank-reference", ""),
                         r.headers.get("x-verification-code", ""))


def signed_echo(bank: str, t: Transport, signer: Signer, bank_cert: bytes, text: str) -> Echo:
    import json
    from datetime import datetime

    body = text.encode("utf-8")
    r = t.request("POST", "/echo", idempotent=True, content=body, headers={
        "X-Signature": detached.sign(body, signer.private_key), "X-Signer": signer.fingerprint})
    try:
        detached.verify(r.content, r.headers.get("x-signature"), bank_cert)
    except detached.DetachedSignatureError as exc:
        raise BadBankAnswer(bank, f"echo answer: {exc}") from None
    data = json.loads(r.content)
    when = data.get("time")
    return Echo(bool(data.get("authenticated")), str(data.get("echo", "")),
                datetime.fromisoformat(when) if when else None,
                str(data.get("reason", "")))


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


