from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yinqi.batching import Batchable, BatchKey, plan_batches
from yinqi.errors import InvalidValue

D = date(2026, 11, 25)


def p(pid: int, bank: str = "icbc", acct: str = "A", cur: str = "CNY", urgent: bool = False,
      day: date = D) -> Batchable:
    return Batchable(pid, bank, acct, cur, urgent, day)


def test_one_message_per_account_currency_urgency_and_date() -> None:
    plan = plan_batches([p(1), p(2, acct="B"), p(3, urgent=True), p(4, cur="USD"), p(5),
                         p(6, day=date(2026, 11, 26)), p(7, bank="cmb", acct="C")],
                        {"icbc": 100, "cmb": 100})
    assert [(b.key, b.payment_ids) for b in plan] == [
        (BatchKey("cmb", "C", "CNY", False, D), (7,)),
        (BatchKey("icbc", "A", "CNY", False, D), (1, 5)),
        (BatchKey("icbc", "A", "CNY", False, date(2026, 11, 26)), (6,)),
        (BatchKey("icbc", "A", "CNY", True, D), (3,)),
        (BatchKey("icbc", "A", "USD", False, D), (4,)),
        (BatchKey("icbc", "B", "CNY", False, D), (2,)),
    ]


def test_split_at_the_bank_limit_in_id_order() -> None:
    plan = plan_batches([p(i) for i in (5, 3, 1, 4, 2)], {"icbc": 2})
    assert [b.payment_ids for b in plan] == [(1, 2), (3, 4), (5,)]


def test_a_bank_without_a_limit_is_an_error() -> None:
    with pytest.raises(InvalidValue, match="no batch size limit"):
        plan_batches([p(1, bank="boc")], {"icbc": 10})


@given(st.lists(st.tuples(st.sampled_from(["icbc", "cmb"]), st.sampled_from("AB"),
                          st.booleans()), max_size=300),
       st.integers(1, 50))
def test_every_payment_lands_in_exactly_one_batch_within_the_limit(rows, limit) -> None:  # type: ignore[no-untyped-def]
    payments = [p(i, bank, acct, urgent=u) for i, (bank, acct, u) in enumerate(rows)]
    plan = plan_batches(payments, {"icbc": limit, "cmb": limit})
    ids = [i for b in plan for i in b.payment_ids]
    assert sorted(ids) == list(range(len(rows)))
    assert all(1 <= len(b.payment_ids) <= limit for b in plan)
    by_id = {x.payment_id: x for x in payments}
    for b in plan:
        assert {(by_id[i].bank, by_id[i].debtor_account, by_id[i].urgent)
                for i in b.payment_ids} == {(b.key.bank, b.key.debtor_account, b.key.urgent)}
