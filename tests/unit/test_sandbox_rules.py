"""Sandbox pieces that need no server: fault draws, the ledger, the direct-connect parser."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import create_engine

from connectors.sandbox import ledger
from connectors.sandbox.cnh2h import H2hFormatError, parse_transfer
from connectors.sandbox.faults import FaultPlan
from connectors.sandbox.models import Account, SandboxBase
from connectors.sandbox.settings import FaultSpec


def test_fault_draws_are_reproducible_and_retries_draw_afresh() -> None:
    spec = FaultSpec(seed=7, http_5xx_rate=0.5, reset_rate=0.5, duplicate_status_rate=0.5)
    a, b = FaultPlan(spec), FaultPlan(spec)
    first = [a.draw(f"key-{i % 5}") for i in range(50)]
    assert first == [b.draw(f"key-{i % 5}") for i in range(50)]
    assert len({f for f in first}) > 1
    other = FaultPlan(FaultSpec(seed=8, http_5xx_rate=0.5, reset_rate=0.5))
    assert [other.draw(f"key-{i % 5}") for i in range(50)] != first


def test_a_refused_request_carries_no_later_faults() -> None:
    plan = FaultPlan(FaultSpec(seed=1, maintenance_rate=1, http_5xx_rate=1,
                               timeout_after_booking_rate=1, duplicate_status_rate=1))
    drawn = plan.draw("k")
    assert drawn.named() == ["maintenance"]
    assert plan.injected == {"maintenance": 1}


def test_forced_faults_and_zero_rates() -> None:
    plan = FaultPlan(FaultSpec())
    assert plan.draw("k").named() == []
    assert plan.draw("k", "reset,unknown").named() == ["reset"]
    assert not plan.returns("E2E-1")


def test_returns_are_decided_once_per_payment() -> None:
    plan = FaultPlan(FaultSpec(seed=3, return_rate=0.5))
    decisions = [plan.returns(f"E2E-{i}") for i in range(200)]
    assert decisions == [plan.returns(f"E2E-{i}") for i in range(200)]
    assert 60 < sum(decisions) < 140


@pytest.fixture
def session():  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    SandboxBase.metadata.create_all(engine)
    with Session(engine) as s:
        yield s


def _acct(s, number: str, currency: str = "CNY") -> Account:  # type: ignore[no-untyped-def]
    a = Account(bank="b", number=number, currency=currency, name=number, kind="customer")
    s.add(a)
    s.flush()
    return a


def test_the_ledger_refuses_anything_but_balanced_double_entry(session) -> None:  # type: ignore[no-untyped-def]
    a, b, usd = _acct(session, "A"), _acct(session, "B"), _acct(session, "U", "USD")
    kw = dict(bank="b", kind="t", at=datetime.now(UTC), booking_date=date(2026, 11, 24),
              value_date=date(2026, 11, 24))
    with pytest.raises(ledger.LedgerError, match="two legs"):
        ledger.post(session, legs=[(a, 0)], **kw)
    with pytest.raises(ledger.LedgerError, match="does not balance"):
        ledger.post(session, legs=[(a, -100), (b, 99)], **kw)
    with pytest.raises(ledger.LedgerError, match="mixes currencies"):
        ledger.post(session, legs=[(a, -100), (usd, 100)], **kw)
    ledger.post(session, legs=[(a, -100), (b, 100)], **kw)
    ledger.post(session, legs=[(a, -50), (b, 25), (b, 25)], **kw)
    assert (ledger.balance(session, a), ledger.balance(session, b)) == (-150, 150)
    report = ledger.check(session)
    assert report["balanced"] and report["bookings"] == 2


ITEM = {"业务参考号": "R1", "付款账号": "755912345610808", "收款账号": "49505976717236739",
        "收款户名": "杨磊", "金额": "41728.21", "联行号": "105290036005", "加急": "是"}


def test_direct_connect_single_and_batch_requests() -> None:
    key, batch, [one] = parse_transfer(json.dumps(ITEM, ensure_ascii=False).encode())
    assert key == "R1" and not batch and one.amount == Decimal("41728.21") and one.urgent
    assert one.currency == "CNY" and one.creditor_agent == "105290036005"
    key, batch, many = parse_transfer(json.dumps(
        {"批次号": "B9", "合并记账": "是", "明细": [ITEM, {**ITEM, "业务参考号": "R2"}]},
        ensure_ascii=False).encode())
    assert key == "B9" and batch and [i.batch_key for i in many] == ["B9", "B9"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({k: v for k, v in ITEM.items() if k != "收款户名"}).encode(), "收款户名"),
        (json.dumps({**ITEM, "金额": "1,000"}).encode(), "不是数字"),
        (json.dumps({**ITEM, "金额": 12.5}).encode(), "必须是字符串"),
        (json.dumps({**ITEM, "期望付款日": "tomorrow"}).encode(), "期望付款日"),
        (json.dumps({"批次号": "B", "明细": []}).encode(), "非空数组"),
        (json.dumps({"批次号": "B", "明细": [ITEM, ITEM]}).encode(), "重复"),
        (json.dumps({**ITEM, "业务参考号": "R" * 65}).encode(), "超长"),
        (json.dumps({**ITEM, "联行号": "1" * 13}).encode(), "超长"),
    ],
)
def test_direct_connect_format_errors_name_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(H2hFormatError, match=message):
        parse_transfer(payload)
