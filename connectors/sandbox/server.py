"""The sandbox bank's HTTPS front end (Starlette on uvicorn, mutual TLS).

One server plays several banks, each under ``/banks/<code>/`` in its own dialect. Requests
and answers are signed; faults are injected here, around the bank's logic, exactly where a
real network or a real bank's front end would fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import cnh2h, iso
from connectors.sandbox.bank import Instruction, NoStatement, Outcome, Sandbox, group_status
from connectors.sandbox.models import Payment
from connectors.sandbox.clock import FakeClock, ShiftedClock
from connectors.sandbox.faults import Faults
from connectors.sandbox.receipts import (
    ReceiptData,
    render_receipt,
    render_signed,
    sign_receipt,
    verify_code,
)
from connectors.sandbox.records import StatusReport, TransferStatus
from connectors.sandbox.settings import FaultSpec
from connectors.sandbox.signing import SignatureError, open_envelope, sign_detached
from connectors.sandbox.signing import sign_envelope, verify_detached
from yinqi.money import Money

XML = "application/xml"
FAULT_HEADER = "x-sandbox-fault"
STATEMENT_KINDS = ("camt.052", "camt.053", "camt.054", "mt940")
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
#: Receipts in one POST /receipts/batch answer (about 13 KB each, base64).
MAX_RECEIPTS_PER_REQUEST = 1000


class UnknownBank(LookupError):
    """A path names a bank this server does not play, or a dialect the bank does not speak."""


def _key(dialect: str, ident: str) -> str:
    # ISO message IDs, direct-connect batch numbers and single references are separate
    # namespaces: one may never replay another's answer.
    return f"{dialect}:{ident}"


def _day(text: str | None, default: date) -> date:
    if not text:
        return default
    value = date.fromisoformat(text)
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{value} is outside {EARLIEST}..{LATEST}")
    return value


@dataclass
class Identity:
    """The bank's own signing key and the enterprise signers it trusts."""

    key_pem: bytes
    cert_pem: bytes
    fingerprint: str
    receipt_secret: bytes
    signers: dict[str, dict[str, bytes]] = field(default_factory=dict)  # bank -> fp -> pem
    # Folders companies' signing certificates are handed in through (enrolment, and again at
    # every key rotation). Read again whenever one changes, so a running bank learns a new
    # certificate without a restart, as a bank's registry would; a certificate once learnt
    # stays trusted, so orders signed before a rotation are still accepted.
    signer_folders: dict[str, Path] = field(default_factory=dict)
    _folder_stamps: dict[str, int] = field(default_factory=dict, repr=False)
    _folder_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def trusted(self, code: str) -> dict[str, bytes]:
        """The signing certificates bank ``code`` accepts, by SHA-256 fingerprint."""
        folder = self.signer_folders.get(code)
        if folder is not None:
            try:
                stamp = folder.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = -1
            if stamp != self._folder_stamps.get(code):
                with self._folder_lock:
                    self._read_folder(code, folder, stamp)
        return self.signers.get(code, {})

    def register(self, code: str, fp: str, pem: bytes) -> None:
        with self._folder_lock:
            self.signers.setdefault(code, {})[fp] = pem

    def _read_folder(self, code: str, folder: Path, stamp: int) -> None:
        from connectors.sandbox.pki import fingerprint

        known = dict(self.signers.get(code, {}))
        for path in sorted(folder.glob("*.pem")) if stamp != -1 else ():
            try:
                pem = path.read_bytes()
                known[fingerprint(pem)] = pem
            except (FileNotFoundError, ValueError):
                continue  # gone again, or not a certificate: nothing to trust
        self.signers[code] = known
        self._folder_stamps[code] = stamp


class AbortConnection(Response):
    """Start an answer and drop the connection mid-way: the client sees a reset."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4096"), (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ConnectionResetError("sandbox fault: connection reset")


def build_app(sandbox: Sandbox, identity: Identity, *, control_api: bool) -> Starlette:
    faults = sandbox.faults
    # How often each receipt was asked for, by bank: a client that shares the downloads
    # between several collectors asks for each receipt once.
    receipt_asks: dict[str, Counter[str]] = {}
    asks_lock = threading.Lock()

    def asked(code: str, refs: list[str]) -> None:
        with asks_lock:
            receipt_asks.setdefault(code, Counter()).update(refs)

    def bank_of(request: Request, dialect: str | None = None) -> str:
        code = request.path_params["bank"]
        if code not in sandbox.banks:
            raise UnknownBank(f"no bank {code!r} on this server")
        spoken = sandbox.banks[code].spec.dialect
        if dialect is not None and spoken != dialect:
            raise UnknownBank(f"bank {code!r} speaks {spoken}, not {dialect}")
        return code

    def signed_xml(document: bytes, status: int = 200) -> Response:
        body = sign_envelope(document, identity.key_pem, identity.cert_pem)
        return Response(body, status_code=status, media_type=XML)

    def signed_json(body: bytes, status: int = 200) -> Response:
        return Response(body, status_code=status, media_type="application/json; charset=utf-8",
                        headers={"X-Signature": sign_detached(body, identity.key_pem),
                                 "X-Signer": identity.fingerprint})

    async def with_faults(request: Request, key: str,
                          work: Callable[[], Awaitable[Response]]) -> Response:
        forced = request.headers.get(FAULT_HEADER) if control_api else None
        drawn: Faults = faults.draw(key, forced)
        if drawn.latency:
            await asyncio.sleep(faults.spec.latency_ms / 1000)
        if drawn.maintenance:
            return PlainTextResponse("bank in maintenance window", status_code=503,
                                     headers={"Retry-After": str(faults.spec.maintenance_retry_after)})
        if drawn.http_5xx:
            return PlainTextResponse("internal error (injected)", status_code=500)
        if drawn.reset:
            return AbortConnection()
        response = await work()
        if drawn.tampered_answer or drawn.unsigned_answer:
            response = _damaged(response, tampered=drawn.tampered_answer)
        if drawn.timeout_after_booking:
            # The work is committed; the answer is lost to the client's timeout.
            await asyncio.sleep(faults.spec.timeout_hold_seconds)
        return response

    # --- ISO 20022 ----------------------------------------------------------------------------

    async def pain001(request: Request) -> Response:
        code = bank_of(request, "iso20022")
        body = await request.body()
        return await with_faults(request, f"{code}|pain001|{hashlib.sha256(body).hexdigest()}",
                                 lambda: run_in_threadpool(take_pain001, code, body))

    def take_pain001(code: str, body: bytes) -> Response:
        try:
            opened = open_envelope(body, identity.trusted(code))
            order = iso.parse_pain001(opened.document)
        except (SignatureError, iso.IsoError) as exc:
            return refuse_pain001(body, exc.reason_code, str(exc))
        version = "pain.002.001.10" if order.version.endswith(".09") else "pain.002.001.03"
        instructions = [
            Instruction(end_to_end_id=t.end_to_end_id, instr_id=t.instr_id,
                        debtor_account=p.debtor_account, debtor_name=p.debtor_name,
                        creditor_account=t.creditor_account, creditor_name=t.creditor_name,
                        creditor_agent=t.creditor_agent_cnaps or t.creditor_agent_bic,
                        creditor_bank_name=None, amount=t.amount, currency=t.currency,
                        purpose=t.remittance, urgent=p.urgent,
                        requested_date=p.requested_execution_date,
                        batch_key=f"{order.msg_id}/{p.pmt_inf_id}" if p.batch_booking else None,
                        pmt_inf_id=p.pmt_inf_id)
            for p in order.payments for t in p.transfers
        ]
        block = {i.end_to_end_id: i.pmt_inf_id for i in instructions}

        def render(outcomes: list[Outcome]) -> tuple[bytes, str]:
            report = StatusReport(
                msg_id=f"ACK-{secrets.token_hex(6).upper()}", created_at=sandbox.clock.now(),
                original_msg_id=order.msg_id, original_msg_name=order.version,
                group_status=group_status(outcomes),
                transfers=tuple(TransferStatus(o.end_to_end_id, o.instr_id, o.status,
                                               o.reason_code, o.reason_text,
                                               block.get(o.end_to_end_id))
                                for o in outcomes))
            doc = iso.build_pain002(report, version)
            return sign_envelope(doc, identity.key_pem, identity.cert_pem), XML

        warm_receipt_pool(len(instructions))
        answer = sandbox.submit(code, _key("iso", order.msg_id), dialect="iso20022",
                                message_name=order.version, request=body,
                                instructions=instructions, render=render)
        return Response(answer.body, media_type=answer.content_type,
                        headers={"X-Replayed": "true"} if answer.replayed else {})

    def refuse_pain001(body: bytes, reason: str, text: str) -> Response:
        """Refuse the whole message (nothing was taken) with a signed group-level RJCT."""
        msg_id, name = _best_effort_ids(body)
        report = StatusReport(msg_id=f"NAK-{secrets.token_hex(6).upper()}",
                              created_at=sandbox.clock.now(), original_msg_id=msg_id,
                              original_msg_name=name, group_status="RJCT",
                              group_reason_code=reason, group_reason_text=text[:105])
        version = "pain.002.001.03" if name.endswith(".03") else "pain.002.001.10"
        return signed_xml(iso.build_pain002(report, version), status=422)

    async def pain002(request: Request) -> Response:
        code, msg_id = bank_of(request, "iso20022"), request.path_params["msg_id"]
        return await with_faults(request, f"{code}|status|{msg_id}",
                                 lambda: run_in_threadpool(status_report, code, msg_id, request))

    def status_report(code: str, msg_id: str, request: Request) -> Response:
        if not sandbox.message_exists(code, _key("iso", msg_id)):
            return PlainTextResponse(f"message {msg_id} was never received", status_code=404)
        forced = request.headers.get(FAULT_HEADER, "") if control_api else ""
        drawn = faults.draw_report(f"{code}|report|{msg_id}", forced or None)
        rows: list[TransferStatus] = []
        for p in sandbox.payments(code, msg_id=_key("iso", msg_id)):
            status, reason, text = _iso_status(p.status, p.reason_code, p.reason_text)
            if drawn.out_of_order_status and status in ("ACSC", "RJCT") and p.settled_at:
                status, reason, text = "ACSP", None, None  # a stale report arrives late
            rows.append(TransferStatus(p.end_to_end_id, p.instr_id, status, reason, text,
                                       p.pmt_inf_id))
        for r in sandbox.rejections(code, _key("iso", msg_id)):
            rows.append(TransferStatus(r.end_to_end_id, r.instr_id, "RJCT", r.reason_code,
                                       r.reason_text, r.pmt_inf_id))
        if drawn.duplicate_status:
            rows = rows + rows
        statuses = {r.status for r in rows}
        group = ("RJCT" if statuses == {"RJCT"} else "ACSC" if statuses == {"ACSC"}
                 else "PART" if "RJCT" in statuses else "ACSP")
        name = _message_name(sandbox, code, _key("iso", msg_id))
        report = StatusReport(msg_id=f"STS-{secrets.token_hex(6).upper()}",
                              created_at=sandbox.clock.now(), original_msg_id=msg_id,
                              original_msg_name=name, group_status=group, transfers=tuple(rows))
        version = "pain.002.001.03" if name.endswith(".03") else "pain.002.001.10"
        return signed_xml(iso.build_pain002(report, version))

    async def camt(request: Request) -> Response:
        code, kind = bank_of(request, "iso20022"), request.path_params["kind"]
        if kind not in STATEMENT_KINDS:
            return PlainTextResponse(f"no {kind}; reports are {', '.join(STATEMENT_KINDS)}",
                                     status_code=404)
        account = request.query_params.get("account", "")
        key = f"{code}|{kind}|{request.url.query}"
        return await with_faults(request, key, lambda: run_in_threadpool(
            statement_doc, code, kind, account, request.query_params))

    def statement_doc(code: str, kind: str, account: str, params: Any) -> Response:
        if sandbox.customer_account(code, account) is None:
            return PlainTextResponse(f"account {account} unknown at {code}", status_code=404)
        today = sandbox.banks[code].calendar.business_date(sandbox.clock.now())
        try:
            first = _day(params.get("from") or params.get("date"), today)
            last = _day(params.get("to") or params.get("date"), first)
        except ValueError as exc:
            return PlainTextResponse(f"dates must be YYYY-MM-DD: {exc}", status_code=400)
        if (last - first).days > 92 or last < first:
            return PlainTextResponse("give a range of at most 92 days", status_code=400)
        if kind == "camt.052":
            return signed_xml(iso.build_camt052(sandbox.statement(code, account, today,
                                                                 intraday=True)))
        if kind == "camt.054":
            # Notifications exist for the day so far as well as for closed days.
            notes = [sandbox.statement(code, account, d, intraday=d >= today)
                     for d in _days(first, min(last, today))]
            if not notes:
                return PlainTextResponse("no day in that range has begun", status_code=404)
            return signed_xml(_merge([iso.build_camt054(n) for n in notes]))
        days = sandbox.closed_days(code, account, first, last)
        if not days:
            return PlainTextResponse(
                f"no closed business day in {first}..{last}: the statement for a day is "
                "produced after it closes (camt.052 reports today so far)", status_code=404)
        stmts = []
        for day in days:
            stmt = sandbox.statement(code, account, day)
            stmts.append(stmt)
            if faults.statement_twice(f"{code}|{account}|{day}"):
                stmts.append(stmt)
        if kind == "mt940":
            # MT940 is plain text with no room for a signature: it goes in the headers.
            text = b"".join(iso.build_mt940(s) for s in stmts)
            return Response(text, media_type="text/plain; charset=us-ascii", headers={
                "X-Signature": sign_detached(text, identity.key_pem),
                "X-Signer": identity.fingerprint})
        return signed_xml(_merge([iso.build_camt053(s) for s in stmts]))

    # --- Chinese direct-connect ---------------------------------------------------------------

    def check_signer(code: str, request: Request, body: bytes) -> None:
        fp = request.headers.get("x-signer", "")
        cert = identity.trusted(code).get(fp)
        if cert is None:
            raise SignatureError("DS0E", f"signer {fp[:16] or '(none)'} is not registered")
        verify_detached(body, request.headers.get("x-signature", ""), cert)

    async def h2h_transfer(request: Request) -> Response:
        code, body = bank_of(request, "cn-h2h"), await request.body()
        return await with_faults(request, f"{code}|h2h|{hashlib.sha256(body).hexdigest()}",
                                 lambda: run_in_threadpool(take_h2h, code, body, request))

    def take_h2h(code: str, body: bytes, request: Request) -> Response:
        try:
            check_signer(code, request, body)
            key, batch, instructions = cnh2h.parse_transfer(body)
        except SignatureError as exc:
            return signed_json(cnh2h.render({"错误码": exc.reason_code, "错误信息": str(exc)}), 401)
        except cnh2h.H2hFormatError as exc:
            return signed_json(cnh2h.render({"错误码": "FF01", "错误信息": str(exc)}), 422)
        msg_key = _key("h2h-batch" if batch else "h2h-ref", key)
        earlier = sandbox.stored_answer(code, msg_key, hashlib.sha256(body).hexdigest())
        if batch and earlier is not None and earlier.conflicting:
            return signed_json(cnh2h.render({
                "错误码": "DUPL", "错误信息": f"批次号 {key} 已用于另一笔不同的请求 "
                "(batch number already used for a different request)"}), 409)
        warm_receipt_pool(len(instructions))
        today = sandbox.banks[code].calendar.business_date(sandbox.clock.now())
        refs = [i.end_to_end_id for i in instructions]
        # A known 业务参考号 gets its original result back and is never booked again.
        known = {p.end_to_end_id for p in sandbox.payments(code, end_to_end_ids=refs)}
        fresh = [i for i in instructions if i.end_to_end_id not in known]
        results: dict[str, dict[str, str]] = {}
        if fresh:
            def render(outcomes: list[Outcome]) -> tuple[bytes, str]:
                return cnh2h.render({"结果": [cnh2h.rejected(o) for o in outcomes
                                              if o.status == "RJCT"]}), "application/json"

            answer = sandbox.submit(code, msg_key, dialect="cn-h2h",
                                    message_name="h2h.transfer", request=body,
                                    instructions=fresh, render=render,
                                    rejections_are_final=True)
            for r in json.loads(answer.body)["结果"]:
                results[r["业务参考号"]] = r
        for p in sandbox.payments(code, end_to_end_ids=refs):
            results[p.end_to_end_id] = cnh2h.status_of(p, today)
        ordered = [results.get(ref) or _rejected_again(sandbox, code, ref) for ref in refs]
        return signed_json(cnh2h.render_results(key, ordered))

    async def h2h_query(request: Request) -> Response:
        code, body = bank_of(request, "cn-h2h"), await request.body()
        return await with_faults(request, f"{code}|h2hq|{hashlib.sha256(body).hexdigest()}",
                                 lambda: run_in_threadpool(query_h2h, code, body, request))

    def query_h2h(code: str, body: bytes, request: Request) -> Response:
        try:
            check_signer(code, request, body)
            refs = json.loads(body)["业务参考号"]
            if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
                raise ValueError
        except SignatureError as exc:
            return signed_json(cnh2h.render({"错误码": exc.reason_code, "错误信息": str(exc)}), 401)
        except (ValueError, KeyError, TypeError):
            return signed_json(cnh2h.render({"错误码": "FF01",
                                             "错误信息": "需要 {\"业务参考号\": [...]}"}), 422)
        today = sandbox.banks[code].calendar.business_date(sandbox.clock.now())
        forced = request.headers.get(FAULT_HEADER) if control_api else None
        drawn = faults.draw_report(f"{code}|h2hreport|{','.join(refs)}", forced)
        found = {p.end_to_end_id: cnh2h.status_of(p, today)
                 for p in sandbox.payments(code, end_to_end_ids=refs)}
        rows = []
        for ref in refs:
            row = found.get(ref) or _rejected_again(sandbox, code, ref)
            if drawn.out_of_order_status and row["状态"] == "FIN" and row["结果"] == "S":
                row = {**row, "状态": "BNK", "结果": ""}
            rows.append(row)
        if drawn.duplicate_status:
            rows = rows + rows
        return signed_json(cnh2h.render({"结果": rows}))

    async def h2h_statement(request: Request) -> Response:
        code = bank_of(request, "cn-h2h")
        account = request.query_params.get("account", "")
        return await with_faults(request, f"{code}|h2hstmt|{request.url.query}",
                                 lambda: run_in_threadpool(h2h_statement_doc, code, account,
                                                           request.query_params))

    def h2h_statement_doc(code: str, account: str, params: Any) -> Response:
        if sandbox.customer_account(code, account) is None:
            return signed_json(cnh2h.render({"错误码": "AC01", "错误信息": "账号不存在"}), 404)
        today = sandbox.banks[code].calendar.business_date(sandbox.clock.now())
        try:
            day = _day(params.get("date"), today)
            stmt = sandbox.statement(code, account, day)
        except ValueError as exc:
            return signed_json(cnh2h.render({"错误码": "FF01",
                                             "错误信息": f"日期格式 YYYY-MM-DD: {exc}"}), 400)
        except NoStatement as exc:
            return signed_json(cnh2h.render({"错误码": "NOTREADY",
                                             "错误信息": f"无该日对账单 (no statement: {exc})"}),
                               404)
        doc = cnh2h.render_statement(stmt)
        docs = [doc, doc] if faults.statement_twice(f"{code}|{account}|{day}") else [doc]
        return signed_json(cnh2h.render({"对账单": docs}))

    async def h2h_balance(request: Request) -> Response:
        code = bank_of(request, "cn-h2h")
        account = request.query_params.get("account", "")
        return await with_faults(request, f"{code}|bal|{account}",
                                 lambda: run_in_threadpool(balance_doc, code, account))

    def balance_doc(code: str, account: str) -> Response:
        sandbox.settle_due()
        acct = sandbox.customer_account(code, account)
        if acct is None:
            return signed_json(cnh2h.render({"错误码": "AC01", "错误信息": "账号不存在"}), 404)
        bal = Money.from_minor(acct.balance_minor, acct.currency).amount
        avail = Money.from_minor(acct.balance_minor + acct.overdraft_minor, acct.currency).amount
        return signed_json(cnh2h.render_balance(acct.number, acct.currency, bal, avail,
                                                sandbox.clock.now()))

    # --- receipts, health, echo ------------------------------------------------------------

    def receipt_data(code: str, ref: str) -> ReceiptData | None:
        payments = sandbox.payments(code, end_to_end_ids=[ref]) or sandbox.payments(
            code, bank_references=[ref])
        return receipt_fields(code, payments[0]) if payments else None

    def receipt_fields(code: str, p: Payment) -> ReceiptData | None:
        if p.status not in ("ACSC", "RTND"):
            return None
        bank = sandbox.banks[code]
        amount = Money.from_minor(p.amount_minor, p.currency).amount
        return ReceiptData(
            bank_name=bank.spec.name, bank_reference=p.bank_reference,
            business_reference=p.end_to_end_id, payer_name=p.debtor_name,
            payer_account=p.debtor_account, payer_bank=bank.spec.name,
            payee_name=p.creditor_name, payee_account=p.creditor_account,
            payee_bank=p.creditor_bank_name or p.creditor_agent or bank.spec.name,
            amount=amount, currency=p.currency, purpose=p.purpose or "",
            booked_at=p.settled_at or p.received_at, value_date=p.execution_date)

    async def receipt(request: Request) -> Response:
        code, ref = bank_of(request), request.path_params["ref"]
        return await with_faults(request, f"{code}|receipt|{ref}",
                                 lambda: run_in_threadpool(receipt_doc, code, ref))

    def receipt_doc(code: str, ref: str) -> Response:
        asked(code, [ref])
        data = receipt_data(code, ref)
        if data is None:
            return PlainTextResponse(f"no receipt for {ref}: not settled (yet)", status_code=404)
        pdf, vcode = render_receipt(data, identity.key_pem, identity.cert_pem,
                                    identity.receipt_secret)
        return Response(pdf, media_type="application/pdf", headers={
            "X-Signature": sign_receipt(pdf, identity.key_pem, identity.cert_pem),
            "X-Signer": identity.fingerprint, "X-Verification-Code": vcode,
            "X-Bank-Reference": data.bank_reference})

    async def receipt_batch(request: Request) -> Response:
        code, body = bank_of(request), await request.body()
        return await with_faults(request, f"{code}|receipts|{hashlib.sha256(body).hexdigest()}",
                                 lambda: run_in_threadpool(receipt_batch_doc, code, body))

    def receipt_batch_doc(code: str, body: bytes) -> Response:
        """Many receipts in one signed answer (批量回单下载); each keeps its own signature
        over its own PDF bytes, exactly as GET /receipts/<ref> would give it."""
        try:
            refs = json.loads(body)["references"]
            if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"references": ["<end-to-end ID or bank '
                                          'reference>", ...]}'}, 422)
        if len(refs) > MAX_RECEIPTS_PER_REQUEST:
            return JSONResponse({"error": f"at most {MAX_RECEIPTS_PER_REQUEST} references "
                                          "per request"}, 422)
        wanted = list(dict.fromkeys(refs))
        asked(code, wanted)
        found = {p.end_to_end_id: p for p in sandbox.payments(code, end_to_end_ids=wanted)}
        rest = [r for r in wanted if r not in found]
        if rest:
            found.update((p.bank_reference, p) for p in sandbox.payments(
                code, bank_references=rest))
        ready: list[tuple[str, ReceiptData]] = []
        not_ready = []
        for ref in wanted:
            data = receipt_fields(code, found[ref]) if ref in found else None
            if data is None:
                not_ready.append(ref)
            else:
                ready.append((ref, data))
        rendered = render_many([data for _, data in ready], identity)
        items = [{"reference": ref, "bank_reference": data.bank_reference,
                  "verification_code": vcode, "signature": signature,
                  "pdf": base64.b64encode(pdf).decode("ascii")}
                 for (ref, data), (pdf, vcode, signature) in zip(ready, rendered, strict=True)]
        return signed_json(json.dumps({"receipts": items, "not_ready": not_ready},
                                      ensure_ascii=False).encode("utf-8"))

    async def receipt_verify(request: Request) -> Response:
        code = bank_of(request)
        try:
            query = json.loads(await request.body())
            ref, vcode = str(query["bank_reference"]), str(query["verification_code"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send {bank_reference, verification_code}"}, 422)
        data = await run_in_threadpool(receipt_data, code, ref)
        valid = data is not None and verify_code(data, vcode, identity.receipt_secret)
        return signed_json(json.dumps({"bank_reference": ref, "valid": valid}).encode())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "banks": sorted(sandbox.banks),
                             "time": sandbox.clock.now().isoformat(),
                             "signer": identity.fingerprint})

    async def echo(request: Request) -> Response:
        code, body = bank_of(request), await request.body()
        try:
            check_signer(code, request, body)
        except SignatureError as exc:
            return signed_json(json.dumps({"authenticated": False, "reason_code": exc.reason_code,
                                           "reason": str(exc)}).encode(), 401)
        return signed_json(json.dumps({"authenticated": True, "bank": code,
                                       "echo": body.decode("utf-8", "replace"),
                                       "time": sandbox.clock.now().isoformat()},
                                      ensure_ascii=False).encode())

    # --- control (tests) --------------------------------------------------------------------

    async def control_clock(request: Request) -> Response:
        clock = sandbox.clock
        if not isinstance(clock, FakeClock | ShiftedClock):
            return JSONResponse({"error": "the server runs on the system clock"}, 409)
        try:
            data = json.loads(await request.body() or b"{}")
            if "set" in data:
                moment = datetime.fromisoformat(data["set"])
                if moment.tzinfo is None:
                    raise ValueError("give a timezone with 'set'")
                clock.set(moment)
            else:
                clock.advance(timedelta(seconds=float(data.get("advance_seconds", 0))))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"send {{advance_seconds: N}} or {{set: ISO}}: {exc}"},
                                400)
        settled = await run_in_threadpool(sandbox.settle_due)
        return JSONResponse({"now": clock.now().isoformat(), "processed": settled})

    async def control_faults(request: Request) -> Response:
        try:
            faults.update(FaultSpec.model_validate_json(await request.body()))
        except ValueError as exc:
            return JSONResponse({"error": str(exc).splitlines()[0]}, 400)
        return JSONResponse(faults.spec.model_dump(mode="json"))

    async def control_ledger(request: Request) -> Response:
        report = await run_in_threadpool(sandbox.ledger_check)
        report["faults_injected"] = dict(faults.injected)
        return JSONResponse(report)

    async def control_signer(request: Request) -> Response:
        from connectors.sandbox.pki import fingerprint

        code, pem = bank_of(request), await request.body()
        try:
            fp = fingerprint(pem)
        except ValueError as exc:
            return JSONResponse({"error": f"not a PEM certificate: {exc}"}, 400)
        identity.register(code, fp, pem)
        return JSONResponse({"bank": code, "fingerprint": fp})

    async def control_payments(request: Request) -> Response:
        code = bank_of(request)
        rows = await run_in_threadpool(sandbox.payments, code)
        return JSONResponse([{"end_to_end_id": p.end_to_end_id, "msg_id": p.msg_id,
                              "status": p.status, "amount_minor": p.amount_minor,
                              "currency": p.currency, "reason_code": p.reason_code}
                             for p in rows])

    async def control_receipt_asks(request: Request) -> Response:
        code = bank_of(request)
        with asks_lock:
            return JSONResponse(dict(receipt_asks.get(code, {})))

    routes = [
        Route("/health", health),
        Route("/banks/{bank}/echo", echo, methods=["POST"]),
        Route("/banks/{bank}/iso/pain.001", pain001, methods=["POST"]),
        Route("/banks/{bank}/iso/pain.002/{msg_id}", pain002),
        Route("/banks/{bank}/iso/{kind:str}", camt),
        Route("/banks/{bank}/h2h/transfer", h2h_transfer, methods=["POST"]),
        Route("/banks/{bank}/h2h/query", h2h_query, methods=["POST"]),
        Route("/banks/{bank}/h2h/statement", h2h_statement),
        Route("/banks/{bank}/h2h/balance", h2h_balance),
        Route("/banks/{bank}/receipts/verify", receipt_verify, methods=["POST"]),
        Route("/banks/{bank}/receipts/batch", receipt_batch, methods=["POST"]),
        Route("/banks/{bank}/receipts/{ref}", receipt),
    ]
    if control_api:
        routes += [
            Route("/_sandbox/clock", control_clock, methods=["POST"]),
            Route("/_sandbox/faults", control_faults, methods=["PUT"]),
            Route("/_sandbox/ledger", control_ledger),
            Route("/_sandbox/signers/{bank}", control_signer, methods=["POST"]),
            Route("/_sandbox/payments/{bank}", control_payments),
            Route("/_sandbox/receipt-asks/{bank}", control_receipt_asks),
        ]

    async def unknown_bank(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=404)

    return Starlette(routes=routes, exception_handlers={UnknownBank: unknown_bank})


# --- rendering receipts on every core ----------------------------------------------------------

#: Worker processes that render and sign the receipts of batch downloads (PDF drawing is pure
#: Python and holds the GIL: threads would take turns on one core). 0 renders in the thread.
RECEIPT_WORKERS = min(4, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
#: Fewer receipts than this are rendered in the request's own thread (a fraction of a second),
#: so small banks, tests and demos never start the worker processes.
POOL_THRESHOLD = 64
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def render_many(datas: list[ReceiptData], identity: Identity) -> list[tuple[bytes, str, str]]:
    """(pdf, verification code, signature) per receipt, the same bytes however rendered."""
    args = (identity.key_pem, identity.cert_pem, identity.receipt_secret)
    pool = _receipt_pool() if len(datas) >= POOL_THRESHOLD else None
    if pool is None:
        return render_signed(datas, *args)
    size = -(-len(datas) // RECEIPT_WORKERS)
    parts = [datas[i:i + size] for i in range(0, len(datas), size)]
    return [one for part in pool.map(render_signed, parts, *([a] * len(parts) for a in args))
            for one in part]


def warm_receipt_pool(payments: int) -> None:
    """An order this big will be followed by batch receipt downloads: start the workers now
    (each takes a second or two to import), so the first download does not wait for them."""
    if payments >= POOL_THRESHOLD and _pool is None:
        pool = _receipt_pool()
        if pool is not None:
            for _ in range(RECEIPT_WORKERS):
                pool.submit(int)


def _receipt_pool() -> ProcessPoolExecutor | None:
    global _pool
    if RECEIPT_WORKERS < 2:
        return None
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: this process runs threads (server, settlement) that a fork
            # would copy mid-flight with their locks held.
            _pool = ProcessPoolExecutor(RECEIPT_WORKERS, mp_context=get_context("spawn"),
                                        initializer=_exit_with_parent, initargs=(os.getpid(),))
        return _pool


def close_receipt_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose bank process is gone (killed) ends too, instead of lingering."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _iso_status(status: str, reason: str | None, text: str | None) -> tuple[str, str | None, str | None]:
    if status == "RTND":
        # pain.002 has no 'returned' status; banks report a 退票 as a late rejection.
        return "RJCT", reason or "AC04", f"returned after settlement (退票): {text or ''}"[:105]
    return status, reason, text


def _message_name(sandbox: Sandbox, code: str, msg_id: str) -> str:
    from sqlalchemy import select

    from connectors.sandbox.models import Message

    with sandbox.sessions() as s:
        return s.execute(select(Message.message_name).where(
            Message.bank == code, Message.msg_id == msg_id)).scalar_one()


def _rejected_again(sandbox: Sandbox, code: str, ref: str) -> dict[str, str]:
    """The bank's last word on a reference it holds no payment for: its refusal, or never seen."""
    from sqlalchemy import select

    from connectors.sandbox.models import Rejection

    with sandbox.sessions() as s:
        row = s.execute(select(Rejection).where(Rejection.bank == code,
                                                Rejection.end_to_end_id == ref)
                        .order_by(Rejection.id.desc())).scalars().first()
    if row is None:
        return {"业务参考号": ref, "状态": "", "结果": "", "错误码": "NOTFOUND",
                "错误信息": "银行未收到该业务参考号 (never received)", "银行流水号": ""}
    return cnh2h.rejected(Outcome(row.end_to_end_id, None, "RJCT", row.reason_code,
                                  row.reason_text))


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _best_effort_ids(body: bytes) -> tuple[str, str]:
    """The order's MsgId and message name for a refusal, read without trusting anything."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(body, parser)
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag.endswith("}MsgId"):
                ns = el.tag[1:].split("}")[0]
                return (el.text or "UNKNOWN")[:35], ns.rsplit(":", 1)[-1]
    except etree.XMLSyntaxError:
        pass
    return "UNKNOWN", "pain.001.001.09"


def _merge(documents: list[bytes]) -> bytes:
    """Several statements of one kind in one document (camt allows 1..n Stmt/Ntfctn)."""
    if len(documents) == 1:
        return documents[0]
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    first = etree.fromstring(documents[0], parser)
    container = first[0]
    for doc in documents[1:]:
        other = etree.fromstring(doc, parser)[0]
        for child in other:
            if etree.QName(child).localname in ("Stmt", "Rpt", "Ntfctn"):
                container.append(child)
    return etree.tostring(first, xml_declaration=True, encoding="UTF-8")




_XML_SIGNATURE = re.compile(rb"<(?:ds:)?Signature[ >].*?</(?:ds:)?Signature>", re.S)


def _damaged(response: Response, *, tampered: bool) -> Response:
    """The answer as a broken gateway or a man in the middle would hand it on."""
    body = bytes(response.body)
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-length", "x-signature")} if not tampered else \
        {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    if tampered:
        # One digit changed in the content the signature covers (an amount, a date, an id).
        at = next((i for i in range(len(body) // 3, len(body)) if body[i:i + 1].isdigit()), None)
        if at is not None:
            digit = body[at] - 48
            body = body[:at] + str((digit + 1) % 10).encode() + body[at + 1:]
    else:
        body = _XML_SIGNATURE.sub(b"", body)
    return Response(body, status_code=response.status_code, headers=headers,
                    media_type=response.media_type)
