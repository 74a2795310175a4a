"""The Chinese direct-connect (银企直联) dialect of the sandbox bank: JSON with Chinese keys.

Modelled on the public conventions of Chinese banks' host-to-host interfaces: each payment
carries a unique 业务参考号 (business reference) that is its idempotency key; statuses are
AUT (待授权, awaiting authorisation at the bank: not used by the sandbox), NTE (已受理待执行,
queued for the next business day), BNK (银行处理中, in process) and FIN (完成, final) with a
result S (成功), F (失败) or B (退票, returned after success).
Request and answer bodies are signed detached: ``X-Signature`` (base64) over the exact body
bytes, ``X-Signer`` the SHA-256 fingerprint of the signing certificate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.sandbox.bank import Instruction, Outcome
from connectors.sandbox.models import Payment
from connectors.sandbox.records import AccountStatement
from yinqi.money import Money

REASONS_ZH = {
    "AC01": "账号不存在", "AC04": "账户已销户", "AC06": "账户已冻结", "AM01": "金额必须大于零",
    "AM02": "超过账户限额", "AM03": "币种与账户不符", "AM04": "余额不足", "AM12": "金额格式错误",
    "RR04": "收款方在监管黑名单中", "DUPL": "业务参考号重复", "FF01": "报文格式错误",
    "DS0A": "缺少签名", "DS0B": "签名验证失败", "DS0D": "签名证书已过期", "DS0E": "签名证书未登记",
}

REQUIRED = ("业务参考号", "付款账号", "收款账号", "收款户名", "金额")
# Field lengths as the bank's interface specification states them.
MAX_LENGTH = {"批次号": 64, "业务参考号": 64, "付款账号": 40, "付款户名": 200, "收款账号": 40,
              "收款户名": 200, "收款行名": 200, "联行号": 12, "金额": 20, "币种": 3, "用途": 200,
              "期望付款日": 10}


class H2hFormatError(ValueError):
    """The request is not a valid direct-connect message; the message names the field."""


def _text(item: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise H2hFormatError(f"{where}: 缺少字段 {key} (missing field)")
        return None
    if not isinstance(value, str):
        raise H2hFormatError(f"{where}: 字段 {key} 必须是字符串 (must be a string)")
    value = value.strip()
    if len(value) > MAX_LENGTH.get(key, 200):
        raise H2hFormatError(f"{where}: 字段 {key} 超长 (longer than {MAX_LENGTH.get(key, 200)})")
    return value


def parse_transfer(body: bytes) -> tuple[str, bool, list[Instruction]]:
    """The request's idempotency key (批次号, or the single 业务参考号), whether it is a batch,
    and its payments."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise H2hFormatError(f"报文不是UTF-8 JSON (body is not UTF-8 JSON): {exc}") from None
    if not isinstance(data, dict):
        raise H2hFormatError("报文必须是JSON对象 (body must be a JSON object)")
    if "明细" in data:
        batch = _text(data, "批次号", "批次", required=True)
        items = data["明细"]
        if not isinstance(items, list) or not items:
            raise H2hFormatError("明细 必须是非空数组 (明细 must be a non-empty list)")
    else:
        batch, items = None, [data]
    instructions = []
    for n, item in enumerate(items, start=1):
        where = f"明细[{n}]" if batch else "报文"
        if not isinstance(item, dict):
            raise H2hFormatError(f"{where}: 必须是JSON对象 (must be an object)")
        for key in REQUIRED:
            _text(item, key, where, required=True)
        raw_amount = _text(item, "金额", where, required=True)
        try:
            amount = Decimal(raw_amount or "")
        except InvalidOperation:
            raise H2hFormatError(f"{where}: 金额 {raw_amount!r} 不是数字 (not a number)") from None
        if not amount.is_finite():
            raise H2hFormatError(f"{where}: 金额 {raw_amount!r} 不是数字 (not a number)")
        ref = _text(item, "业务参考号", where, required=True)
        assert ref is not None
        requested = _text(item, "期望付款日", where)
        try:
            requested_date = date.fromisoformat(requested) if requested else None
        except ValueError:
            raise H2hFormatError(f"{where}: 期望付款日 {requested!r} 不是日期 (not a date)") from None
        instructions.append(Instruction(
            end_to_end_id=ref, instr_id=None,
            debtor_account=_text(item, "付款账号", where, required=True) or "",
            debtor_name=_text(item, "付款户名", where) or "",
            creditor_account=_text(item, "收款账号", where, required=True) or "",
            creditor_name=_text(item, "收款户名", where, required=True) or "",
            creditor_agent=_text(item, "联行号", where),
            creditor_bank_name=_text(item, "收款行名", where),
            amount=amount, currency=_text(item, "币种", where) or "CNY",
            purpose=_text(item, "用途", where), urgent=item.get("加急") in ("是", True),
            requested_date=requested_date,
            batch_key=f"{batch}" if batch and data.get("合并记账") in ("是", True) else None,
        ))
    refs = [i.end_to_end_id for i in instructions]
    if len(set(refs)) != len(refs):
        dup = next(r for r in refs if refs.count(r) > 1)
        raise H2hFormatError(f"业务参考号 {dup} 在同一报文中重复 (repeated within the request)")
    return batch or refs[0], batch is not None, instructions


def status_of(payment: Payment, today: date) -> dict[str, str]:
    if payment.status == "ACSP":
        state, result = ("NTE" if payment.execution_date > today else "BNK"), ""
    elif payment.status == "ACSC":
        state, result = "FIN", "S"
    elif payment.status == "RTND":
        state, result = "FIN", "B"
    else:
        state, result = "FIN", "F"
    code = payment.reason_code or ""
    return {"业务参考号": payment.end_to_end_id, "状态": state, "结果": result,
            "错误码": code, "错误信息": REASONS_ZH.get(code, payment.reason_text or "") if code else "",
            "银行流水号": payment.bank_reference,
            "金额": str(Money.from_minor(payment.amount_minor, payment.currency).amount),
            "币种": payment.currency}


def rejected(outcome: Outcome) -> dict[str, str]:
    code = outcome.reason_code or ""
    return {"业务参考号": outcome.end_to_end_id, "状态": "FIN", "结果": "F", "错误码": code,
            "错误信息": REASONS_ZH.get(code, outcome.reason_text or ""), "银行流水号": ""}


def render(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")


def render_results(batch: str, results: Sequence[dict[str, str]]) -> bytes:
    return render({"批次号": batch, "结果": list(results)})


def render_statement(stmt: AccountStatement) -> dict[str, Any]:
    lines = []
    for entry in stmt.entries:
        detail = entry.details[0] if entry.details else None
        lines.append({
            "记账日期": entry.booking_date.isoformat(), "起息日": entry.value_date.isoformat(),
            "借贷标志": "贷" if entry.credit else "借", "金额": str(entry.amount),
            "业务参考号": ",".join(d.end_to_end_id or "" for d in entry.details),
            "银行流水号": entry.bank_reference,
            "对方户名": detail.counterparty_name if detail else "",
            "对方账号": detail.counterparty_account if detail else "",
            # A fee line says which transfer it charges for, as Chinese banks' 摘要 do.
            "摘要": (detail.remittance if entry.kind == "fee" and detail and detail.remittance
                   else {"fee": "手续费", "return": "退票"}.get(
                       entry.kind, (detail.remittance if detail else "") or "")),
            "冲正": entry.reversal, "笔数": len(entry.details) or 1,
        })
    return {"账号": stmt.account, "币种": stmt.currency, "户名": stmt.owner_name,
            "日期": stmt.opening_date.isoformat() if stmt.opening_date else None,
            "对账单号": stmt.statement_id, "序号": stmt.electronic_sequence,
            "期初余额": str(stmt.opening_balance), "期末余额": str(stmt.closing_balance),
            "明细": lines}


def render_balance(account: str, currency: str, balance: Decimal, available: Decimal,
                   at: datetime) -> bytes:
    return render({"账号": account, "币种": currency, "余额": str(balance),
                   "可用余额": str(available), "时间": at.isoformat()})
