"""The sandbox bank's logic on both databases, in process: races and restarts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.sandbox.bank import Instruction, Sandbox
from connectors.sandbox.clock import FakeClock
from connectors.sandbox.faults import FaultPlan
from connectors.sandbox.runner import _engine
from connectors.sandbox.settings import load_sandbox_config

START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def make(db_url: str, clock: FakeClock) -> Sandbox:
    config, _ = load_sandbox_config()
    config = config.model_copy(update={"database_url": db_url})
    sandbox = Sandbox(config, _engine(db_url), clock, FaultPlan(config.faults))
    sandbox.setup()
    return sandbox


def orders(n: int, prefix: str) -> list[Instruction]:
    return [Instruction(end_to_end_id=f"{prefix}-{i}", instr_id=None,
                        debtor_account="1202021209900123456", debtor_name="演示科技有限公司",
                        creditor_account="49505976717236739", creditor_name="杨磊",
                        creditor_agent="105290036005", creditor_bank_name=None,
                        amount=Decimal("10.00") + i, currency="CNY", purpose="货款")
            for i in range(n)]


def render(outcomes):  # type: ignore[no-untyped-def]
    return repr([(o.end_to_end_id, o.status, o.reason_code) for o in outcomes]).encode(), "text/plain"


def test_one_message_sent_eight_times_at_once_is_booked_once(db_url: str) -> None:
    sandbox = make(db_url, FakeClock(START))
    answers: list[bytes] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def client() -> None:
        try:
            start.wait()
            answers.append(sandbox.submit("icbc", "RACE-1", dialect="iso20022",
                                          message_name="pain.001.001.09", request=b"x",
                                          instructions=orders(20, "RACE"), render=render).body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(answers)) == 1 and len(answers) == 8
    check = sandbox.ledger_check()
    assert check["balanced"] and check["payments_booked_twice"] == 0
    assert check["payments"] == {"ACSP": 20}
    sandbox.engine.dispose()


def test_settlement_and_a_restart_lose_nothing(db_url: str) -> None:
    clock = FakeClock(START)
    sandbox = make(db_url, clock)
    sandbox.submit("icbc", "M-1", dialect="iso20022", message_name="pain.001.001.09",
                   request=b"x", instructions=orders(5, "S"), render=render)
    sandbox.engine.dispose()
    again = make(db_url, clock)  # a new process on the same database: setup is idempotent
    clock.advance(timedelta(minutes=5))
    assert again.settle_due() == 5
    assert again.settle_due() == 0
    replay = again.submit("icbc", "M-1", dialect="iso20022", message_name="pain.001.001.09",
                          request=b"x", instructions=orders(5, "S"), render=render)
    assert replay.replayed
    check = again.ledger_check()
    assert check["balanced"] and check["payments"] == {"ACSC": 5}
    stmt = again.statement("icbc", "1202021209900123456", START.date())
    assert stmt.opening_balance + sum(
        (e.amount if e.credit else -e.amount) for e in stmt.entries) == stmt.closing_balance
    assert stmt.opening_balance == Decimal("0.00")
    assert stmt.closing_balance == Decimal("50000000.00") - sum(Decimal("10.00") + i for i in range(5)) \
        - 5 * Decimal("5.50")
    again.engine.dispose()


@pytest.mark.parametrize("hour_local", [16, 17])
def test_cutoff_moves_execution_and_settlement_to_the_next_business_day(db_url: str, hour_local: int) -> None:
    # Friday 2026-11-27 in Shanghai; cut-off 16:30.
    clock = FakeClock(datetime(2026, 11, 27, hour_local - 8, 0, tzinfo=UTC))
    sandbox = make(db_url, clock)
    sandbox.submit("icbc", "CUT", dialect="iso20022", message_name="pain.001.001.09",
                   request=b"x", instructions=orders(1, "CUT"), render=render)
    [p] = sandbox.payments("icbc", msg_id="CUT")
    expected = "2026-11-27" if hour_local == 16 else "2026-11-30"
    assert p.execution_date.isoformat() == expected
    clock.advance(timedelta(hours=2))
    settled = sandbox.payments("icbc", msg_id="CUT")[0].status
    assert settled == ("ACSC" if hour_local == 16 else "ACSP")
    clock.set(datetime(2026, 11, 30, 1, 0, 5, tzinfo=UTC))  # Monday 09:00:05 local
    assert sandbox.payments("icbc", msg_id="CUT")[0].status == "ACSC"
    sandbox.engine.dispose()
