"""Exactly once survives a restore: a restored installation sends nothing until an
administrator has checked the bank and released it.

The main test plays it out against a real sandbox bank process: payments approved before a
backup are paid after it; the database is lost and the backup restored, so the restored
database shows them APPROVED (and a batch whose send was under way as SUBMITTING). Batching
and sending refuse every account, while a status query with the batch's own message ID still
resolves the batch the bank already has. Once the operator has stopped what the bank already
paid and released the accounts, the rest is sent, and the bank has booked nothing twice.
The drill's scratch restore freezes nothing in the live installation.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import fresh_pg_database
from sandbox_support import alert_only_risk_rules
from store_support import code, events
from yinqi.backup import LocalTarget, RestoreReport, create_backup, restore_backup
from yinqi.backup.guard import still_frozen
from yinqi.backup.service import drill, take_backup
from yinqi.bootstrap import App
from yinqi.demo.approve import approve_pending
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER
from yinqi.doctor import Status, check_restore_freeze
from yinqi.pipeline import BankPool, Pacing, drive, form_batches, open_work, send_batches
from yinqi.pipeline import chaos, sign_batches
from yinqi.store import risk_decisions as decide
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.models import AuditEventRow, BankAccount, Batch, Freeze, Payment
from yinqi.vouchers import DEFAULT_MAPPING, load_mappings, read_rows, validate_rows

ICBC, CMB = "1202021209900123456", "755912345610808"
PAYEE = ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996")
OTHER = ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013")
FAST = Pacing(base=0.2, ceiling=1.0, lease=timedelta(seconds=60))


class Killed(BaseException):
    """A worker dying at a chaos point (BaseException: nothing on the way catches it)."""


class Clock:
    """Later moments for one-time codes, so that no code is used twice."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def next(self) -> datetime:
        self.now += timedelta(seconds=60)
        return self.now


def import_one(app: App, debtor: str, payee: tuple[str, str, str, str], amount: str) -> int:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    tag = uuid.uuid4().hex[:8].upper()
    day = datetime.now(UTC).date().isoformat()
    writer.writerow([f"G{tag}", day, debtor, *payee, amount, "CNY", "货款", "供应商", "否",
                     "wu.maker", day])
    data = out.getvalue().encode("utf-8")
    mapping = load_mappings(app.settings.config_dir)[DEFAULT_MAPPING]
    with app.sessions.begin() as s:
        checked = validate_rows(read_rows(data, f"{tag}.csv"), mapping,
                                own_accounts=own_accounts(s), source="erp")
        summary = import_vouchers(s, app.audit, source="erp", file_name=f"{tag}.csv",
                                  data=data, rows_result=checked, imported_by="test",
                                  risk_rules=app.config.risk_rules)
    [pid] = summary.payment_ids
    return pid


def states(app: App, *ids: int) -> list[str]:
    with app.sessions() as s:
        found = dict(s.execute(select(Payment.id, Payment.state)
                               .where(Payment.id.in_(ids))).all())
    return [found[i] for i in ids]


def e2e_of(app: App, pid: int) -> str:
    with app.sessions() as s:
        return s.get_one(Payment, pid).end_to_end_id


def booked(world: DemoWorld) -> dict[str, int]:
    """How often the sandbox bank took each end-to-end ID."""
    out: dict[str, int] = {}
    for bank in ("icbc", "cmb"):
        for row in world.control("GET", f"payments/{bank}"):  # type: ignore[union-attr]
            out[row["end_to_end_id"]] = out.get(row["end_to_end_id"], 0) + 1
    return out


@contextmanager
def empty_database(db_url: str, tmp_path: Path, request: pytest.FixtureRequest
                   ) -> Iterator[str]:
    """An empty database of the backend under test, to restore into."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    with fresh_pg_database(request.getfixturevalue("pg_admin_dsn")) as url:
        yield url


def on(app: App, url: str) -> App:
    """The same installation (home, configuration) on another database."""
    return App(app.settings.model_copy(update={"database_url": url}))


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[DemoWorld]:
    home = tmp_path / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, database_url=db_url, settle_after=0.2, read_timeout=3.0) as demo:
        yield demo


# --- the restore freezes sending; an administrator's release lets it go on --------------------


def test_after_a_restore_nothing_goes_out_twice(world: DemoWorld, db_url: str, tmp_path: Path,
                                                request: pytest.FixtureRequest,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    app, clock = world.app, Clock()
    # Before the backup: a batch whose send reached the bank, but the worker died before it
    # recorded the answer (SUBMITTING); a payment approved (paid after the backup); one not
    # yet approved (approved only in the restored installation).
    sent = import_one(app, CMB, OTHER, "300.00")
    approve_pending(app, clock.next())
    form_batches(app)
    with BankPool(app) as banks:
        assert sign_batches(app, banks, "signer").signed

        def die(name: str) -> None:
            if name == "after-answer":
                raise Killed(name)

        monkeypatch.setattr(chaos, "point", die)
        with pytest.raises(Killed):
            send_batches(app, banks, "doomed-worker", pacing=FAST)
        monkeypatch.undo()
    with app.sessions.begin() as s:  # long dead by the time of the restore: no lease left
        s.execute(Batch.__table__.update().values(claimed_by=None, lease_until=None))
    paid_later = import_one(app, ICBC, PAYEE, "1200.00")
    approve_pending(app, clock.next())
    approved_later = import_one(app, ICBC, PAYEE, "800.00")
    assert states(app, sent, paid_later, approved_later) == \
        ["SUBMITTING", "APPROVED", "PENDING_APPROVAL"]
    target = LocalTarget(tmp_path / "backups")
    backup = create_backup(app.engine, target, app.master_secret, kind="full",
                           home=app.settings.home, config_dir=app.settings.config_dir)

    # After the backup the installation pays on, then its database is lost.
    drive(app, pacing=FAST, deadline=time.monotonic() + 120)
    assert states(app, sent, paid_later) == ["RECEIPTED", "RECEIPTED"]
    paid = e2e_of(app, paid_later)
    assert booked(world)[paid] == 1

    with empty_database(db_url, tmp_path, request) as url:
        report = restore_backup(target.open(backup.name), url, app.master_secret,
                                app.settings.home, config_dir=app.settings.config_dir,
                                frozen_by="admin")
        restored = on(app, url)
        try:
            _frozen_until_released(world, restored, report, clock, sent=sent,
                                   paid_later=paid_later, approved_later=approved_later)
        finally:
            restored.close()


def _frozen_until_released(world: DemoWorld, restored: App, report: RestoreReport,
                           clock: Clock, *, sent: int, paid_later: int,
                           approved_later: int) -> None:
    frozen = report.sending_frozen
    assert frozen is not None
    with restored.sessions() as s:
        accounts = s.execute(select(BankAccount.id, BankAccount.status)).all()
    assert {status for _, status in accounts} == {"frozen"}
    assert sorted(a.account_id for a in frozen.accounts) == sorted(i for i, _ in accounts)
    assert frozen.payments == {"APPROVED": 1, "SUBMITTING": 1}
    [event] = events(restored, "backup.restored")
    assert (event.actor, event.details["backup"]) == ("admin", report.backup)
    [doctor] = list(check_restore_freeze(restored))
    assert doctor.status is Status.FAIL and "yinqi backup release --all" in doctor.detail
    # The audit trail goes on from the backup's head, intact.
    with restored.sessions() as s:
        assert restored.audit.verify(s).ok

    # Approval goes on while sending is frozen.
    approve_pending(restored, clock.next())
    assert states(restored, paid_later, approved_later) == ["APPROVED", "APPROVED"]
    # Batching leaves both approved payments where they are, with one readable reason each.
    formed = form_batches(restored)
    assert formed.batch_ids == [] and set(formed.frozen) == {paid_later, approved_later}
    assert "is frozen (freeze #" in formed.frozen[paid_later]
    assert states(restored, paid_later, approved_later) == ["APPROVED", "APPROVED"]
    # The batch under way is resolved by a status query with its own message ID, never sent.
    with BankPool(restored) as banks:
        stage = send_batches(restored, banks, "worker", pacing=FAST)
    assert (stage.sends, stage.queries) == (0, 1)
    assert states(restored, sent)[0] not in ("SUBMITTING", "UNKNOWN")
    assert events(restored, "batch.sending")[-1].details["attempt"] == 1

    # The operator finds the payment the bank has already made and stops it; a treasurer may
    # not release the accounts, an administrator may.
    at = clock.next()
    with restored.sessions.begin() as s:
        assert decide.freeze(s, restored.audit, restored.field_cipher, subject_type="payment",
                             subject=paid_later, username="liu.treasurer",
                             code=code(restored, "liu.treasurer", at),
                             reason="paid before the restore", now=at).ok
    at = clock.next()
    with restored.sessions.begin() as s:
        assert decide.reject(s, restored.audit, restored.field_cipher, payment=paid_later,
                             username="wang.cfo", code=code(restored, "wang.cfo", at),
                             reason="paid before the restore (statement of the day)",
                             now=at).ok
    at = clock.next()
    with restored.sessions.begin() as s:
        refused = decide.release_restore(s, restored.audit, restored.field_cipher, account=None,
                                         username="liu.treasurer",
                                         code=code(restored, "liu.treasurer", at),
                                         reason="checked", now=at)
    assert refused.refused is not None and refused.refused.code == "ROLE_MISSING"
    at = clock.next()
    with restored.sessions.begin() as s:
        released = decide.release_restore(s, restored.audit, restored.field_cipher,
                                          account=None, username="admin",
                                          code=code(restored, "admin", at),
                                          reason="statements checked up to today", now=at)
    assert released.ok, released.message
    assert "nothing is frozen by the restore any more" in released.message
    assert list(check_restore_freeze(restored)) == []
    [event] = events(restored, "backup.released")
    assert event.actor == "admin" and event.details["still_frozen"] == 0

    # Sending goes on: the payment approved after the restore is paid, the one the bank
    # already paid is not paid again.
    drive(restored, pacing=FAST, deadline=time.monotonic() + 120)
    assert open_work(restored) == (0, 0)
    assert states(restored, sent, paid_later, approved_later) == \
        ["RECEIPTED", "REJECTED", "RECEIPTED"]
    bank = booked(world)
    assert {bank[e2e_of(restored, p)] for p in (sent, paid_later, approved_later)} == {1}
    assert max(bank.values()) == 1
    with restored.sessions() as s:
        assert restored.audit.verify(s).ok


# --- freezes on top of freezes; who may release -------------------------------------------------


def test_an_account_a_rule_froze_stays_frozen_until_the_restore_is_released_too(
        app: App, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    clock = Clock()
    at = clock.next()
    with app.sessions.begin() as s:
        manual = decide.freeze(s, app.audit, app.field_cipher, subject_type="account",
                               subject=CMB, username="liu.treasurer",
                               code=code(app, "liu.treasurer", at), reason="card skimmed",
                               now=at)
    assert manual.ok
    target = LocalTarget(tmp_path / "backups")
    backup = create_backup(app.engine, target, app.master_secret, kind="full",
                           home=app.settings.home, config_dir=app.settings.config_dir)
    with empty_database(db_url, tmp_path, request) as url:
        report = restore_backup(target.open(backup.name), url, app.master_secret,
                                tmp_path / "restored-home", frozen_by="service:ops")
        restored = on(app, url)
        try:
            frozen = report.sending_frozen
            assert frozen is not None
            cmb = next(a for a in frozen.accounts if a.account.endswith("****0808"))
            with restored.sessions() as s:
                rules = sorted(s.execute(select(Freeze.rule).where(
                    Freeze.subject_id == cmb.account_id, Freeze.status == "active")).scalars())
                reason = s.get_one(Freeze, cmb.freeze_id).reason
            assert rules == ["backup_restore", "manual"]
            assert f"restored from backup {backup.name} taken" in reason
            assert f"yinqi backup release {cmb.account_id}" in reason

            # Two people lift the rule's freeze: the restore's still holds the account.
            for user in ("liu.treasurer", "admin"):
                at = clock.next()
                with restored.sessions.begin() as s:
                    assert decide.unfreeze(s, restored.audit, restored.field_cipher,
                                           freeze_id=manual.freeze_id, username=user,
                                           code=code(restored, user, at), reason="new card",
                                           now=at).ok
            assert _status(restored, cmb.account_id) == "frozen"
            # The administrator releases that one account; the others stay frozen.
            at = clock.next()
            with restored.sessions.begin() as s:
                one = decide.release_restore(s, restored.audit, restored.field_cipher,
                                             account=CMB, username="admin",
                                             code=code(restored, "admin", at),
                                             reason="CMB statement checked", now=at)
            assert one.ok and one.freeze_id == cmb.freeze_id
            assert _status(restored, cmb.account_id) == "active"
            with restored.sessions() as s:
                left = still_frozen(s)
            assert len(left.accounts) == len(frozen.accounts) - 1
            assert left.backup == backup.name
            at = clock.next()
            with restored.sessions.begin() as s:
                again = decide.release_restore(s, restored.audit, restored.field_cipher,
                                               account=CMB, username="admin",
                                               code=code(restored, "admin", at),
                                               reason="again", now=at)
            assert again.refused is not None and again.refused.code == "NOT_RESTORE_FROZEN"
            with restored.sessions() as s:
                assert restored.audit.verify(s).ok
        finally:
            restored.close()


def _status(app: App, account_id: int) -> str:
    with app.sessions() as s:
        return s.get_one(BankAccount, account_id).status


# --- the drill ------------------------------------------------------------------------------------


def test_the_drill_freezes_nothing_and_still_proves_the_backup(app: App) -> None:
    take_backup(app, "full", actor="t")
    report = drill(app, actor="system:backup")
    assert report.ok, report.problems
    assert report.rows > 0 and report.audit_head["seq"] > 0
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(Freeze)).scalar_one() == 0
        assert set(s.execute(select(BankAccount.status)).scalars()) == {"active"}
        assert not s.execute(select(AuditEventRow.seq).where(
            AuditEventRow.action.in_(["backup.restored", "risk.frozen"]))).first()
    assert list(check_restore_freeze(app)) == []
