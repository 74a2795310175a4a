"""The risk screen in the database: load a chunk's history, run the rules, act on the hits.

:func:`screen_payments` is called where payments are entered (intake), corrected (rerun),
approved (the approval gate) and rejected by the bank (status reports). For a chunk of
payments it loads the history the enabled rules need in a handful of queries (never one per
payment), runs :mod:`yinqi.risk`, and then, in the caller's transaction:

- writes one ``risk_hits`` row per (payment, rule) that fired;
- raises one ``Alert`` per rule (kind ``risk.<rule>``, account numbers masked) naming the
  payments, and appends one ``risk.fired`` audit event per rule;
- ``hold``: moves the payment to HELD (it goes back into approval only when a treasurer,
  finance manager or CFO releases it: :mod:`yinqi.store.risk_decisions`);
- ``freeze``: freezes what the rule's ``freeze`` names (payment, batch or the company account)
  with a ``freezes`` row and a ``risk.frozen`` event; the payment is HELD too. Only two
  different people lift a freeze.

One active freeze per subject: a second rule freezing the same thing links to the first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, func, insert, or_, select, type_coerce, update
from sqlalchemy.orm import Session

from config.risk import RiskRules
from yinqi.alerts import Severity
from yinqi.payments import BatchState
from yinqi.risk.stages import Stage

if TYPE_CHECKING:
    from yinqi.risk.rules import Hit
    from yinqi.risk.screen import Inputs, Needs, Verdict
from yinqi.security.fields import FieldCrypto
from yinqi.security.masking import mask_account
from yinqi.states import PaymentState
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, BankAccount, Batch, Freeze, Payment, RiskHit
from yinqi.store.models import StatusReport as StatusReportRow
from yinqi.store.transitions import move_payments
from yinqi.store.types import field_crypto

S = PaymentState

#: Payments a risk decision can still stop: nothing of them has been built into a bank message.
HOLDABLE = (S.REQUESTED.value, S.PENDING_APPROVAL.value, S.APPROVED.value)
#: History that never counts: a person stopped these payments, they were never going out.
_NOT_HISTORY = (S.REJECTED.value, S.CANCELLED.value)
#: Batches a freeze still stops: nothing of them has left for the bank.
UNSENT_BATCHES = (BatchState.BUILT.value, BatchState.SIGNED.value)
#: Batch states in which a freeze at least stops every further send (a status query still runs).
FREEZABLE_BATCHES = (*UNSENT_BATCHES, BatchState.SUBMITTING.value, BatchState.UNKNOWN.value)
_BANK_REJECTIONS = ("RJCT", "CANC")
#: The rule of the freezes a restore puts on every company account (yinqi.backup.guard).
RESTORE_RULE = "backup_restore"

# Payments per screen: the IN lists of one chunk (ids, accounts, names: at most 3 x CHUNK
# values in one query) stay far below SQLite's 32,766 bound parameters. Each chunk scans the
# payments a few times, so fewer, larger chunks are faster.
CHUNK = 5000


@dataclass
class ScreenResult:
    hits: int = 0
    #: Payments moved to HELD (held or frozen) by this screen.
    held: list[int] = field(default_factory=list)
    #: Freezes this screen created (ids).
    freezes: list[int] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)
    by_rule: dict[str, int] = field(default_factory=dict)

    def merge(self, other: ScreenResult) -> None:
        self.hits += other.hits
        self.held += other.held
        self.freezes += other.freezes
        self.alerts += other.alerts
        for rule, n in other.by_rule.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + n


@dataclass(frozen=True)
class _Facts:
    """What the actions need to know about a candidate payment."""

    state: str
    debtor_account_id: int
    batch_id: int | None
    account: str


# --- screening ------------------------------------------------------------------------------


def screen_payments(
    session: Session,
    rules: RiskRules,
    audit: AuditLog,
    payment_ids: Sequence[int],
    *,
    actor: str,
    now: datetime,
    stage: Stage = Stage.INTAKE,
) -> ScreenResult:
    """Screen the payments and act on every hit, in the caller's transaction."""
    from yinqi.risk.screen import idle, needs, screen  # pandas: only when screening
    result = ScreenResult()
    ids = sorted(set(payment_ids))
    if idle(rules, stage, now):
        return result
    wanted = needs(rules, stage, now)
    for chunk in _chunks(ids, CHUNK):
        inputs, facts = load_inputs(session, chunk, wanted)
        hits = screen(inputs, rules, now=now, stage=stage)
        if hits:
            result.merge(_act(session, rules, audit, hits, facts, actor=actor, now=now,
                              stage=stage))
    return result


def screen_failures(
    session: Session, rules: RiskRules, audit: AuditLog, payment_ids: Sequence[int], *,
    actor: str, now: datetime,
) -> ScreenResult:
    """After the bank rejected (or returned) payments: when payments to one payee failed
    ``count`` times within the window, act on that payee's payments still before the bank.

    The failed payments themselves are final; their hits record the pattern and raise the
    alert. A hold or payment freeze stops the payee's other payments that have not been
    built into a bank message yet; ``freeze = "account"`` freezes the company account the
    failed payments came from; ``freeze = "batch"`` freezes the unsent bank messages that
    carry payments to the payee.
    """
    from yinqi.risk.rules import Hit
    from yinqi.risk.screen import needs, screen
    result = ScreenResult()
    rule = rules.repeated_failures
    ids = sorted(set(payment_ids))
    if not rule.enabled or not ids:
        return result
    wanted = needs(rules, Stage.FAILURE, now)
    for chunk in _chunks(ids, CHUNK):
        inputs, facts = load_inputs(session, chunk, wanted)
        hits = screen(inputs, rules, now=now, stage=Stage.FAILURE)
        if not hits:
            continue
        # The failed payments are final: of their freezes only the company account's applies.
        result.merge(_act(session, rules, audit, hits, facts, actor=actor, now=now,
                          stage=Stage.FAILURE, targets=("account",)))
        if rule.action == "alert":
            continue
        payees = sorted({facts[h.payment_id].account for h in hits})
        target = rule.freeze_target if rule.action == "freeze" else "payment"
        if target == "account":
            continue  # _act froze the accounts the failed payments came from
        waiting = _waiting_for(session, payees, exclude=chunk)
        if target == "batch":
            result.merge(_freeze_batches_of(session, audit, rules, waiting, actor=actor,
                                            now=now))
            continue
        # Payments already in a bank message are past holding (freeze = "batch" is for them).
        stoppable = {pid: (acc, state) for pid, (acc, state, _batch) in waiting.items()
                     if state in HOLDABLE or state == S.HELD.value}
        if stoppable:
            follow = [Hit(pid, "repeated_failures",
                          f"payments to {mask_account(acc)} were rejected by the bank "
                          f"{rule.count} times or more within {rule.within_hours} h; this one "
                          "is stopped with them",
                          {"account": mask_account(acc), "count": rule.count,
                           "within_hours": rule.within_hours})
                      for pid, (acc, _state) in stoppable.items()]
            more = _with_debtors(session, {pid: _Facts(state, 0, None, acc)
                                           for pid, (acc, state) in stoppable.items()})
            result.merge(_act(session, rules, audit, follow, more, actor=actor, now=now,
                              stage=Stage.FAILURE, alert=False))
    return result


def load_inputs(session: Session, ids: Sequence[int], wanted: Needs
                ) -> tuple[Inputs, dict[int, _Facts]]:
    """The candidates and the history the enabled rules need: at most four queries.

    Account numbers and names are encrypted deterministically, so the candidates' stored
    ciphertexts select the history in SQL as they are, and only distinct values are
    decrypted, never every history row (see :class:`_Opener`).
    """
    from yinqi.risk import rules as r
    from yinqi.risk.screen import Inputs
    conn = session.connection()
    opener = _Opener(field_crypto(conn.dialect))
    p = Payment.__table__.c
    account, name = type_coerce(p.creditor_account, Text), type_coerce(p.creditor_name, Text)
    rows = conn.execute(
        select(p.id, p.amount_minor, p.currency, account, name, p.state, p.debtor_account_id,
               p.batch_id).where(p.id.in_(list(ids))).order_by(p.id)).all()
    candidates = r.frame("candidates", [
        (pid, amount, currency, opener.account(acc), opener.name(nm))
        for pid, amount, currency, acc, nm, *_ in rows])
    facts = {row[0]: _Facts(row[5], row[6], row[7], opener.account(row[3])) for row in rows}
    inputs = Inputs(candidates)
    if not rows:
        return inputs, facts
    accounts = sorted({row[3] for row in rows})
    wanted_accounts = set(accounts)
    mine = set(ids)
    # The candidates are left out of their own history in Python (recent) or by grouping on
    # "is a candidate" (aggregates): SQLite plans `id NOT IN (...)` as a slow scan.
    candidate = p.id.in_(list(ids)).label("candidate")
    counted = p.state.not_in(_NOT_HISTORY)
    if wanted.recent_since is not None:
        inputs = _replace(inputs, recent=r.frame("recent", [
            (pid, at, amount, currency, opener.account(acc)) for pid, at, amount, currency, acc
            in conn.execute(select(p.id, p.created_at, p.amount_minor, p.currency, account)
                            .where(account.in_(accounts), p.created_at >= wanted.recent_since,
                                   counted))
            if pid not in mine]))
    if wanted.seen or wanted.names:
        # One pass for both: when each (name, account) pair was first paid, for the payees'
        # accounts (new_payee) and, with names, for their names (payee_account_changed).
        where = account.in_(accounts)
        if wanted.names:
            where = or_(where, name.in_(sorted({row[4] for row in rows})))
        pairs = [(nm, acc, first) for nm, acc, is_candidate, first in conn.execute(
            select(name, account, candidate, func.min(p.created_at).label("first"))
            .where(where, counted).group_by(name, account, candidate)) if not is_candidate]
        firsts: dict[str, datetime] = {}
        for _nm, acc, first in pairs:
            if acc in wanted_accounts and (acc not in firsts or first < firsts[acc]):
                firsts[acc] = first
        inputs = _replace(
            inputs,
            accounts_seen=r.frame("accounts_seen", [(opener.account(acc), first)
                                                    for acc, first in firsts.items()]),
            names_seen=r.frame("names_seen", [(opener.name(nm), opener.account(acc), first)
                                              for nm, acc, first in pairs]
                               if wanted.names else []))
    if wanted.failures_since is not None:
        reports = StatusReportRow.__table__.c
        rejected = or_(reports.tx_status.in_(_BANK_REJECTIONS),
                       and_(reports.tx_status.is_(None),
                            reports.group_status.in_(_BANK_REJECTIONS)))
        inputs = _replace(inputs, failures=r.frame("failures", [
            (opener.account(acc), at) for acc, at in conn.execute(
                select(account, reports.received_at)
                .join_from(StatusReportRow.__table__, Payment.__table__,
                           p.id == reports.payment_id)
                .where(account.in_(accounts), reports.received_at >= wanted.failures_since,
                       rejected))]))
    return inputs, facts


class _Opener:
    """Decrypts each distinct stored value once per screen (history repeats the same few)."""

    def __init__(self, crypto: FieldCrypto) -> None:
        self._crypto = crypto
        self._seen: dict[tuple[str, str], str] = {}

    def _open(self, value: str, domain: str) -> str:
        key = (domain, value)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self._crypto.open(value, domain)
        return found

    def account(self, value: str) -> str:
        return self._open(value, "account")

    def name(self, value: str) -> str:
        return self._open(value, "name")


def _replace(inputs: Inputs, **frames: Any) -> Inputs:
    return replace(inputs, **frames)


# --- acting on hits -------------------------------------------------------------------------


def _act(
    session: Session,
    rules: RiskRules,
    audit: AuditLog,
    hits: list[Hit],
    facts: dict[int, _Facts],
    *,
    actor: str,
    now: datetime,
    stage: Stage,
    alert: bool = True,
    targets: tuple[str, ...] = ("payment", "batch", "account"),
) -> ScreenResult:
    from yinqi.risk.screen import action_of, verdicts
    result = ScreenResult(hits=len(hits))
    if not hits:
        return result
    decided = verdicts(hits, rules)
    # Freezes first: the hits and the audit events name the freeze each hit caused.
    messages = {(h.payment_id, h.rule): h.message for h in hits}
    wanted: dict[tuple[int, str], tuple[str, int]] = {}
    for pid, verdict in decided.items():
        for rule_name, target in verdict.freezes:
            if target in targets:
                wanted[(pid, rule_name)] = _freeze_subject(target, facts[pid], pid)
    made = freeze_many(session, [(subject, rule_name, messages[(pid, rule_name)])
                                 for (pid, rule_name), subject in wanted.items()],
                       frozen_by=actor, now=now)
    freeze_of = {key: made[subject][0] for key, subject in wanted.items()}
    created: dict[tuple[str, str], list[Freeze]] = defaultdict(list)
    for freeze, new in made.values():
        if new:
            created[(freeze.rule, freeze.subject_type)].append(freeze)
            result.freezes.append(freeze.id)
    for (rule_name, subject_type), freezes in created.items():
        audit.append(session, actor=actor, action="risk.frozen", subject_type=subject_type,
                     subject_ids=[f.subject_id for f in freezes],
                     details={"rule": rule_name, "stage": stage.value,
                              "freeze_ids": [f.id for f in freezes]}, at=now)
    # Then the state: every stopped payment that can still be stopped is HELD.
    result.held = _hold(session, audit, decided, facts, actor=actor, now=now)
    # The hits themselves, one row each.
    rows = []
    for hit in hits:
        action = action_of(rules, hit)
        freeze = freeze_of.get((hit.payment_id, hit.rule))
        rows.append({
            "rule": hit.rule, "action": action,
            "subject_type": freeze.subject_type if freeze else "payment",
            "subject_id": freeze.subject_id if freeze else hit.payment_id,
            "payment_id": hit.payment_id, "message": hit.message,
            "details": {**hit.details, "stage": stage.value,
                        **({"freeze_id": freeze.id} if freeze else {})},
            "status": "open", "created_at": now})
        result.by_rule[hit.rule] = result.by_rule.get(hit.rule, 0) + 1
    session.execute(insert(RiskHit), rows)
    # One alert and one audit event per rule.
    by_rule: dict[str, list[Hit]] = defaultdict(list)
    for hit in hits:
        by_rule[hit.rule].append(hit)
    for rule_name, mine in by_rule.items():
        action = action_of(rules, mine[0])
        alert_id = None
        if alert:
            alert_row = _alert(rule_name, action, mine, stage, now)
            session.add(alert_row)
            session.flush()
            alert_id = alert_row.id
            result.alerts.append(alert_id)
        audit.append(session, actor=actor, action="risk.fired", subject_type="payment",
                     subject_ids=[h.payment_id for h in mine],
                     details={"rule": rule_name, "action": action, "stage": stage.value,
                              "hits": len(mine), "alert_id": alert_id,
                              "first": mine[0].message[:300]}, at=now)
    return result


def _freeze_subject(target: str, facts: _Facts, pid: int) -> tuple[str, int]:
    if target == "account":
        return "account", facts.debtor_account_id
    # A payment not in a bank message yet (intake, approval) has no batch to freeze: the
    # payment itself is frozen instead (docs/risk.md).
    if target == "batch" and facts.batch_id is not None:
        return "batch", facts.batch_id
    return "payment", pid


def _hold(session: Session, audit: AuditLog, decided: dict[int, Verdict],
          facts: dict[int, _Facts], *, actor: str, now: datetime) -> list[int]:
    by_reason: dict[str, list[int]] = defaultdict(list)
    for pid, verdict in decided.items():
        if verdict.stops and facts[pid].state in HOLDABLE:
            stopping = [name for name, _ in verdict.freezes] or list(verdict.rules)
            kind = "frozen" if verdict.action == "freeze" else "held"
            by_reason[f"risk: {kind} by {', '.join(dict.fromkeys(stopping))}"].append(pid)
    held: list[int] = []
    for reason, pids in sorted(by_reason.items()):
        move_payments(session, audit, pids, S.HELD, actor=actor, reason=reason)
        held += pids
    return sorted(held)


def _alert(rule_name: str, action: str, hits: list[Hit], stage: Stage, now: datetime) -> Alert:
    n = len(hits)
    accounts = sorted({str(h.details["account"]) for h in hits if "account" in h.details})
    what = {"alert": "alert only, the payments go on", "hold": "held for a release",
            "freeze": "frozen until two people lift it"}[action]
    message = hits[0].message + (f" (and {n - 1} more)" if n > 1 else "")
    return Alert(kind=f"risk.{rule_name}",
                 severity=(Severity.CRITICAL if action == "freeze" else Severity.WARNING).value,
                 subject=f"{n} payment(s) hit risk rule {rule_name} ({what})",
                 message=message[:2000],
                 details={"rule": rule_name, "action": action, "stage": stage.value,
                          "payment_ids": [h.payment_id for h in hits][:1000],
                          "accounts": accounts[:50]},
                 created_at=now)


def _waiting_for(session: Session, accounts: list[str], *, exclude: Sequence[int]
                 ) -> dict[int, tuple[str, str, int | None]]:
    """Payments to these payee accounts not yet built into a bank message, or in one not sent:
    id -> (account, state, batch id)."""
    found: dict[int, tuple[str, str, int | None]] = {}
    for chunk in _chunks(accounts, CHUNK):
        for pid, account, state, batch_id in session.execute(
            select(Payment.id, Payment.creditor_account, Payment.state, Payment.batch_id)
            .outerjoin(Batch, Batch.id == Payment.batch_id)
            .where(Payment.creditor_account.in_(list(chunk)),
                   Payment.id.not_in(list(exclude)),
                   or_(Payment.state.in_([*HOLDABLE, S.HELD.value]),
                       and_(Payment.state.in_([S.BATCHED.value, S.SIGNED.value]),
                            Batch.state.in_(UNSENT_BATCHES))))):
            found[pid] = (account, state, batch_id)
    return found


def _with_debtors(session: Session, facts: dict[int, _Facts]) -> dict[int, _Facts]:
    if not facts:
        return facts
    debtors = dict(session.execute(select(Payment.id, Payment.debtor_account_id)
                                   .where(Payment.id.in_(list(facts)))).all())
    return {pid: _Facts(f.state, debtors[pid], f.batch_id, f.account) for pid, f in facts.items()}


def _freeze_batches_of(session: Session, audit: AuditLog, rules: RiskRules,
                       waiting: dict[int, tuple[str, str, int | None]], *, actor: str,
                       now: datetime) -> ScreenResult:
    """repeated_failures with freeze = "batch": the unsent bank messages carrying the payee's
    payments are frozen (a payment in none yet is frozen itself)."""
    from yinqi.risk.rules import Hit
    result = ScreenResult()
    rule = rules.repeated_failures
    reason = (f"payments to the payee were rejected by the bank {rule.count} times or more "
              f"within {rule.within_hours} h")
    created: list[Freeze] = []
    loose: dict[int, tuple[str, str, int | None]] = {}
    for pid, (account, state, batch_id) in waiting.items():
        if batch_id is None:
            loose[pid] = (account, state, batch_id)
            continue
        freeze, new = freeze_subject(session, "batch", batch_id, rule="repeated_failures",
                                     frozen_by=actor, now=now,
                                     reason=f"{reason} ({mask_account(account)})")
        if new:
            created.append(freeze)
            result.freezes.append(freeze.id)
    if created:
        audit.append(session, actor=actor, action="risk.frozen", subject_type="batch",
                     subject_ids=[f.subject_id for f in created],
                     details={"rule": "repeated_failures", "stage": Stage.FAILURE.value,
                              "freeze_ids": [f.id for f in created]}, at=now)
    if loose:
        follow = [Hit(pid, "repeated_failures", f"{reason}; this payment is stopped with them",
                      {"account": mask_account(acc)}) for pid, (acc, _s, _b) in loose.items()]
        facts_ = _with_debtors(session, {pid: _Facts(st, 0, None, acc)
                                         for pid, (acc, st, _b) in loose.items()})
        result.merge(_act(session, rules, audit, follow, facts_, actor=actor, now=now,
                          stage=Stage.FAILURE, alert=False))
    return result


# --- freezes --------------------------------------------------------------------------------


def active_freeze(session: Session, subject_type: str, subject_id: int) -> Freeze | None:
    return session.execute(
        select(Freeze).where(Freeze.subject_type == subject_type,
                             Freeze.subject_id == subject_id, Freeze.status == "active")
        .order_by(Freeze.id).limit(1)).scalar_one_or_none()


def freeze_subject(session: Session, subject_type: str, subject_id: int, *, rule: str,
                   frozen_by: str, reason: str, now: datetime) -> tuple[Freeze, bool]:
    """The subject's active freeze, creating it (and blocking the subject) if there is none.

    Returns (freeze, created). The caller audits and, for a payment, moves it to HELD.
    """
    made = freeze_many(session, [((subject_type, subject_id), rule, reason)],
                       frozen_by=frozen_by, now=now)
    return made[(subject_type, subject_id)]


def freeze_many(session: Session, wanted: Sequence[tuple[tuple[str, int], str, str]], *,
                frozen_by: str, now: datetime) -> dict[tuple[str, int], tuple[Freeze, bool]]:
    """:func:`freeze_subject` for many ((type, id), rule, reason) at once, in a few queries.

    The first rule asking for a subject names its freeze; later ones link to it.
    """
    out: dict[tuple[str, int], tuple[Freeze, bool]] = {}
    by_type: dict[str, set[int]] = defaultdict(set)
    for (subject_type, subject_id), _rule, _reason in wanted:
        by_type[subject_type].add(subject_id)
    for subject_type, ids in by_type.items():
        for chunk in _chunks(sorted(ids), CHUNK):
            for freeze in session.execute(
                select(Freeze).where(Freeze.subject_type == subject_type,
                                     Freeze.subject_id.in_(list(chunk)),
                                     Freeze.status == "active").order_by(Freeze.id)).scalars():
                out.setdefault((subject_type, freeze.subject_id), (freeze, False))
    fresh: list[Freeze] = []
    for subject, rule, reason in wanted:
        if subject in out:
            continue
        freeze = Freeze(subject_type=subject[0], subject_id=subject[1], rule=rule,
                        reason=reason[:2000], frozen_by=frozen_by, status="active",
                        created_at=now)
        out[subject] = (freeze, True)
        fresh.append(freeze)
    if not fresh:
        return out
    session.add_all(fresh)
    session.flush()
    accounts = [f.subject_id for f in fresh if f.subject_type == "account"]
    batches = [f.subject_id for f in fresh if f.subject_type == "batch"]
    if accounts:
        session.execute(update(BankAccount).where(BankAccount.id.in_(accounts),
                                                  BankAccount.status == "active")
                        .values(status="frozen").execution_options(synchronize_session=False))
    if batches:
        session.execute(update(Batch).where(Batch.id.in_(batches)).values(frozen=True)
                        .execution_options(synchronize_session=False))
    return out


def frozen_accounts(session: Session) -> dict[int, int | None]:
    """Company accounts that are frozen: account id -> the active freeze's id (None when the
    account was set to frozen without a freeze row, e.g. by hand)."""
    rows = session.execute(
        select(BankAccount.id, Freeze.id)
        .outerjoin(Freeze, and_(Freeze.subject_type == "account",
                                Freeze.subject_id == BankAccount.id, Freeze.status == "active"))
        .where(BankAccount.status == "frozen")).all()
    return {account_id: freeze_id for account_id, freeze_id in rows}


def frozen_unsent_batches(session: Session) -> list[int]:
    """Unsent batches that wait for a freeze to be lifted (their own, or their account's)."""
    return list(session.execute(
        select(Batch.id).join(BankAccount, BankAccount.id == Batch.debtor_account_id)
        .where(Batch.state.in_(UNSENT_BATCHES),
               or_(Batch.frozen.is_(True), BankAccount.status == "frozen"))
        .order_by(Batch.id)).scalars())


def sendable():  # type: ignore[no-untyped-def]
    """SQL condition on batches: neither the batch nor its debtor account is frozen."""
    return and_(Batch.frozen.is_(False), Batch.debtor_account_id.not_in(
        select(BankAccount.id).where(BankAccount.status == "frozen")))


def why_frozen(session: Session, batch_id: int) -> str | None:
    """Why a batch must not be sent now (its own freeze or its account's), or None."""
    row = session.execute(
        select(Batch.frozen, BankAccount.status, BankAccount.number, BankAccount.id)
        .join(BankAccount, BankAccount.id == Batch.debtor_account_id)
        .where(Batch.id == batch_id)).first()
    if row is None:
        return None
    frozen, status, number, account_id = row
    if frozen:
        freeze = active_freeze(session, "batch", batch_id)
        return f"the batch is frozen{_named(freeze)}"
    if status == "frozen":
        freeze = active_freeze(session, "account", account_id)
        return f"its debtor account {mask_account(number)} is frozen{_named(freeze)}"
    return None


def _named(freeze: Freeze | None) -> str:
    return f" (freeze #{freeze.id}, rule {freeze.rule})" if freeze is not None else ""


def audit_refused(session: Session, audit: AuditLog, *, actor: str, doing: str,
                  subject_type: str, subject_ids: Sequence[object], reason: str,
                  now: datetime | None = None, **details: Any) -> None:
    """A refusal because of a freeze or a risk rule: always audited, with what was refused."""
    audit.append(session, actor=actor, action="risk.refused", subject_type=subject_type,
                 subject_ids=list(subject_ids),
                 details={"doing": doing, "reason": reason, **details}, at=now)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = ["CHUNK", "HOLDABLE", "RESTORE_RULE", "ScreenResult", "Stage", "active_freeze",
           "audit_refused", "freeze_subject", "frozen_accounts", "frozen_unsent_batches",
           "load_inputs", "sendable", "screen_failures", "screen_payments", "why_frozen"]
