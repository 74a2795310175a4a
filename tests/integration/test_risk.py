"""Risk rules acting in the database, on SQLite and PostgreSQL: holds, releases, freezes of a
payment, a batch and an account, the two-person unfreeze, and the audit trail of each.

Vouchers go in through the real intake (read, checked, stored, screened); approvals through
the real approval gate with the demo users' one-time codes. Time is passed in wherever a
person decides; nothing sleeps.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from config.risk import RiskRules
from store_support import code, events
from yinqi.bootstrap import App
from yinqi.demo.vouchers import HEADER
from yinqi.errors import SecurityError
from yinqi.payments import BatchState
from yinqi.pipeline import form_batches, send_batches
from yinqi.pipeline import sending
from yinqi.pipeline.reports import apply_reports
from yinqi.pipeline.reruns import correct_payment, rerun_batch
from yinqi.states import PaymentState as S
from yinqi.store import risk_decisions as decide
from yinqi.store.approvals import approve, current_code
from yinqi.store.claims import claim_batches
from yinqi.store.intake import ImportSummary, import_vouchers, own_accounts
from yinqi.store.models import (
    Alert,
    AuditEventRow,
    BankAccount,
    Batch,
    Freeze,
    Payment,
    RiskHit,
)
from yinqi.store.transitions import move_payments
from yinqi.vouchers import DEFAULT_MAPPING, load_mappings, read_rows, validate_rows

ICBC, CMB = "1202021209900123456", "755912345610808"
PAYEE = ("杭州西湖茶业有限公司", "67790081923749510")
OTHER = ("成都天府软件有限公司", "4592388274506937765")
SHADY = ("可疑贸易有限公司", "6222980011223344")
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)       # 10:00 in Shanghai
STEP = timedelta(seconds=30)


# --- helpers ----------------------------------------------------------------------------------


def quiet(app: App, **tables: dict[str, Any]) -> RiskRules:
    """The app's rules without out_of_hours (tests run at any hour), plus ``tables`` changed."""
    rules = app.config.risk_rules
    changes: dict[str, Any] = {"out_of_hours": rules.out_of_hours.model_copy(
        update={"enabled": False})}
    for name, values in tables.items():
        changes[name] = getattr(rules, name).model_copy(update=values)
    return rules.model_copy(update=changes)


def with_rules(app: App, rules: RiskRules) -> App:
    """The same installation with other risk rules (as a YINQI_CONFIG_DIR file would give)."""
    import dataclasses

    return App(app.settings, config=dataclasses.replace(app.config, risk_rules=rules))


def import_rows(app: App, rows: list[tuple[str, tuple[str, str], str]], *, rules: RiskRules,
                maker: str = "wu.maker") -> ImportSummary:
    """Vouchers (debtor, (payee name, account), amount) through the real intake."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    tag = uuid.uuid4().hex[:8].upper()
    day = NOW.date().isoformat()
    for i, (debtor, (name, account), amount) in enumerate(rows):
        writer.writerow([f"R{tag}{i:03d}", day, debtor, name, account, "中国建设银行上海浦东分行",
                         "105290036005", amount, "CNY", "货款", "供应商", "否", maker, day])
    data = out.getvalue().encode("utf-8")
    mapping = load_mappings(app.settings.config_dir)[DEFAULT_MAPPING]
    with app.sessions.begin() as s:
        checked = validate_rows(read_rows(data, f"{tag}.csv"), mapping,
                                own_accounts=own_accounts(s), source="erp")
        return import_vouchers(s, app.audit, source="erp", file_name=f"{tag}.csv", data=data,
                               rows_result=checked, imported_by="test", risk_rules=rules)


class Clock:
    """Moments for one-time codes: each use a step later, so no code is ever reused."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def next(self) -> datetime:
        self.now += STEP
        return self.now


def release(app: App, pid: int, user: str, at: datetime, **kw: Any) -> decide.Outcome:
    with app.sessions.begin() as s:
        return decide.release(s, app.audit, app.field_cipher, payment=pid, username=user,
                              code=kw.pop("code", None) or code(app, user, at), now=at, **kw)


def reject(app: App, pid: int, user: str, at: datetime, reason: str) -> decide.Outcome:
    with app.sessions.begin() as s:
        return decide.reject(s, app.audit, app.field_cipher, payment=pid, username=user,
                             code=code(app, user, at), reason=reason, now=at)


def freeze(app: App, kind: str, subject: str | int, user: str, at: datetime) -> decide.Outcome:
    with app.sessions.begin() as s:
        return decide.freeze(s, app.audit, app.field_cipher, subject_type=kind, subject=subject,
                             username=user, code=code(app, user, at), reason="test", now=at)


def unfreeze(app: App, freeze_id: int, user: str, at: datetime) -> decide.Outcome:
    with app.sessions.begin() as s:
        return decide.unfreeze(s, app.audit, app.field_cipher, freeze_id=freeze_id,
                               username=user, code=code(app, user, at),
                               reason="checked with the payee", now=at)


def approve_as(app: App, user: str, ids: list[int], at: datetime,
               rules: RiskRules | None = None) -> None:
    with app.sessions.begin() as s:
        approve(s, app.audit, app.field_cipher, app.config.approval_policy, username=user,
                code=current_code(s, app.field_cipher, user, at), payment_ids=ids, now=at,
                risk_rules=rules)


def state(app: App, pid: int) -> str:
    with app.sessions() as s:
        return s.get_one(Payment, pid).state


def hits(app: App, pid: int | None = None) -> list[RiskHit]:
    with app.sessions() as s:
        query = select(RiskHit).order_by(RiskHit.id)
        if pid is not None:
            query = query.where(RiskHit.payment_id == pid)
        rows = list(s.execute(query).scalars())
        s.expunge_all()
    return rows


def freezes(app: App) -> list[Freeze]:
    with app.sessions() as s:
        rows = list(s.execute(select(Freeze).order_by(Freeze.id)).scalars())
        s.expunge_all()
    return rows


def account_id(app: App, number: str) -> int:
    with app.sessions() as s:
        return s.execute(select(BankAccount.id).where(BankAccount.number == number)).scalar_one()


def assert_audit_intact(app: App) -> None:
    with app.sessions() as s:
        verdict = app.audit.verify(s)
    assert verdict.ok, verdict


def assert_masked(app: App, *numbers: str) -> None:
    """No alert, hit or audit event carries a whole account number."""
    with app.sessions() as s:
        texts = [repr((a.subject, a.message, a.details))
                 for a in s.execute(select(Alert)).scalars()]
        texts += [repr((h.message, h.details)) for h in s.execute(select(RiskHit)).scalars()]
        texts += [repr(e.details) for e in s.execute(select(AuditEventRow)).scalars()]
    for number in numbers:
        assert not [t for t in texts if number in t], number


# --- a hold, released by a person who may ----------------------------------------------------


@pytest.mark.security
def test_a_large_payment_is_held_at_intake_and_only_a_treasurer_who_is_not_its_maker_releases_it(
        app: App) -> None:
    rules = quiet(app)
    clock = Clock()
    # The treasurer entered one of them himself: maker-checker applies to releases too.
    summary = import_rows(app, [(ICBC, PAYEE, "5000000.00"), (ICBC, OTHER, "4999999.99")],
                          rules=rules, maker="liu.treasurer")
    big, small = summary.payment_ids
    assert (state(app, big), state(app, small)) == ("HELD", "PENDING_APPROVAL")
    [hold] = [h for h in hits(app, big) if h.action == "hold"]
    assert (hold.rule, hold.status, hold.subject_type, hold.subject_id) == \
        ("large_single_amount", "open", "payment", big)
    assert hold.details["stage"] == "intake" and hold.details["account"] == "****9510"
    [fired] = [e for e in events(app, "risk.fired") if e.details["rule"] == "large_single_amount"]
    assert fired.subject_ids == [str(big)] and fired.details["action"] == "hold"
    with app.sessions() as s:
        alert = s.execute(select(Alert).where(Alert.kind == "risk.large_single_amount")
                          ).scalar_one()
    assert alert.details["payment_ids"] == [big] and alert.details["accounts"] == ["****9510"]

    # The maker, an approver without the role, and a wrong code: refused, each audited.
    refused = [release(app, big, "liu.treasurer", clock.next()),
               release(app, big, "li.approver", clock.next()),
               release(app, big, "chen.manager", clock.next(), code="000000")]
    assert [o.refused.code for o in refused if o.refused] == \
        ["MAKER_CANNOT_RELEASE", "ROLE_MISSING", "CODE_WRONG"]
    audited = events(app, "risk.refused")
    assert [(e.actor, e.details["code"]) for e in audited] == [
        ("liu.treasurer", "MAKER_CANNOT_RELEASE"), ("li.approver", "ROLE_MISSING"),
        ("chen.manager", "CODE_WRONG")]
    assert audited[0].details["rules"] == ["large_single_amount"]
    assert state(app, big) == "HELD"

    # A finance manager releases it: back into approval, never straight to APPROVED.
    done = release(app, big, "chen.manager", clock.next(), reason="confirmed by phone")
    assert done.ok and done.state == "PENDING_APPROVAL"
    assert state(app, big) == "PENDING_APPROVAL"
    [released] = events(app, "risk.released")
    assert released.actor == "chen.manager" and released.details["rules"] == \
        ["large_single_amount"]
    [hold] = [h for h in hits(app, big) if h.action == "hold"]
    assert (hold.status, hold.resolved_by, hold.resolution) == \
        ("released", "chen.manager", "confirmed by phone")
    # Releasing twice: nothing held any more.
    again = release(app, big, "wang.cfo", clock.next())
    assert again.refused is not None and again.refused.code == "NOT_HELD"
    assert_masked(app, PAYEE[1], OTHER[1])
    assert_audit_intact(app)


def test_a_held_payment_rejected_by_the_cfo_is_never_paid(app: App) -> None:
    clock = Clock()
    [first, second] = import_rows(app, [(CMB, PAYEE, "1234.56"), (CMB, PAYEE, "1234.56")],
                                  rules=quiet(app)).payment_ids
    # The second is a duplicate of the first (same payee, amount and currency).
    assert (state(app, first), state(app, second)) == ("PENDING_APPROVAL", "HELD")
    [dup] = [h for h in hits(app, second) if h.rule == "duplicate_payment"]
    assert dup.details["duplicate_of"] == first
    done = reject(app, second, "wang.cfo", clock.next(), "paid twice by mistake")
    assert done.ok and state(app, second) == "REJECTED"
    [event] = events(app, "risk.rejected")
    assert event.details["rules"] == ["duplicate_payment"]
    assert [h.status for h in hits(app, second) if h.action == "hold"] == ["rejected"]
    assert_audit_intact(app)


# --- a frozen payment: no release, two people lift it ----------------------------------------


@pytest.mark.security
def test_a_blacklisted_payee_freezes_the_payment_and_only_two_people_lift_it(app: App) -> None:
    rules = quiet(app, blacklist={"accounts": (SHADY[1],)})
    clock = Clock()
    [pid] = import_rows(app, [(ICBC, SHADY, "880.00")], rules=rules).payment_ids
    assert state(app, pid) == "HELD"
    [active] = freezes(app)
    assert (active.subject_type, active.subject_id, active.rule, active.status) == \
        ("payment", pid, "blacklist", "active")
    [frozen] = events(app, "risk.frozen")
    assert frozen.details["rule"] == "blacklist" and frozen.subject_ids == [str(pid)]

    # A release cannot lift a freeze, whoever asks.
    refused = release(app, pid, "liu.treasurer", clock.next())
    assert refused.refused is not None and refused.refused.code == "FROZEN"
    assert events(app, "risk.refused")[-1].details["rules"] == ["blacklist"]

    # One person asks; the same person confirming is refused; an approver may not at all.
    asked = unfreeze(app, active.id, "liu.treasurer", clock.next())
    assert asked.ok and asked.step == "requested" and state(app, pid) == "HELD"
    alone = unfreeze(app, active.id, "liu.treasurer", clock.next())
    assert alone.refused is not None and alone.refused.code == "SAME_PERSON"
    wrong_role = unfreeze(app, active.id, "li.approver", clock.next())
    assert wrong_role.refused is not None and wrong_role.refused.code == "ROLE_MISSING"
    assert freezes(app)[0].status == "active"
    [same] = [e for e in events(app, "risk.refused") if e.details["code"] == "SAME_PERSON"]
    assert same.actor == "liu.treasurer" and same.details["rule"] == "blacklist"

    # A second person confirms: lifted, and the payment goes back into approval.
    lifted = unfreeze(app, active.id, "admin", clock.next())
    assert lifted.ok and lifted.step == "lifted"
    after = freezes(app)[0]
    assert (after.status, after.unfreeze_requested_by, after.lifted_by) == \
        ("lifted", "liu.treasurer", "admin")
    assert state(app, pid) == "PENDING_APPROVAL"
    [requested] = events(app, "risk.unfreeze_requested")
    [unfrozen] = events(app, "risk.unfrozen")
    assert requested.details["rule"] == unfrozen.details["rule"] == "blacklist"
    assert unfrozen.details["requested_by"] == "liu.treasurer"
    assert unfrozen.details["confirmed_by"] == "admin"
    assert unfrozen.details["back_to_approval"] == [pid]
    assert [h.status for h in hits(app, pid) if h.rule == "blacklist"] == ["released"]
    again = unfreeze(app, active.id, "liu.treasurer", clock.next())
    assert again.refused is not None and again.refused.code == "ALREADY_LIFTED"
    assert_masked(app, SHADY[1])
    assert_audit_intact(app)


# --- a frozen account: intake, batching and sending refuse it --------------------------------


@pytest.mark.security
def test_a_frozen_account_pays_nothing_until_two_people_lift_the_freeze(app: App) -> None:
    rules = quiet(app)
    clock = Clock()
    [pid] = import_rows(app, [(ICBC, PAYEE, "321.00")], rules=rules).payment_ids
    approve_as(app, "li.approver", [pid], clock.next())
    assert state(app, pid) == "APPROVED"
    icbc = account_id(app, ICBC)
    # A signed batch of the same account, waiting to be sent, claimed by a worker just
    # before the freeze lands.
    with app.sessions.begin() as s:
        batch = Batch(msg_id=f"YQBTEST{uuid.uuid4().hex[:12].upper()}", bank="icbc-sandbox",
                      dialect="iso20022", debtor_account_id=icbc, currency="CNY",
                      state=BatchState.SIGNED.value, file_path="archive/none.xml",
                      file_sha256="0" * 64)
        s.add(batch)
        s.flush()
        batch_id = batch.id
    assert claim_batches(app.sessions, "early-worker", limit=100) == [batch_id]

    done = freeze(app, "account", ICBC, "liu.treasurer", clock.next())
    assert done.ok
    with app.sessions() as s:
        assert s.get_one(BankAccount, icbc).status == "frozen"

    # Intake: quarantined, naming the freeze.
    summary = import_rows(app, [(ICBC, OTHER, "100.00"), (CMB, OTHER, "100.00")], rules=rules)
    assert summary.accepted == 1
    [(_, why)] = summary.quarantined
    assert f"debtor account ****3456 is frozen (freeze #{done.freeze_id})" in why
    # Batching: left APPROVED, not batched, refused and audited.
    result = form_batches(app)
    assert pid in result.frozen and pid not in result.held
    assert state(app, pid) == "APPROVED"
    # Claims: a frozen account's unsent batch is never claimed; send_batches reports it blocked.
    with app.sessions.begin() as s:
        s.execute(update(Batch).where(Batch.id == batch_id).values(lease_until=None))
    assert batch_id not in claim_batches(app.sessions, "another-worker", limit=100)
    sent = send_batches(app, None, "another-worker")  # type: ignore[arg-type]
    assert sent.sends == 0 and batch_id in sent.blocked
    # Sending: the worker that claimed it before the freeze is refused at the send itself.
    with app.sessions() as s:
        claimed = s.get_one(Batch, batch_id)
        s.expunge(claimed)
    with pytest.raises(SecurityError, match="frozen"):
        sending._send(app, None, "early-worker", claimed, sending.Pacing(), random.Random(0),
                      sending.StageResult())
    with app.sessions() as s:
        after = s.get_one(Batch, batch_id)
        assert (after.state, after.send_attempts) == ("SIGNED", 0)
    refusals = {e.details["doing"]: e for e in events(app, "risk.refused")}
    assert {"intake", "batching", "send"} <= set(refusals)
    assert refusals["batching"].subject_ids == [str(pid)]
    assert refusals["send"].subject_ids == [str(batch_id)]
    assert all(f"freeze #{done.freeze_id}" in e.details["reason"]
               for e in refusals.values() if e.details["doing"] != "intake")

    # The same person cannot lift it alone; with a second person it is lifted.
    assert unfreeze(app, done.freeze_id, "liu.treasurer", clock.next()).step == "requested"
    assert unfreeze(app, done.freeze_id, "liu.treasurer", clock.next()).refused is not None
    assert unfreeze(app, done.freeze_id, "admin", clock.next()).step == "lifted"
    with app.sessions() as s:
        assert s.get_one(BankAccount, icbc).status == "active"
    assert batch_id in claim_batches(app.sessions, "another-worker", limit=100)
    result = form_batches(app)
    assert result.batched == 1 and state(app, pid) == "BATCHED"
    assert_masked(app, ICBC, PAYEE[1], OTHER[1])
    assert_audit_intact(app)


def test_a_rule_can_freeze_the_account_a_payment_comes_from(app: App) -> None:
    rules = quiet(app, blacklist={"names": ("可疑 贸易有限公司",), "freeze": "account"})
    [pid] = import_rows(app, [(CMB, SHADY, "99.00")], rules=rules).payment_ids
    cmb = account_id(app, CMB)
    assert state(app, pid) == "HELD"
    [active] = freezes(app)
    assert (active.subject_type, active.subject_id, active.rule) == ("account", cmb, "blacklist")
    [hit] = [h for h in hits(app, pid) if h.rule == "blacklist"]
    assert (hit.subject_type, hit.subject_id, hit.details["freeze_id"]) == \
        ("account", cmb, active.id)
    # Held because its account is frozen: a release must wait for the account.
    refused = release(app, pid, "liu.treasurer", NOW + STEP)
    assert refused.refused is not None and refused.refused.code == "ACCOUNT_FROZEN"
    unfreeze(app, active.id, "liu.treasurer", NOW + 2 * STEP)
    unfreeze(app, active.id, "admin", NOW + 3 * STEP)
    assert state(app, pid) == "PENDING_APPROVAL"
    with app.sessions() as s:
        assert s.get_one(BankAccount, cmb).status == "active"
    assert_audit_intact(app)


# --- a frozen batch ---------------------------------------------------------------------------


@pytest.mark.security
def test_a_frozen_batch_is_never_claimed_until_two_people_lift_it(app: App) -> None:
    clock = Clock()
    [pid] = import_rows(app, [(CMB, PAYEE, "77.00")], rules=quiet(app)).payment_ids
    approve_as(app, "li.approver", [pid], clock.next())
    [batch_id] = form_batches(app).batch_ids
    done = freeze(app, "batch", batch_id, "admin", clock.next())
    assert done.ok
    with app.sessions() as s:
        assert s.get_one(Batch, batch_id).frozen
    assert batch_id not in claim_batches(app.sessions, "signer", states=[BatchState.BUILT])
    again = freeze(app, "batch", batch_id, "liu.treasurer", clock.next())
    assert again.refused is not None and again.refused.code == "ALREADY_FROZEN"
    # A payment already in a batch is frozen through its batch, not on its own.
    single = freeze(app, "payment", pid, "admin", clock.next())
    assert single.refused is not None and single.refused.code == "NOT_FREEZABLE"
    assert f"risk freeze batch {batch_id}" in single.refused.message

    assert unfreeze(app, done.freeze_id, "admin", clock.next()).step == "requested"
    assert unfreeze(app, done.freeze_id, "liu.treasurer", clock.next()).step == "lifted"
    with app.sessions() as s:
        assert not s.get_one(Batch, batch_id).frozen
    assert claim_batches(app.sessions, "signer", states=[BatchState.BUILT]) == [batch_id]
    [frozen] = events(app, "risk.frozen")
    assert (frozen.actor, frozen.details["rule"]) == ("admin", "manual")
    assert events(app, "risk.unfrozen")[0].details["rule"] == "manual"
    assert_audit_intact(app)


# --- out of hours, at the approval gate --------------------------------------------------------


def test_an_approval_outside_business_hours_can_hold_for_a_fresh_approval(app: App) -> None:
    rules = quiet(app, out_of_hours={"enabled": True, "action": "hold"})
    at_night = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)        # 23:00 in Shanghai
    [pid] = import_rows(app, [(CMB, PAYEE, "300.00")], rules=quiet(app)).payment_ids
    approve_as(app, "li.approver", [pid], at_night, rules=rules)
    assert state(app, pid) == "HELD"
    [hit] = [h for h in hits(app, pid) if h.rule == "out_of_hours"]
    assert hit.details["doing"] == "approved" and hit.details["stage"] == "approval"
    with app.sessions() as s:
        before = s.get_one(Payment, pid).approval_round
    assert release(app, pid, "liu.treasurer", at_night + STEP).ok
    with app.sessions() as s:
        p = s.get_one(Payment, pid)
        # Its approval was given at night: it is approved afresh in a new round.
        assert (p.state, p.approval_round) == ("PENDING_APPROVAL", before + 1)
    approve_as(app, "li.approver", [pid], NOW + STEP, rules=rules)        # 10:00
    assert state(app, pid) == "APPROVED"
    assert_audit_intact(app)


# --- repeated failures, where the bank rejects payments ---------------------------------------


def test_repeated_bank_rejections_freeze_the_payees_waiting_payments_and_rerun_rescreens(
        app: App) -> None:
    clock = Clock()
    rules = quiet(app)
    ids = import_rows(app, [(CMB, PAYEE, f"{100 + i}.00") for i in range(3)],
                      rules=rules).payment_ids
    approve_as(app, "li.approver", ids, clock.next())
    [waiting] = import_rows(app, [(CMB, PAYEE, "500.00")], rules=rules).payment_ids
    [batch_id] = form_batches(app).batch_ids
    with app.sessions.begin() as s:
        move_payments(s, app.audit, ids, S.SIGNED, actor="test")
        move_payments(s, app.audit, ids, S.SUBMITTING, actor="test")
        s.execute(update(Batch).where(Batch.id == batch_id)
                  .values(state=BatchState.SUBMITTING.value))
        apply_reports(s, app, batch_id, [], actor="test", refused=True,
                      refusal="refused by the bank: AC04 account closed")
    assert {state(app, pid) for pid in ids} == {"FAILED"}
    # Three rejections to one payee within 24 h: the payee's waiting payment is frozen.
    assert state(app, waiting) == "HELD"
    [active] = freezes(app)
    assert (active.subject_type, active.subject_id, active.rule) == \
        ("payment", waiting, "repeated_failures")
    failed_hits = [h for pid in ids for h in hits(app, pid) if h.rule == "repeated_failures"]
    assert len(failed_hits) == 3 and {h.details["failures"] for h in failed_hits} == {3}
    assert [e.details["rule"] for e in events(app, "risk.fired")
            if e.details["stage"] == "failure"] == ["repeated_failures", "repeated_failures"]
    with app.sessions() as s:
        assert s.execute(select(Alert).where(Alert.kind == "risk.repeated_failures")
                         ).scalar_one().severity == "critical"

    # A corrected payment goes back into approval screened again: here to a blacklisted payee.
    shady = with_rules(app, quiet(app, blacklist={"accounts": (SHADY[1],)}))
    try:
        correct_payment(shady, ids[0], {"creditor_name": SHADY[0],
                                        "creditor_account": SHADY[1]}, actor="liu.treasurer")
        with app.sessions() as s:
            msg_id = s.get_one(Batch, batch_id).msg_id
        result = rerun_batch(shady, msg_id, actor="liu.treasurer")
    finally:
        shady.close()
    assert result.to_reapprove == [ids[0]] and result.held == [ids[0]]
    assert state(app, ids[0]) == "HELD"
    [blacklisted] = [h for h in hits(app, ids[0]) if h.rule == "blacklist"]
    assert blacklisted.details["stage"] == "corrected"
    assert_masked(app, PAYEE[1], SHADY[1])
    assert_audit_intact(app)


@pytest.mark.parametrize("target", ["batch", "account"])
def test_repeated_bank_rejections_can_freeze_the_unsent_batch_or_the_account(
        app: App, target: str) -> None:
    clock = Clock()
    rules = quiet(app, repeated_failures={"freeze": target})
    failing = import_rows(app, [(CMB, PAYEE, f"{200 + i}.00") for i in range(3)],
                          rules=rules).payment_ids
    approve_as(app, "li.approver", failing, clock.next())
    [failed_batch] = form_batches(app).batch_ids
    # Another payment to the same payee, already in a bank message that is not sent yet.
    [next_one] = import_rows(app, [(CMB, PAYEE, "999.00")], rules=rules).payment_ids
    approve_as(app, "li.approver", [next_one], clock.next())
    [unsent] = form_batches(app).batch_ids
    custom = with_rules(app, rules)
    try:
        with app.sessions.begin() as s:
            move_payments(s, app.audit, failing, S.SIGNED, actor="test")
            move_payments(s, app.audit, failing, S.SUBMITTING, actor="test")
            s.execute(update(Batch).where(Batch.id == failed_batch)
                      .values(state=BatchState.SUBMITTING.value))
            apply_reports(s, custom, failed_batch, [], actor="test", refused=True,
                          refusal="AC04")
    finally:
        custom.close()
    [active] = freezes(app)
    assert active.rule == "repeated_failures"
    if target == "batch":
        assert (active.subject_type, active.subject_id) == ("batch", unsent)
        with app.sessions() as s:
            assert s.get_one(Batch, unsent).frozen
        assert unsent not in claim_batches(app.sessions, "signer", states=[BatchState.BUILT])
    else:
        assert (active.subject_type, active.subject_id) == ("account", account_id(app, CMB))
        with app.sessions() as s:
            assert s.get_one(BankAccount, account_id(app, CMB)).status == "frozen"
    assert state(app, next_one) == "BATCHED"
    [frozen] = events(app, "risk.frozen")
    assert frozen.details["rule"] == "repeated_failures"
    assert_audit_intact(app)
