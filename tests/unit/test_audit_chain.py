"""The audit chain as pure functions: every kind of tampering is named at the right event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yinqi import audit

KEY = b"k" * 32
T0 = datetime(2026, 11, 25, 1, 2, 3, 456789, tzinfo=UTC)


def build(n: int, key: bytes = KEY) -> tuple[list[audit.SealedEvent], audit.Head]:
    rows, prev = [], audit.GENESIS_HASH
    for i in range(1, n + 1):
        ev = audit.AuditEvent(i, T0 + timedelta(seconds=i), f"user{i % 3}", "payment.approved",
                              "payment", (str(i), str(i + 1)), {"amount": f"{i}.00", "n": i})
        row = audit.link(prev, ev, key)
        rows.append(row)
        prev = row.hash
    return rows, audit.make_head(n, prev, key)


def test_intact_chain_verifies() -> None:
    rows, head = build(50)
    verdict = audit.verify(rows, KEY, head)
    assert verdict.ok and verdict.checked == 50
    assert str(verdict) == "audit chain intact: 50 events verified"


def test_empty_chain_without_head_is_fine_but_rows_without_head_are_not() -> None:
    assert audit.verify([], KEY, None).ok
    rows, _ = build(3)
    verdict = audit.verify(rows, KEY, None)
    assert not verdict.ok and "head record is missing" in verdict.problem


def test_edited_event_is_named() -> None:
    rows, head = build(10)
    ev = dataclasses.replace(rows[6].event, details={"amount": "999999.00", "n": 7})
    rows[6] = dataclasses.replace(rows[6], event=ev)
    verdict = audit.verify(rows, KEY, head)
    assert not verdict.ok and verdict.first_bad_seq == 7
    assert "edited" in verdict.problem
    assert "BROKEN at event #7" in str(verdict)


def test_edited_and_rehashed_event_fails_on_its_seal() -> None:
    rows, head = build(10)
    ev = dataclasses.replace(rows[3].event, actor="mallory")
    forged = audit.link(rows[2].hash, ev, b"not-the-key" * 3)
    rows[3] = forged
    verdict = audit.verify(rows, KEY, head)
    assert verdict.first_bad_seq == 4 and "seal" in verdict.problem


def test_deleted_middle_event_is_named() -> None:
    rows, head = build(10)
    del rows[4]
    verdict = audit.verify(rows, KEY, head)
    assert verdict.first_bad_seq == 6 and "#5 is missing" in verdict.problem


def test_deleted_tail_is_caught_by_the_head() -> None:
    rows, head = build(10)
    verdict = audit.verify(rows[:8], KEY, head)
    assert not verdict.ok and verdict.first_bad_seq == 9
    assert "deleted from the end" in verdict.problem


def test_swapped_events_are_caught() -> None:
    rows, head = build(10)
    a, b = rows[2], rows[3]
    rows[2] = dataclasses.replace(b, event=dataclasses.replace(b.event, seq=3))
    rows[3] = dataclasses.replace(a, event=dataclasses.replace(a.event, seq=4))
    verdict = audit.verify(rows, KEY, head)
    assert not verdict.ok and verdict.first_bad_seq == 3


def test_forged_head_is_caught() -> None:
    rows, head = build(5)
    verdict = audit.verify(rows[:4], KEY, audit.Head(4, rows[3].hash, head.mac))
    assert not verdict.ok and "head's seal" in verdict.problem


def test_wrong_key_fails_at_the_first_event() -> None:
    rows, head = build(5)
    assert audit.verify(rows, b"other" * 8, head).first_bad_seq == 1


def test_canonical_form_ignores_dict_order_and_is_timezone_exact() -> None:
    a = audit.AuditEvent(1, T0, "u", "x", "t", ("1",), {"b": 1, "a": "二"})
    b = audit.AuditEvent(1, T0.astimezone(UTC), "u", "x", "t", ("1",), {"a": "二", "b": 1})
    assert audit.canonical(a) == audit.canonical(b)
    with pytest.raises(ValueError):
        audit.canonical(audit.AuditEvent(1, T0.replace(tzinfo=None), "u", "x", "t", ()))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 20), data=st.data())
def test_any_single_field_edit_anywhere_is_detected_at_that_event(n: int, data) -> None:  # type: ignore[no-untyped-def]
    rows, head = build(n)
    i = data.draw(st.integers(0, n - 1))
    field = data.draw(st.sampled_from(["actor", "action", "subject_ids", "details", "occurred_at"]))
    ev = rows[i].event
    new_value = {
        "actor": ev.actor + "x",
        "action": ev.action + ".x",
        "subject_ids": ev.subject_ids + ("99",),
        "details": {**ev.details, "extra": 1},
        "occurred_at": ev.occurred_at + timedelta(microseconds=1),
    }[field]
    rows[i] = dataclasses.replace(rows[i], event=dataclasses.replace(ev, **{field: new_value}))
    verdict = audit.verify(rows, KEY, head)
    assert not verdict.ok and verdict.first_bad_seq == i + 1
