"""The audit chain in the database: hand edits made with plain SQL are found and named."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from yinqi.store import AuditLog

KEY = b"audit-key-for-tests-0123456789ab"


def _fill(sessions, log: AuditLog, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        with sessions.begin() as s:
            log.append(s, actor="li.approver", action="payment.approved",
                       subject_type="payment", subject_ids=[i, i + 1],
                       details={"amount": f"{i}.01", "note": "审批通过"})


def _verify(sessions, log: AuditLog):  # type: ignore[no-untyped-def]
    with sessions() as s:
        return log.verify(s)


def test_appended_events_verify_and_survive_the_round_trip(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    _fill(sessions, log, 25)
    verdict = _verify(sessions, log)
    assert verdict.ok and verdict.checked == 25
    with sessions() as s:
        assert AuditLog.head(s)[0] == 25


def test_an_event_rolled_back_with_its_transaction_leaves_no_trace(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    _fill(sessions, log, 2)
    with pytest.raises(RuntimeError):
        with sessions.begin() as s:
            log.append(s, actor="x", action="payment.approved", subject_type="payment")
            raise RuntimeError("the state change failed")
    _fill(sessions, log, 1)
    verdict = _verify(sessions, log)
    assert verdict.ok and verdict.checked == 3


TAMPERING = {
    "edit": ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 7", 7, "edited"),
    "delete_middle": ("DELETE FROM audit_events WHERE seq = 4", 5, "missing"),
    "delete_tail": ("DELETE FROM audit_events WHERE seq = 10", 10, "deleted from the end"),
    "reorder": ("UPDATE audit_events SET seq = CASE seq WHEN 3 THEN 103 WHEN 6 THEN 3 END "
                "WHERE seq IN (3, 6); UPDATE audit_events SET seq = 6 WHERE seq = 103", 3, None),
    "reseal_head": ("UPDATE audit_head SET seq = 9", 9, "head"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_hand_edits_are_named(sessions, engine, kind: str) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    _fill(sessions, log, 10)
    sql, bad_seq, words = TAMPERING[kind]
    with engine.begin() as conn:
        for statement in sql.split(";"):
            conn.execute(text(statement))
    verdict = _verify(sessions, log)
    assert not verdict.ok
    assert verdict.first_bad_seq == bad_seq
    if words:
        assert words in verdict.problem
    assert f"#{bad_seq}" in str(verdict)


def test_the_wrong_key_cannot_verify(sessions) -> None:  # type: ignore[no-untyped-def]
    _fill(sessions, AuditLog(KEY), 3)
    verdict = _verify(sessions, AuditLog(b"another-key-another-key-another!"))
    assert not verdict.ok and "seal" in verdict.problem


def test_concurrent_appenders_keep_one_unbroken_chain(sessions) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(KEY)
    errors: list[BaseException] = []

    def appender(name: str) -> None:
        try:
            for i in range(15):
                with sessions.begin() as s:
                    log.append(s, actor=name, action="batch.claimed", subject_type="batch",
                               subject_ids=[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=appender, args=(f"worker-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    verdict = _verify(sessions, log)
    assert verdict.ok and verdict.checked == 60
