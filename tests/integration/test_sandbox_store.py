"""The sandbox bank's logic on both databases, in process: races and restarts."""

from __future__ import annotations

import threading
from dataclasses import replace
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
    clock.advance(timedelta(days=1))
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


def test_concurrent_orders_cannot_overdraw_an_account(db_url: str) -> None:
    # 30,000,000.00 balance + 1,000,000.00 overdraft: at most two 12,000,000.00 payments fit.
    sandbox = make(db_url, FakeClock(START))
    start = threading.Barrier(10)
    errors: list[BaseException] = []

    def order(n: int) -> None:
        try:
            start.wait()
            sandbox.submit("icbc", f"OD-{n}", dialect="iso20022", message_name="pain.001.001.09",
                           request=str(n).encode(), render=render, instructions=[Instruction(
                               end_to_end_id=f"OD-{n}", instr_id=None,
                               debtor_account="1202021209900654321", debtor_name="演示",
                               creditor_account="6829597379400215148", creditor_name="华信",
                               creditor_agent="102100099996", creditor_bank_name=None,
                               amount=Decimal("12000000.00"), currency="CNY", purpose=None)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=order, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sandbox.ledger_check()["payments"] == {"ACSP": 2}
    acct = sandbox.customer_account("icbc", "1202021209900654321")
    assert acct is not None and acct.balance_minor == 600_000_000  # 6,000,000.00 left
    sandbox.engine.dispose()


def test_one_end_to_end_id_in_concurrent_messages_is_booked_once(db_url: str) -> None:
    sandbox = make(db_url, FakeClock(START))
    start = threading.Barrier(6)
    answers: list[bytes] = []

    def order(n: int) -> None:
        start.wait()
        answers.append(sandbox.submit("icbc", f"SAME-{n}", dialect="iso20022",
                                      message_name="pain.001.001.09", request=b"x",
                                      instructions=orders(1, "SAME"), render=render).body)

    threads = [threading.Thread(target=order, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdicts = sorted(answers)
    assert len(verdicts) == 6
    assert sum(b"'ACSP'" in a for a in verdicts) == 1
    assert sum(b"'DUPL'" in a for a in verdicts) == 5
    sandbox.engine.dispose()


def test_the_bank_never_pays_into_its_own_books_and_charges_are_covered(db_url: str) -> None:
    sandbox = make(db_url, FakeClock(START))
    base = orders(1, "X")[0]
    answer = sandbox.submit("icbc", "INT", dialect="iso20022", message_name="pain.001.001.09",
                            request=b"x", render=render, instructions=[
                                replace(base, end_to_end_id="INT-1", creditor_account="CAPITAL-CNY",
                                        creditor_agent="102100099996"),
                                # 31,000,000.00 fits the overdraft only without the 5.50 charge.
                                replace(base, end_to_end_id="INT-2",
                                        debtor_account="1202021209900654321",
                                        amount=Decimal("31000000.00")),
                            ])
    assert answer.body == repr([("INT-1", "RJCT", "AC01"), ("INT-2", "RJCT", "AM04")]).encode()
    sandbox.engine.dispose()
