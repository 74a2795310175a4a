"""The Chinese direct-connect connector.

Each payment carries its own 业务参考号 (the end-to-end ID) as the bank's idempotency key; a
batch (批次号 = our message ID) groups them. Statuses: AUT (awaiting authorisation at the
bank), NTE (queued), BNK (in process), FIN with 结果 S (settled), F (failed) or B (退票,
returned after success). They map onto ISO status codes so flows see one vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import InvalidOperation
from typing import Any

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
from connectors.iso20022.connector import download_receipt, download_receipts, signed_echo
from connectors.transport import Transport
from yinqi.bankdata import Statement, StatementLine, StatusReport
from yinqi.errors import InvalidValue
from yinqi.money import Money

# (状态, 结果) -> ISO transaction status
STATUS = {("AUT", ""): "PDNG", ("NTE", ""): "ACSP", ("BNK", ""): "ACSP",
          ("FIN", "S"): "ACSC", ("FIN", "F"): "RJCT", ("FIN", "B"): "RJCT"}
RETURNED = "B"


class H2hConnector(BankConnector):
    def __init__(self, code: str, transport: Transport, signer: Signer, bank_cert_pem: bytes,
                 archive: Archive) -> None:
        self.code, self._t, self._signer, self._archive = code, transport, signer, archive
        self._bank_cert = bank_cert_pem

    def close(self) -> None:
        self._t.close()

    def _post(self, path: str, payload: dict[str, Any], kind: str, name: str
              ) -> tuple[int, Any, Exchange]:
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return self._post_body(path, body, kind, name)

    def _post_body(self, path: str, body: bytes, kind: str, name: str
                   ) -> tuple[int, Any, Exchange]:
        sent, sent_hash = self._archive.keep(kind, name, body, suffix=".json")
        r = self._t.request("POST", path, idempotent=kind != "h2h.transfer", content=body,
                            headers={"Content-Type": "application/json; charset=utf-8",
                                     "X-Signature": detached.sign(body, self._signer.private_key),
                                     "X-Signer": self._signer.fingerprint})
        received, received_hash = self._archive.keep(f"{kind}.answer", name, r.content,
                                                      suffix=".json")
        return r.status_code, self._verified(r.content, r.headers.get("x-signature"), kind), \
            Exchange(sent, sent_hash, received, received_hash)

    def _verified(self, body: bytes, signature: str | None, what: str) -> Any:
        try:
            detached.verify(body, signature, self._bank_cert)
            return json.loads(body)
        except detached.DetachedSignatureError as exc:
            raise BadBankAnswer(self.code, f"{what}: {exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadBankAnswer(self.code, f"{what}: answer is not JSON ({exc})") from None

    def prepare(self, batch: OutgoingBatch) -> bytes:
        # The detached signature travels in a header and is recomputed per send; PKCS#1 v1.5
        # makes it the same for the same bytes, so the kept body is the whole signed order.
        d = batch.debtor
        items = [{
            "业务参考号": p.end_to_end_id, "付款账号": d.account, "付款户名": d.company,
            "收款账号": p.creditor_account, "收款户名": p.creditor_name,
            "收款行名": p.creditor_bank_name, "联行号": p.creditor_cnaps or "",
            "金额": str(p.amount.amount), "币种": p.amount.currency.code, "用途": p.purpose,
            "加急": "是" if (p.urgent or batch.urgent) else "否",
            "期望付款日": batch.execution_date.isoformat(),
        } for p in batch.payments]
        currencies = {p.amount.currency.code for p in batch.payments}
        if currencies != {d.currency}:
            raise InvalidValue(f"batch {batch.msg_id}: currencies {sorted(currencies)} do not "
                               f"match the debtor account's {d.currency}")
        payload = {"批次号": batch.msg_id, "明细": items,
                   "合并记账": "是" if batch.batch_booking else "否"}
        return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")

    def send_signed(self, msg_id: str, body: bytes) -> Submission:
        status, data, exchange = self._post_body("/h2h/transfer", body, "h2h.transfer", msg_id)
        if status in (401, 409, 422):
            reason = data.get("错误码") if isinstance(data, dict) else None
            return Submission(msg_id, False, (StatusReport(
                msg_id, "RJCT", reason_code=reason,
                reason_text=data.get("错误信息") if isinstance(data, dict) else None),),
                exchange=exchange)
        if status != 200:
            raise BankRefused(self.code, f"batch {msg_id}: HTTP {status}", status_code=status)
        return Submission(msg_id, True, self._reports(msg_id, data), exchange=exchange)

    def _reports(self, msg_id: str, data: Any) -> tuple[StatusReport, ...]:
        try:
            rows = data["结果"]
            reports = []
            for row in rows:
                code = row["错误码"] or None
                if code == "NOTFOUND":
                    continue
                iso = STATUS.get((row["状态"], row["结果"]))
                if iso is None:
                    raise KeyError(f"status {row['状态']}/{row['结果']}")
                text = row.get("错误信息") or None
                if row["结果"] == RETURNED:
                    text = f"returned after settlement (退票): {text or ''}".strip()
                    code = code or "AC04"
                reports.append(StatusReport(msg_id, None, end_to_end_id=row["业务参考号"],
                                            tx_status=iso, reason_code=code, reason_text=text,
                                            bank_reference=row.get("银行流水号") or None))
            return tuple(reports)
        except (KeyError, TypeError) as exc:
            raise BadBankAnswer(self.code, f"unreadable status answer ({exc})") from None

    def status(self, msg_id: str, end_to_end_ids: Sequence[str]) -> StatusAnswer:
        status, data, exchange = self._post("/h2h/query", {"业务参考号": list(end_to_end_ids)},
                                            "h2h.query", msg_id)
        if status != 200:
            raise BankRefused(self.code, f"query {msg_id}: HTTP {status}", status_code=status)
        reports = self._reports(msg_id, data)
        return StatusAnswer(bool(reports), reports, exchange)

    def balance(self, account: str, currency: str) -> Balance:
        r = self._t.request("GET", "/h2h/balance", idempotent=True, params={"account": account})
        data = self._verified(r.content, r.headers.get("x-signature"), "balance")
        if r.status_code != 200:
            raise BankRefused(self.code, f"balance {account}: {data.get('错误信息')}",
                              reason_code=data.get("错误码"), status_code=r.status_code)
        cur = data["币种"]
        return Balance(self.code, account, Money.of(data["余额"], cur),
                       Money.of(data["可用余额"], cur), datetime.fromisoformat(data["时间"]))

    def statements(self, account: str, first: date, last: date) -> list[Statement]:
        out: list[Statement] = []
        day = first
        while day <= last:
            r = self._t.request("GET", "/h2h/statement", idempotent=True,
                                params={"account": account, "date": day.isoformat()})
            if r.status_code == 200:
                self._archive.keep("h2h.statement", f"{account}-{day}", r.content, suffix=".json")
                data = self._verified(r.content, r.headers.get("x-signature"), "statement")
                out.extend(parse_h2h_statement(doc, f"{self.code} 对账单 {day}")
                           for doc in data["对账单"])
            elif r.status_code != 404:
                raise BankRefused(self.code, f"statement {account} {day}: HTTP {r.status_code}",
                                  status_code=r.status_code)
            day = date.fromordinal(day.toordinal() + 1)
        return out

    def notifications(self, account: str, day: date) -> list[Statement]:
        # The dialect has no separate notifications: the day's statement carries the entries.
        return self.statements(account, day, day)

    def receipt(self, reference: str) -> DownloadedReceipt:
        return download_receipt(self, self._t, self._archive, self._bank_cert, reference)

    def receipts(self, references: Sequence[str]) -> dict[str, DownloadedReceipt | BankError]:
        return download_receipts(self, self._t, self._archive, self._bank_cert, references)

    def echo(self, text: str) -> Echo:
        return signed_echo(self.code, self._t, self._signer, self._bank_cert, text)


def parse_h2h_statement(doc: dict[str, Any], source: str) -> Statement:
    """A direct-connect 对账单 as a Statement; reports mismatches, never fixes them."""
    try:
        currency = doc["币种"]
        lines = []
        for n, row in enumerate(doc["明细"], start=1):
            amount = Money.of(row["金额"], currency)
            if row["借贷标志"] not in ("借", "贷"):
                raise InvalidValue(f"{source}: 明细[{n}].借贷标志 {row['借贷标志']!r} is not 借/贷")
            refs = [r for r in str(row.get("业务参考号") or "").split(",") if r]
            lines.append(StatementLine(
                amount=amount if row["借贷标志"] == "贷" else -amount,
                booking_date=date.fromisoformat(row["记账日期"]),
                value_date=date.fromisoformat(row["起息日"]),
                end_to_end_id=refs[0] if len(refs) == 1 else None,
                bank_reference=row.get("银行流水号") or None,
                counterparty_name=row.get("对方户名") or None,
                counterparty_account=row.get("对方账号") or None,
                remittance=row.get("摘要") or None, is_reversal=bool(row.get("冲正"))))
        opening = Money.of(doc["期初余额"], currency)
        closing = Money.of(doc["期末余额"], currency)
        day = date.fromisoformat(doc["日期"]) if doc.get("日期") else None
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise InvalidValue(f"{source}: unreadable 对账单 ({exc})") from None
    stmt = Statement(account=doc["账号"], currency=currency, statement_id=doc["对账单号"],
                     sequence=str(doc.get("序号")) if doc.get("序号") is not None else None,
                     opening_balance=opening, closing_balance=closing, lines=tuple(lines),
                     created_at=datetime.now(UTC), from_date=day, to_date=day, kind="cn-h2h")
    if stmt.balances_add_up() is False:
        movement = stmt.movement()
        assert movement is not None
        return replace(stmt, warnings=(
            f"opening {opening.amount} + entries {movement.amount} = "
            f"{(opening + movement).amount} but the closing balance is {closing.amount}",))
    return stmt
