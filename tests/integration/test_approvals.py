"""The approval gate in the database, on SQLite and PostgreSQL.

The acceptance bypass tests are here: a maker approving their own payment, one approver on
two levels, a reused code, a wrong code (and the lockout), a user without the role, and a
state edited directly in the database. Each is refused, and each refusal is in the audit
trail, which still verifies. Time is always passed in: nothing sleeps.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from store_support import events
from yinqi.approval import LOCK_AFTER_FAILURES, Reason
from yinqi.bootstrap import App
from yinqi.errors import InvalidValue
from yinqi.money import Money
from yinqi.states import PaymentState as S
from yinqi.store.approvals import (
    ApprovalOutcome,
    RejectOutcome,
    approve,
    audit_state_check,
    current_code,
    escalate_overdue,
    pending,
    reject,
)
from yinqi.store.models import (
    Alert,
    Approval,
    BankAccount,
    OtpUse,
    Payment,
    User,
)
from yinqi.store.transitions import move_payments

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)


# --- helpers ----------------------------------------------------------------------------------


def make_pending(app: App, *amounts: str, category: str = "supplier", maker: str = "wu.maker",
                 currency: str = "CNY") -> list[int]:
    """Payments of the demo company, moved into PENDING_APPROVAL the audited way."""
    with app.sessions.begin() as s:
        account = s.execute(select(BankAccount).where(BankAccount.currency == currency)
                            .order_by(BankAccount.id)).scalars().first()
        assert account is not None
        rows = [Payment(end_to_end_id=f"E2E{uuid.uuid4().hex[:16]}",
                        debtor_account_id=account.id, creditor_name="杨磊",
                        creditor_account="49505976717236739",
                        amount_minor=Money.of(amount, currency).minor, currency=currency,
                        category=category, requested_date=date(2026, 11, 25), maker=maker)
                for amount in amounts]
        s.add_all(rows)
        s.flush()
        ids = [p.id for p in rows]
        move_payments(s, app.audit, ids, S.PENDING_APPROVAL, actor="system:intake")
    return ids


def code_of(app: App, username: str, at: datetime = NOW) -> str:
    with app.sessions() as s:
        return current_code(s, app.field_cipher, username, at)


def wrong_code(app: App, username: str, at: datetime = NOW) -> str:
    with app.sessions() as s:
        accepted = {current_code(s, app.field_cipher, username, at + k * STEP)
                    for k in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(10)) if c not in accepted)


def do_approve(app: App, username: str, ids: list[int], *, at: datetime = NOW,
               code: str | None = None) -> ApprovalOutcome:
    code = code if code is not None else code_of(app, username, at)
    with app.sessions.begin() as s:
        return approve(s, app.audit, app.field_cipher, app.config.approval_policy,
                       username=username, code=code, payment_ids=ids, now=at)


def do_reject(app: App, username: str, ids: list[int], reason: str, *,
              at: datetime = NOW) -> RejectOutcome:
    code = code_of(app, username, at)
    with app.sessions.begin() as s:
        return reject(s, app.audit, app.field_cipher, app.config.approval_policy,
                      username=username, code=code, payment_ids=ids, reason=reason, now=at)


def state_of(app: App, pid: int) -> str:
    with app.sessions() as s:
        return s.get_one(Payment, pid).state


def assert_refused_and_audited(app: App, outcome: ApprovalOutcome | RejectOutcome,
                               pid: int, reason: Reason) -> None:
    assert [(p, code) for p, code, _ in outcome.refused] == [(pid, reason.value)]
    refusals = events(app, "approval.refused")
    assert refusals, "the refusal was not audited"
    last = refusals[-1]
    assert str(pid) in last.subject_ids
    assert last.details["reasons"] == {reason.value: [pid]}
    with app.sessions() as s:
        assert app.audit.verify(s).ok


def cli(app: App, *args: str, person: str | None = None) -> object:
    """The command in-process, as the service identity or as ``person`` (a real session)."""
    from yinqi.cli.app import app as yinqi_cli
    from yinqi.store.auth import _existing, start_session

    settings = app.settings
    assert settings.master_secret is not None
    env = {"YINQI_HOME": str(settings.home), "YINQI_DATABASE_URL": settings.resolved_database_url,
           "YINQI_MASTER_SECRET": settings.master_secret.get_secret_value(), "COLUMNS": "200",
           "YINQI_ACTOR": "service", "YINQI_SESSION": ""}
    if person is not None:
        with app.sessions.begin() as s:
            token, _ = start_session(s, app.audit, _existing(s, person), origin="test",
                                     client="pytest", now=datetime.now(UTC))
        env.update(YINQI_ACTOR="", YINQI_SESSION=token)
    return CliRunner().invoke(yinqi_cli, list(args), env=env)


# --- the happy path ---------------------------------------------------------------------------


def test_a_large_supplier_payment_needs_three_people_in_order(app: App) -> None:
    [pid] = make_pending(app, "1500000.00")
    with app.sessions() as s:
        [row] = pending(s, app.config.approval_policy, username="chen.manager", now=NOW)
    assert row.levels == ("approver", "finance_manager", "cfo")
    assert (row.next_role, row.filled, row.can_approve) == ("approver", {}, True)

    first = do_approve(app, "li.approver", [pid])
    assert (first.approved_levels, first.completed, first.refused) == ({pid: 1}, [], [])
    second = do_approve(app, "chen.manager", [pid])
    assert second.approved_levels == {pid: 2} and second.completed == []
    assert state_of(app, pid) == S.PENDING_APPROVAL
    with app.sessions() as s:
        [row] = pending(s, app.config.approval_policy, username="li.approver", now=NOW)
    assert row.filled == {1: "li.approver", 2: "chen.manager"} and row.next_role == "cfo"
    assert row.can_approve is False and row.why_not is not None
    assert row.why_not.code is Reason.ALREADY_APPROVED_BY_USER

    third = do_approve(app, "wang.cfo", [pid])
    assert third.approved_levels == {pid: 3} and third.completed == [pid]
    assert state_of(app, pid) == S.APPROVED
    with app.sessions() as s:
        given = s.execute(select(Approval.level, Approval.role, Approval.approver,
                                 Approval.decision).where(Approval.payment_id == pid)
                          .order_by(Approval.level)).all()
        assert [tuple(r) for r in given] == [(1, "approver", "li.approver", "approved"),
                                             (2, "finance_manager", "chen.manager", "approved"),
                                             (3, "cfo", "wang.cfo", "approved")]
        assert pending(s, app.config.approval_policy) == []
        assert audit_state_check(s) == []
        assert app.audit.verify(s).ok
    assert [e.actor for e in events(app, "approval.approved")] == [
        "li.approver", "chen.manager", "wang.cfo"]
    assert events(app, "payment.state")[-1].details["to"] == "APPROVED"


def test_one_code_approves_a_hundred_payments(app: App) -> None:
    ids = make_pending(app, *[f"{1000 + i}.00" for i in range(100)])
    outcome = do_approve(app, "li.approver", ids)
    assert sorted(outcome.completed) == ids and outcome.refused == []
    with app.sessions() as s:
        assert set(s.execute(select(Payment.state).where(Payment.id.in_(ids))).scalars()) == {
            "APPROVED"}
        assert s.execute(select(func.count()).select_from(OtpUse)).scalar_one() == 1
        assert s.execute(select(func.count()).select_from(Approval)).scalar_one() == 100
        assert app.audit.verify(s).ok
    [given] = events(app, "approval.approved")
    assert given.details["levels"] == {"1": ids}
    moved = events(app, "payment.state")[-1]
    assert moved.details["to"] == "APPROVED" and len(moved.subject_ids) == 100


def test_one_code_still_judges_each_payment_on_its_own(app: App) -> None:
    small, big = make_pending(app, "10000.00", "500000.00")
    [own] = make_pending(app, "100.00", maker="sun.approver")
    outcome = do_approve(app, "sun.approver", [small, big, own])
    assert outcome.approved_levels == {small: 1, big: 1}
    assert outcome.completed == [small]
    assert [(p, c) for p, c, _ in outcome.refused] == [(own, "MAKER_CANNOT_APPROVE")]
    assert (state_of(app, small), state_of(app, big), state_of(app, own)) == (
        "APPROVED", "PENDING_APPROVAL", "PENDING_APPROVAL")


# --- the acceptance bypass tests ---------------------------------------------------------------


@pytest.mark.security
def test_bypass_maker_approving_own_payment(app: App) -> None:
    [by_maker] = make_pending(app, "100.00", maker="wu.maker")
    outcome = do_approve(app, "wu.maker", [by_maker])
    assert outcome.refused[0][2] == (
        f"wu.maker entered payment {_e2e(app, by_maker)} and cannot approve it")
    assert_refused_and_audited(app, outcome, by_maker, Reason.MAKER_CANNOT_APPROVE)
    # Holding the approver role does not help the person who entered it.
    [by_approver] = make_pending(app, "100.00", maker="li.approver")
    outcome = do_approve(app, "li.approver", [by_approver])
    assert_refused_and_audited(app, outcome, by_approver, Reason.MAKER_CANNOT_APPROVE)
    assert state_of(app, by_maker) == state_of(app, by_approver) == S.PENDING_APPROVAL


@pytest.mark.security
def test_bypass_one_approver_on_two_levels(app: App) -> None:
    [pid] = make_pending(app, "500000.00")
    assert do_approve(app, "chen.manager", [pid]).approved_levels == {pid: 1}
    # chen.manager holds finance_manager too, yet cannot also fill level 2.
    outcome = do_approve(app, "chen.manager", [pid], at=NOW + 2 * STEP)
    assert_refused_and_audited(app, outcome, pid, Reason.ALREADY_APPROVED_BY_USER)
    assert state_of(app, pid) == S.PENDING_APPROVAL
    # Below the code, the database refuses it too.
    with pytest.raises(IntegrityError), app.sessions.begin() as s:
        s.add(Approval(payment_id=pid, level=2, role="finance_manager", approver="chen.manager",
                       decision="approved", decided_at=NOW))


@pytest.mark.security
def test_bypass_a_reused_code(app: App) -> None:
    first, second = make_pending(app, "100.00", "200.00")
    code = code_of(app, "li.approver")
    assert do_approve(app, "li.approver", [first], code=code).completed == [first]
    # The same code again, within its own 30 s and in the next one (still inside the window).
    for at in (NOW, NOW + STEP):
        outcome = do_approve(app, "li.approver", [second], code=code, at=at)
        assert outcome.attempt is not None and outcome.attempt.code is Reason.CODE_REUSED
        assert_refused_and_audited(app, outcome, second, Reason.CODE_REUSED)
    assert state_of(app, second) == S.PENDING_APPROVAL
    # The next code works.
    assert do_approve(app, "li.approver", [second], at=NOW + 2 * STEP).completed == [second]


@pytest.mark.security
def test_bypass_a_wrong_code_and_the_lockout(app: App) -> None:
    [pid] = make_pending(app, "100.00")
    for attempt in range(1, LOCK_AFTER_FAILURES + 1):
        at = NOW + attempt * timedelta(seconds=5)
        outcome = do_approve(app, "li.approver", [pid], at=at,
                             code=wrong_code(app, "li.approver", at))
        assert_refused_and_audited(app, outcome, pid, Reason.CODE_WRONG)
        with app.sessions() as s:  # committed although refused
            user = s.execute(select(User).where(User.username == "li.approver")).scalar_one()
            if attempt < LOCK_AFTER_FAILURES:
                assert (user.failed_code_attempts, user.locked_until) == (attempt, None)
    locked_at = NOW + LOCK_AFTER_FAILURES * timedelta(seconds=5)
    assert user.locked_until == locked_at + timedelta(minutes=15)
    with app.sessions() as s:
        [alert] = s.execute(select(Alert).where(Alert.kind == "security.code_lockout")).scalars()
        assert alert.details["username"] == "li.approver"
    [lock_event] = events(app, "user.locked")
    assert lock_event.details["alert_id"] == alert.id

    # Locked: even the right code is refused, and the code is not even looked at.
    during = locked_at + timedelta(minutes=1)
    outcome = do_approve(app, "li.approver", [pid], at=during)
    assert_refused_and_audited(app, outcome, pid, Reason.USER_LOCKED)
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(OtpUse)).scalar_one() == 0

    # After the lock, the right code works and clears the count.
    after = locked_at + timedelta(minutes=16)
    assert do_approve(app, "li.approver", [pid], at=after).completed == [pid]
    with app.sessions() as s:
        user = s.execute(select(User).where(User.username == "li.approver")).scalar_one()
        assert user.failed_code_attempts == 0


@pytest.mark.security
def test_bypass_a_user_without_the_role(app: App) -> None:
    [small] = make_pending(app, "100.00")
    outcome = do_approve(app, "zhao.auditor", [small])
    assert_refused_and_audited(app, outcome, small, Reason.ROLE_MISSING)
    [big] = make_pending(app, "500000.00")
    do_approve(app, "sun.approver", [big])
    outcome = do_approve(app, "li.approver", [big])
    assert outcome.refused[0][2] == (
        f"li.approver lacks the finance_manager role needed for level 2 of payment "
        f"{_e2e(app, big)}")
    assert_refused_and_audited(app, outcome, big, Reason.ROLE_MISSING)
    assert state_of(app, small) == state_of(app, big) == S.PENDING_APPROVAL


@pytest.mark.security
def test_bypass_a_state_edited_in_the_database(app: App) -> None:
    untouched, edited = make_pending(app, "100.00", "2000000.00")
    with app.engine.begin() as conn:  # what someone with a database client would do
        conn.execute(text("UPDATE payments SET state = 'APPROVED' WHERE id = :id"), {"id": edited})
    with app.sessions() as s:
        [mismatch] = audit_state_check(s)
    assert (mismatch.payment_id, mismatch.state, mismatch.audited) == (
        edited, "APPROVED", "PENDING_APPROVAL")
    assert untouched != edited

    result = cli(app, "approvals", "check")
    assert result.exit_code == 1, result.output
    assert f"payment {edited}" in result.stderr and "PENDING_APPROVAL" in result.stderr
    [recorded] = events(app, "audit.state_mismatch")
    assert recorded.subject_ids == [str(edited)]
    with app.sessions() as s:
        assert s.execute(select(Alert).where(Alert.kind == "audit.state_mismatch")).first()
        assert app.audit.verify(s).ok

    # Putting the state back (by hand again) makes the check pass.
    with app.engine.begin() as conn:
        conn.execute(text("UPDATE payments SET state = 'PENDING_APPROVAL' WHERE id = :id"),
                     {"id": edited})
    assert cli(app, "approvals", "check").exit_code == 0


def test_a_payment_in_a_later_state_without_any_audited_move_is_reported(app: App) -> None:
    [pid] = make_pending(app, "100.00")
    with app.engine.begin() as conn:
        conn.execute(text("INSERT INTO payments (end_to_end_id, debtor_account_id, "
                          "creditor_name, creditor_account, creditor_bank_name, amount_minor, "
                          "currency, purpose, category, urgent, requested_date, maker, state, "
                          "version, created_at, updated_at) SELECT 'E2E-FORGED', "
                          "debtor_account_id, creditor_name, creditor_account, "
                          "creditor_bank_name, 99, currency, purpose, category, urgent, "
                          "requested_date, maker, 'APPROVED', 1, created_at, updated_at "
                          "FROM payments WHERE id = :id"), {"id": pid})
    with app.sessions() as s:
        [mismatch] = audit_state_check(s)
    assert (mismatch.end_to_end_id, mismatch.state, mismatch.audited) == (
        "E2E-FORGED", "APPROVED", None)


def test_unknown_and_deactivated_users_are_refused_and_audited(app: App) -> None:
    [pid] = make_pending(app, "100.00")
    outcome = do_approve(app, "mallory", [pid], code="123456")
    assert_refused_and_audited(app, outcome, pid, Reason.UNKNOWN_USER)
    code = code_of(app, "li.approver")
    with app.sessions.begin() as s:
        s.execute(select(User).where(User.username == "li.approver")).scalar_one().active = False
    outcome = do_approve(app, "li.approver", [pid], code=code)
    assert_refused_and_audited(app, outcome, pid, Reason.USER_INACTIVE)
    assert state_of(app, pid) == S.PENDING_APPROVAL


# --- rejection --------------------------------------------------------------------------------


def test_reject_with_a_reason(app: App) -> None:
    [pid] = make_pending(app, "500000.00")
    do_approve(app, "li.approver", [pid])
    outcome = do_reject(app, "chen.manager", [pid], "payee account changed by phone call")
    assert (outcome.rejected, outcome.refused) == ([pid], [])
    with app.sessions() as s:
        payment = s.get_one(Payment, pid)
        assert (payment.state, payment.state_reason) == (
            "REJECTED", "payee account changed by phone call")
        decision = s.execute(select(Approval).where(Approval.payment_id == pid,
                                                    Approval.level == 2)).scalar_one()
        assert (decision.approver, decision.decision) == ("chen.manager", "rejected")
        assert app.audit.verify(s).ok
    [event] = events(app, "approval.rejected")
    assert event.details["reason"] == "payee account changed by phone call"
    # Rejected is final: nobody approves it afterwards.
    after = do_approve(app, "wang.cfo", [pid])
    assert_refused_and_audited(app, after, pid, Reason.NOT_PENDING)


def test_reject_is_refused_to_the_maker_and_to_non_approvers(app: App) -> None:
    [pid] = make_pending(app, "100.00", maker="sun.approver")
    outcome = do_reject(app, "sun.approver", [pid], "changed my mind")
    assert_refused_and_audited(app, outcome, pid, Reason.MAKER_CANNOT_APPROVE)
    outcome = do_reject(app, "zhao.auditor", [pid], "looks odd")
    assert_refused_and_audited(app, outcome, pid, Reason.ROLE_MISSING)
    with pytest.raises(InvalidValue, match="needs a reason"), app.sessions.begin() as s:
        reject(s, app.audit, app.field_cipher, app.config.approval_policy,
               username="li.approver", code=code_of(app, "li.approver"), payment_ids=[pid],
               reason="   ", now=NOW)
    assert state_of(app, pid) == S.PENDING_APPROVAL


# --- escalation -------------------------------------------------------------------------------


def test_an_overdue_payment_is_escalated_once_a_day(app: App) -> None:
    [pid] = make_pending(app, "500000.00")
    entered = datetime.now(UTC)  # move_payments stamps the entry with the wall clock
    policy = app.config.approval_policy

    def escalate(at: datetime) -> list[int]:
        with app.sessions.begin() as s:
            return escalate_overdue(s, app.audit, policy, at)

    hours = timedelta(hours=policy.escalate_after_hours)
    assert escalate(entered + hours - timedelta(hours=1)) == []
    assert escalate(entered + hours + timedelta(hours=1)) == [pid]
    assert escalate(entered + hours + timedelta(hours=2)) == []  # rerun the same day
    with app.sessions() as s:
        [alert] = s.execute(select(Alert).where(Alert.kind == "approval.overdue")).scalars()
        assert alert.details["payment_ids"] == [pid]
        assert alert.details["next_roles"] == {"approver": 1}
        assert app.audit.verify(s).ok
    [event] = events(app, "approval.escalated")
    assert event.subject_ids == [str(pid)]
    # Still waiting a day later: named again.
    assert escalate(entered + hours + timedelta(hours=26)) == [pid]


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_lists_approves_and_refuses(app: App) -> None:
    [pid] = make_pending(app, "20000.00")
    e2e = _e2e(app, pid)
    listed = cli(app, "approvals", "list", "--as", "li.approver", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["end_to_end_id"], row["levels"], row["can_approve"]) == (
        e2e, ["approver"], True)
    assert "may approve" in cli(app, "approvals", "list", "--as", "li.approver").stdout

    # The command reads the wall clock; one step of tolerance covers a 30 s boundary between.
    code = code_of(app, "li.approver", datetime.now(UTC))
    done = cli(app, "approvals", "approve", e2e, "--as", "li.approver", "--code", code, "--json",
               person="li.approver")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["completed"] == [pid]

    [other] = make_pending(app, "30000.00")
    again = cli(app, "approvals", "approve", str(other), "--as", "li.approver", "--code", code,
                person="li.approver")
    assert again.exit_code == 1
    assert "CODE_REUSED" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert state_of(app, other) == S.PENDING_APPROVAL


def _e2e(app: App, pid: int) -> str:
    with app.sessions() as s:
        return s.get_one(Payment, pid).end_to_end_id

