"""The sandbox bank's business: taking payment orders, settling, returning, reporting.

Dialect codecs turn requests into :class:`Instruction` lists and outcomes back into bytes;
this module never sees XML or JSON. All state lives in the bank's own database, so a
restarted server answers exactly as before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from connectors.sandbox import ledger
from connectors.sandbox.clock import Calendar, Clock
from connectors.sandbox.faults import FaultPlan
from connectors.sandbox.models import (
    Account,
    Booking,
    Leg,
    Message,
    Payment,
    Rejection,
    SandboxBase,
)
from connectors.sandbox.records import AccountStatement, Entry, EntryDetail
from connectors.sandbox.settings import BankSpec, SandboxConfig
from yinqi.errors import ConfigError
from yinqi.money import Money

INTERNAL_KINDS = ("capital", "suspense", "clearing", "fees")
ATTEMPTS = 6
log = logging.getLogger("yinqi.sandbox")


class NoStatement(LookupError):
    """There is no end-of-day statement for that day: not a business day, before the account
    existed, or not closed yet."""


class NotClosed(NoStatement):
    """A statement was asked for a day the bank has not closed yet."""


def _transient(exc: OperationalError) -> bool:
    # PostgreSQL deadlock (40P01) or serialization failure (40001): the loser just retries.
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One payment as any dialect asks for it."""

    end_to_end_id: str
    instr_id: str | None
    debtor_account: str
    debtor_name: str
    creditor_account: str
    creditor_name: str
    creditor_agent: str | None
    creditor_bank_name: str | None
    amount: Decimal
    currency: str
    purpose: str | None
    urgent: bool = False
    requested_date: date | None = None
    batch_key: str | None = None
    pmt_inf_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    end_to_end_id: str
    instr_id: str | None
    status: str                  # ACSP (accepted), RJCT
    reason_code: str | None = None
    reason_text: str | None = None
    bank_reference: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    content_type: str
    replayed: bool
    # A replayed key whose request bytes differ from the original's.
    conflicting: bool = False


Renderer = Callable[[Sequence[Outcome]], tuple[bytes, str]]


def group_status(outcomes: Sequence[Outcome]) -> str:
    accepted = sum(o.status != "RJCT" for o in outcomes)
    if accepted == len(outcomes):
        return "ACTC"
    return "RJCT" if accepted == 0 else "PART"


class Bank:
    """One bank the server plays: its rules, calendar and accounts."""

    def __init__(self, code: str, spec: BankSpec) -> None:
        self.code, self.spec = code, spec
        self.calendar = Calendar(spec.timezone, spec.cutoff, frozenset(spec.holidays))
        self.identities = {spec.bic.upper(), spec.bic.upper()[:8], spec.cnaps}

    def is_own(self, agent: str | None) -> bool:
        return agent is not None and agent.upper() in self.identities


class Sandbox:
    """All banks of one server over one database."""

    def __init__(self, config: SandboxConfig, engine: Engine, clock: Clock,
                 faults: FaultPlan) -> None:
        self.config, self.engine, self.clock, self.faults = config, engine, clock, faults
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        # Reads that change nothing: on SQLite they open a plain (deferred) transaction, which
        # in WAL mode reads the last committed state without queueing behind writers for the
        # write lock that every other transaction takes up front (see runner._engine).
        self.reads = sessionmaker(engine.execution_options(sandbox_read=True),
                                  expire_on_commit=False)
        self.banks = {code: Bank(code, spec) for code, spec in config.banks.items()}
        self._settle_lock = threading.Lock()

    # --- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Create tables and open the configured accounts, funded from the bank's capital."""
        for bank in self.banks.values():
            for spec in bank.spec.accounts:
                try:
                    _minor(bank.spec.fee_per_external_transfer, spec.currency)
                except ValueError:
                    raise ConfigError(
                        f"banks.{bank.code}.fee_per_external_transfer: "
                        f"{bank.spec.fee_per_external_transfer} cannot be charged in "
                        f"{spec.currency} (account {spec.number})") from None
        SandboxBase.metadata.create_all(self.engine)
        for index in Payment.__table__.indexes:
            # Indexes added after a database was created are not made by create_all.
            index.create(self.engine, checkfirst=True)
        now = self.clock.now()
        with self.sessions.begin() as s:
            for bank in self.banks.values():
                today = bank.calendar.business_date(now)
                currencies = {a.currency for a in bank.spec.accounts} or {"CNY"}
                internal = {(kind, cur): self._internal(s, bank.code, kind, cur)
                            for kind in INTERNAL_KINDS for cur in currencies}
                for spec in bank.spec.accounts:
                    if self._account(s, bank.code, spec.number, spec.currency):
                        continue
                    acct = Account(bank=bank.code, number=spec.number, currency=spec.currency,
                                   name=spec.name, kind="customer", status=spec.status,
                                   overdraft_minor=_minor(spec.overdraft, spec.currency),
                                   per_tx_limit_minor=_opt_minor(spec.per_transaction_limit,
                                                                 spec.currency),
                                   daily_limit_minor=_opt_minor(spec.daily_limit, spec.currency))
                    s.add(acct)
                    s.flush()
                    opening = _minor(spec.balance, spec.currency)
                    if opening:
                        ledger.post(s, bank=bank.code, kind="opening",
                                    legs=[(internal[("capital", spec.currency)], -opening),
                                          (acct, opening)],
                                    at=now, booking_date=today, value_date=today)

    def _internal(self, s: Session, bank: str, kind: str, currency: str) -> Account:
        number = f"{kind.upper()}-{currency}"
        acct = self._account(s, bank, number, currency)
        if acct is None:
            acct = Account(bank=bank, number=number, currency=currency, kind=kind,
                           name=f"{bank} {kind}")
            s.add(acct)
            s.flush()
        return acct

    @staticmethod
    def _account(s: Session, bank: str, number: str, currency: str) -> Account | None:
        # Remembered for the session (one transaction): a batch of thousands of payments from
        # one account asks for it thousands of times. Balances are never read from these
        # objects (ledger.balance asks the database), only identity, kind, status and limits.
        cache = s.info.setdefault("sb_accounts", {})
        key = (bank, number, currency)
        acct = cache.get(key)
        if acct is None:
            acct = s.execute(select(Account).where(
                Account.bank == bank, Account.number == number, Account.currency == currency
            )).scalar_one_or_none()
            if acct is not None:
                cache[key] = acct
        return acct

    def bank(self, code: str) -> Bank:
        return self.banks[code]

    # --- taking payment orders ------------------------------------------------------------

    def submit(self, bank_code: str, msg_id: str, *, dialect: str, message_name: str,
               request: bytes, instructions: Sequence[Instruction],
               render: Renderer, rejections_are_final: bool = False) -> Answer:
        """Take a payment order exactly once: a known message ID gets its original answer.

        ``rejections_are_final``: a reference the bank once refused is refused again with the
        original reason (the direct-connect rule) instead of being open to a new attempt.
        """
        self.settle_due()
        digest = hashlib.sha256(request).hexdigest()
        bank = self.banks[bank_code]
        for attempt in range(ATTEMPTS):
            replay = self.stored_answer(bank_code, msg_id, digest)
            if replay is not None:
                return replay
            try:
                with self.sessions.begin() as s:
                    outcomes = self._take(s, bank, msg_id, instructions, rejections_are_final)
                    body, content_type = render(outcomes)
                    s.add(Message(bank=bank_code, msg_id=msg_id, dialect=dialect,
                                  message_name=message_name, request_sha256=digest,
                                  response=body, response_type=content_type,
                                  received_at=self.clock.now()))
                return Answer(body, content_type, replayed=False)
            except IntegrityError:
                # Another connection took the same message or end-to-end ID first: the next
                # round answers with its result (a replay, or DUPL).
                log.info("submit %s/%s lost a race, retrying", bank_code, msg_id)
            except OperationalError as exc:
                if not _transient(exc) or attempt == ATTEMPTS - 1:
                    raise
        raise RuntimeError(f"message {msg_id}: still conflicting after {ATTEMPTS} attempts")

    def stored_answer(self, bank_code: str, msg_id: str, digest: str | None = None) -> Answer | None:
        with self.reads() as s:
            row = s.execute(select(Message).where(
                Message.bank == bank_code, Message.msg_id == msg_id)).scalar_one_or_none()
            if row is None:
                return None
            return Answer(row.response, row.response_type, replayed=True,
                          conflicting=digest is not None and digest != row.request_sha256)

    def _take(self, s: Session, bank: Bank, msg_id: str, instructions: Sequence[Instruction],
              rejections_are_final: bool) -> list[Outcome]:
        now = self.clock.now()
        debtors = s.execute(select(Account).where(
            Account.bank == bank.code, Account.kind == "customer",
            Account.number.in_({i.debtor_account for i in instructions}))).scalars().all()
        ledger.lock(s, list(debtors))
        refs = [i.end_to_end_id for i in instructions]
        known = set(s.execute(select(Payment.end_to_end_id).where(
            Payment.bank == bank.code, Payment.end_to_end_id.in_(refs))).scalars())
        refused: dict[str, tuple[str, str]] = {}
        if rejections_are_final:
            for r in s.execute(select(Rejection).where(
                    Rejection.bank == bank.code, Rejection.end_to_end_id.in_(refs))).scalars():
                refused.setdefault(r.end_to_end_id, (r.reason_code, r.reason_text or ""))
        outcomes = []
        # Accepted payments' holds, booked together once all are known (same bookings as one
        # by one: the checks above run on running figures, see _used_today and _balance).
        holds: list[tuple[Payment, list[tuple[Account, int]], date, date]] = []
        for ins in instructions:
            reason = refused.get(ins.end_to_end_id) or self._refusal(s, bank, ins, known, now)
            known.add(ins.end_to_end_id)
            if reason:
                outcomes.append(Outcome(ins.end_to_end_id, ins.instr_id, "RJCT", *reason))
                s.add(Rejection(bank=bank.code, msg_id=msg_id, end_to_end_id=ins.end_to_end_id,
                                instr_id=ins.instr_id, pmt_inf_id=ins.pmt_inf_id,
                                reason_code=reason[0], reason_text=reason[1], received_at=now))
                continue
            outcomes.append(self._accept(s, bank, msg_id, ins, now, holds))
        if holds:
            s.flush()  # the accepted payments get their ids
            journal = ledger.Journal()
            for payment, legs, booking_day, execution in holds:
                journal.add(bank=bank.code, kind="hold", payment_id=payment.id, legs=legs,
                            at=now, booking_date=booking_day, value_date=execution)
            journal.write(s)
        return outcomes

    def _refusal(self, s: Session, bank: Bank, ins: Instruction, known: set[str],
                 now: datetime) -> tuple[str, str] | None:
        if ins.end_to_end_id in known:
            return "DUPL", f"end-to-end ID {ins.end_to_end_id} was already received"
        try:
            amount = _minor(ins.amount, ins.currency)
        except Exception:
            return "AM12", f"amount {ins.amount} {ins.currency} is not valid"
        if amount <= 0:
            return "AM01", "amount must be positive"
        debtor = self._account(s, bank.code, ins.debtor_account, ins.currency)
        if debtor is None or debtor.kind != "customer":
            other = s.execute(select(Account.currency).where(
                Account.bank == bank.code, Account.number == ins.debtor_account,
                Account.kind == "customer")).first()
            if other:
                return "AM03", f"debtor account is held in {other[0]}, not {ins.currency}"
            return "AC01", "debtor account unknown at this bank"
        if debtor.status == "closed":
            return "AC04", "debtor account is closed"
        if debtor.status == "blocked":
            return "AC06", "debtor account is blocked"
        if ins.creditor_account in bank.spec.blacklist:
            return "RR04", "creditor is on the bank's sanctions list"
        creditor = None
        if bank.is_own(ins.creditor_agent) or ins.creditor_agent is None:
            creditor = self._customer(s, bank.code, ins.creditor_account, ins.currency)
            if creditor is None and bank.is_own(ins.creditor_agent):
                return "AC01", "creditor account unknown at this bank"
            if creditor is not None and creditor.status == "closed":
                return "AC04", "creditor account is closed"
        if debtor.per_tx_limit_minor is not None and amount > debtor.per_tx_limit_minor:
            return "AM02", "amount exceeds the account's per-transaction limit"
        execution = bank.calendar.execution_date(now, ins.requested_date)
        if debtor.daily_limit_minor is not None:
            if self._used_today(s, bank, debtor, execution) + amount > debtor.daily_limit_minor:
                return "AM02", "amount exceeds the account's daily limit"
        fee = 0 if creditor is not None else self._fee(bank, ins.currency)
        if self._balance(s, debtor) + debtor.overdraft_minor < amount + fee:
            return "AM04", "insufficient funds (amount plus charges)"
        return None

    # The running figures of one order: read from the database once per transaction (the
    # debtors are locked, so nobody else moves them meanwhile) and carried forward by _accept,
    # instead of a SUM over the day's payments and a balance query for every instruction.

    @staticmethod
    def _used_today(s: Session, bank: Bank, debtor: Account, execution: date) -> int:
        used = s.info.setdefault("sb_used_today", {})
        key = (bank.code, debtor.number, debtor.currency, execution)
        if key not in used:
            used[key] = s.execute(select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
                Payment.bank == bank.code, Payment.debtor_account == debtor.number,
                Payment.currency == debtor.currency, Payment.execution_date == execution,
                Payment.status.in_(("ACSP", "ACSC", "RTND")))).scalar_one()
        return int(used[key])

    @staticmethod
    def _balance(s: Session, debtor: Account) -> int:
        balances = s.info.setdefault("sb_balances", {})
        if debtor.id not in balances:
            balances[debtor.id] = ledger.balance(s, debtor)
        return int(balances[debtor.id])

    @staticmethod
    def _held(s: Session, bank: Bank, debtor: Account, execution: date, amount: int) -> None:
        """_accept put ``amount`` on hold: the running figures move with it."""
        used = s.info.get("sb_used_today", {})
        key = (bank.code, debtor.number, debtor.currency, execution)
        if key in used:
            used[key] += amount
        balances = s.info.get("sb_balances", {})
        if debtor.id in balances:
            balances[debtor.id] -= amount

    @staticmethod
    def _fee(bank: Bank, currency: str) -> int:
        return _minor(bank.spec.fee_per_external_transfer, currency)

    def _customer(self, s: Session, bank: str, number: str, currency: str) -> Account | None:
        acct = self._account(s, bank, number, currency)
        return acct if acct is not None and acct.kind == "customer" else None

    def _accept(self, s: Session, bank: Bank, msg_id: str, ins: Instruction, now: datetime,
                holds: list[tuple[Payment, list[tuple[Account, int]], date, date]]) -> Outcome:
        cal = bank.calendar
        execution = cal.execution_date(now, ins.requested_date)
        start = max(now, cal.opening(execution))
        payment = Payment(
            bank=bank.code, msg_id=msg_id, end_to_end_id=ins.end_to_end_id,
            instr_id=ins.instr_id, bank_reference=ledger.new_reference("P"),
            debtor_account=ins.debtor_account, debtor_name=ins.debtor_name,
            creditor_account=ins.creditor_account, creditor_name=ins.creditor_name,
            creditor_agent=ins.creditor_agent, creditor_bank_name=ins.creditor_bank_name,
            amount_minor=_minor(ins.amount, ins.currency), currency=ins.currency,
            purpose=ins.purpose, urgent=ins.urgent, batch_key=ins.batch_key,
            pmt_inf_id=ins.pmt_inf_id, status="ACSP",
            received_at=now, execution_date=execution,
            due_at=start + timedelta(seconds=self.config.settle_after_seconds),
        )
        s.add(payment)
        debtor = self._account(s, bank.code, ins.debtor_account, ins.currency)
        assert debtor is not None
        today = cal.business_date(now)
        booking_day = today if cal.is_business_day(today) else cal.next_business_day(today)
        # Funds leave the debtor at once (a hold into suspense); settlement moves them on.
        holds.append((payment, [(debtor, -payment.amount_minor),
                                (self._internal(s, bank.code, "suspense", ins.currency),
                                 payment.amount_minor)], booking_day, execution))
        self._held(s, bank, debtor, execution, payment.amount_minor)
        return Outcome(ins.end_to_end_id, ins.instr_id, "ACSP", bank_reference=payment.bank_reference)

    # --- the passage of time --------------------------------------------------------------

    def settle_due(self, now: datetime | None = None) -> int:
        """Settle accepted payments whose time has come, and book due returns (退票).

        Each is booked at the moment it fell due, not when the clock was read, so a bank that
        was asleep (or a fake clock moved by days) still dates every booking right.
        """
        now = now or self.clock.now()
        if not self._anything_due(now):
            # Every request asks first; most of the time nothing is due, and the answer comes
            # from two index lookups without queueing for the settlement lock or the database
            # write lock.
            return 0
        done = 0
        with self._settle_lock:
            while True:
                handled, more = self._settle_round(now)
                done += handled
                if not more:
                    return done

    def _anything_due(self, now: datetime) -> bool:
        with self.reads() as s:
            for due in (select(Payment.id).where(Payment.status == "ACSP", Payment.due_at <= now),
                        select(Payment.id).where(Payment.status == "ACSC",
                                                 Payment.return_due_at <= now)):
                if s.execute(due.limit(1)).first() is not None:
                    return True
        return False

    def _settle_round(self, now: datetime) -> tuple[int, bool]:
        for attempt in range(ATTEMPTS):
            try:
                with self.sessions.begin() as s:
                    due = s.execute(select(Payment).where(
                        Payment.status == "ACSP", Payment.due_at <= now
                    ).order_by(Payment.due_at, Payment.id).limit(500)
                        .with_for_update(skip_locked=True)).scalars().all()
                    returns = s.execute(select(Payment).where(
                        Payment.status == "ACSC", Payment.return_due_at <= now
                    ).order_by(Payment.return_due_at, Payment.id).limit(500)
                        .with_for_update(skip_locked=True)).scalars().all()
                    self._lock_customers(s, [*due, *returns])
                    work = [*((p, self._settle) for p in due),
                            *((p, self._return) for p in returns)]
                    handled = self._book_together(s, work)
                    if handled is None:
                        handled = 0
                        for p, step in work:
                            try:
                                with s.begin_nested():
                                    step(s, p)
                                handled += 1
                            except Exception:
                                # One payment the bank cannot book must not stop all others.
                                log.exception("sandbox: cannot book payment %s",
                                              p.end_to_end_id)
                                s.info.pop("sb_accounts", None)  # may name rolled-back rows
                return handled, len(due) == 500 or len(returns) == 500
            except OperationalError as exc:
                if not _transient(exc) or attempt == ATTEMPTS - 1:
                    raise
        return 0, False

    def _book_together(self, s: Session, work: Sequence[tuple[Payment, Callable[..., None]]]
                       ) -> int | None:
        """Book a whole round in one go (a few statements instead of a dozen per payment);
        None if anything in it failed, and the caller books the round one by one, so that one
        payment the bank cannot book stops no other."""
        if not work:
            return 0
        try:
            with s.begin_nested():
                journal = ledger.Journal()
                for p, step in work:
                    step(s, p, journal)
                journal.write(s)
                s.flush()
            return len(work)
        except Exception:
            log.info("sandbox: a settlement round failed as a whole; booking one by one",
                     exc_info=True)
            s.info.pop("sb_accounts", None)
            return None

    @staticmethod
    def _post(s: Session, journal: ledger.Journal | None, **booking: Any) -> None:
        if journal is None:
            ledger.post(s, **booking)
        else:
            journal.add(**booking)

    def _lock_customers(self, s: Session, payments: Sequence[Payment]) -> None:
        numbers = {p.debtor_account for p in payments} | {p.creditor_account for p in payments}
        banks = {p.bank for p in payments}
        if numbers:
            ledger.lock(s, list(s.execute(select(Account).where(
                Account.bank.in_(banks), Account.kind == "customer",
                Account.number.in_(numbers))).scalars()))

    def _settle(self, s: Session, p: Payment, journal: ledger.Journal | None = None) -> None:
        bank = self.banks[p.bank]
        assert p.due_at is not None
        at = p.due_at
        day = bank.calendar.business_date(at)
        suspense = self._internal(s, p.bank, "suspense", p.currency)
        internal = bank.is_own(p.creditor_agent) or p.creditor_agent is None
        creditor = self._customer(s, p.bank, p.creditor_account, p.currency) if internal else None
        debtor = self._customer(s, p.bank, p.debtor_account, p.currency)
        assert debtor is not None
        if creditor is not None and creditor.status != "open":
            self._post(s, journal, bank=p.bank, kind="release", payment_id=p.id,
                       legs=[(suspense, -p.amount_minor), (debtor, p.amount_minor)],
                       at=at, booking_date=day, value_date=day)
            p.status, p.reason_code = "RJCT", "AC04" if creditor.status == "closed" else "AC06"
            p.reason_text = f"creditor account is {creditor.status}"
            return
        target = creditor or self._internal(s, p.bank, "clearing", p.currency)
        self._post(s, journal, bank=p.bank, kind="settle", payment_id=p.id,
                    legs=[(suspense, -p.amount_minor), (target, p.amount_minor)],
                    at=at, booking_date=day, value_date=p.execution_date)
        fee = self._fee(bank, p.currency)
        if creditor is None and fee:
            self._post(s, journal, bank=p.bank, kind="fee", payment_id=p.id,
                       legs=[(debtor, -fee), (self._internal(s, p.bank, "fees", p.currency), fee)],
                       at=at, booking_date=day, value_date=day)
        p.status, p.settled_at = "ACSC", at
        if creditor is None and self.faults.returns(p.end_to_end_id):
            back = day
            for _ in range(self.faults.spec.return_after_days):
                back = bank.calendar.next_business_day(back)
            p.return_due_at = bank.calendar.opening(back)

    def _return(self, s: Session, p: Payment, journal: ledger.Journal | None = None) -> None:
        assert p.return_due_at is not None
        at = p.return_due_at
        day = self.banks[p.bank].calendar.business_date(at)
        debtor = self._customer(s, p.bank, p.debtor_account, p.currency)
        assert debtor is not None
        self._post(s, journal, bank=p.bank, kind="return", payment_id=p.id,
                    legs=[(self._internal(s, p.bank, "clearing", p.currency), -p.amount_minor),
                          (debtor, p.amount_minor)],
                    at=at, booking_date=day, value_date=day)
        p.status, p.returned_at = "RTND", at
        p.reason_code, p.reason_text = "AC04", "returned by the creditor's bank: account closed"

    def clock_floor(self) -> datetime | None:
        """The latest moment the bank has booked anything: a restarted clock must not go back."""
        SandboxBase.metadata.create_all(self.engine)
        with self.sessions() as s:
            return s.execute(select(func.max(Booking.booked_at))).scalar_one()

    # --- what the bank reports ------------------------------------------------------------

    def payments(self, bank_code: str, *, msg_id: str | None = None,
                 end_to_end_ids: Iterable[str] | None = None,
                 bank_references: Iterable[str] | None = None) -> list[Payment]:
        self.settle_due()
        with self.reads() as s:
            q = select(Payment).where(Payment.bank == bank_code).order_by(Payment.id)
            if msg_id is not None:
                q = q.where(Payment.msg_id == msg_id)
            if end_to_end_ids is not None:
                q = q.where(Payment.end_to_end_id.in_(list(end_to_end_ids)))
            if bank_references is not None:
                q = q.where(Payment.bank_reference.in_(list(bank_references)))
            return list(s.execute(q).scalars())

    def rejections(self, bank_code: str, msg_id: str) -> list[Rejection]:
        with self.reads() as s:
            return list(s.execute(select(Rejection).where(
                Rejection.bank == bank_code, Rejection.msg_id == msg_id
            ).order_by(Rejection.id)).scalars())

    def message_exists(self, bank_code: str, msg_id: str) -> bool:
        return self.stored_answer(bank_code, msg_id) is not None

    def customer_account(self, bank_code: str, number: str,
                         currency: str | None = None) -> Account | None:
        with self.reads() as s:
            q = select(Account).where(Account.bank == bank_code, Account.number == number,
                                      Account.kind == "customer")
            if currency:
                q = q.where(Account.currency == currency)
            return s.execute(q).scalars().first()

    def closed_days(self, bank_code: str, number: str, first: date, last: date) -> list[date]:
        """Days in [first, last] with an end-of-day statement: closed business days since
        the account's first booking."""
        cal = self.banks[bank_code].calendar
        today = cal.business_date(self.clock.now())
        opened = self._first_day(bank_code, number)
        days, day = [], max(first, opened or first)
        while day <= last and day < today:
            if cal.is_business_day(day) and opened is not None:
                days.append(day)
            day += timedelta(days=1)
        return days

    def _first_day(self, bank_code: str, number: str) -> date | None:
        with self.reads() as s:
            return s.execute(select(func.min(Booking.booking_date))
                             .join(Leg, Leg.booking_id == Booking.id)
                             .join(Account, Account.id == Leg.account_id)
                             .where(Account.bank == bank_code, Account.number == number,
                                    Account.kind == "customer")).scalar_one()

    def statement(self, bank_code: str, number: str, day: date, *,
                  intraday: bool = False) -> AccountStatement:
        """The account's bookings of one business day, with opening and closing balances.

        An end-of-day statement exists only once the day is closed (``NotClosed`` before);
        ``intraday`` reports today so far.
        """
        self.settle_due()
        bank = self.banks[bank_code]
        now = self.clock.now()
        if not intraday:
            if day >= bank.calendar.business_date(now):
                raise NotClosed(f"the statement for {day} is produced after the day closes")
            if not bank.calendar.is_business_day(day):
                raise NoStatement(f"{day} is not a business day of {bank_code}")
            opened = self._first_day(bank_code, number)
            if opened is None or day < opened:
                raise NoStatement(f"account {number} had no bookings before {day}")
        with self.reads() as s:
            acct = s.execute(select(Account).where(
                Account.bank == bank_code, Account.number == number,
                Account.kind == "customer")).scalars().first()
            if acct is None:
                raise KeyError(number)
            opening = s.execute(select(func.coalesce(func.sum(Leg.amount_minor), 0))
                                .join(Booking, Booking.id == Leg.booking_id)
                                .where(Leg.account_id == acct.id, Booking.booking_date < day)
                                ).scalar_one()
            first_day = s.execute(select(func.min(Booking.booking_date))
                                  .join(Leg, Leg.booking_id == Booking.id)
                                  .where(Leg.account_id == acct.id)).scalar_one()
            rows = s.execute(
                select(Leg, Booking, Payment)
                .join(Booking, Booking.id == Leg.booking_id)
                .outerjoin(Payment, Payment.id == Booking.payment_id)
                .where(Leg.account_id == acct.id, Booking.booking_date == day)
                .order_by(Booking.id)
            ).all()
            entries = _entries(rows, acct.currency)
        sequence = 0 if intraday else self._sequence(bank, acct, first_day or day, day)
        money = lambda minor: Money.from_minor(int(minor), acct.currency).amount  # noqa: E731
        closing = opening + sum(leg.amount_minor for leg, _, _ in rows)
        local_start = datetime.combine(day, datetime.min.time(), bank.calendar.tz)
        return AccountStatement(
            statement_id=f"{bank_code.upper()}-{number}-{day:%Y%m%d}" + ("-I" if intraday else ""),
            electronic_sequence=sequence, created_at=now, from_time=local_start,
            to_time=local_start + timedelta(days=1) - timedelta(seconds=1),
            account=number, currency=acct.currency, owner_name=acct.name,
            servicer_bic=bank.spec.bic, opening_balance=money(opening),
            closing_balance=money(closing), opening_date=day, closing_date=day,
            entries=tuple(entries))

    def _sequence(self, bank: Bank, acct: Account, first: date, day: date) -> int:
        """Statement numbers follow the business days since the account's first booking, so
        every download of a day carries the same number; the gap fault skips one."""
        number, d = 0, first
        while d <= day:
            if bank.calendar.is_business_day(d):
                number += 2 if self.faults.statement_gap(f"{bank.code}|{acct.number}|{d}") else 1
            d += timedelta(days=1)
        return max(number, 1)

    def ledger_check(self) -> dict[str, object]:
        with self.reads() as s:
            report = ledger.check(s)
            twice = s.execute(select(Booking.payment_id, Booking.kind, func.count())
                              .where(Booking.payment_id.is_not(None))
                              .group_by(Booking.payment_id, Booking.kind)
                              .having(func.count() > 1)).all()
            report["payments_booked_twice"] = len(twice)
            report["payments"] = dict(s.execute(
                select(Payment.status, func.count()).group_by(Payment.status)).all())
        return report


def _entries(rows: Sequence[tuple[Leg, Booking, Payment | None]], currency: str) -> list[Entry]:
    """Statement entries; debits of one batch-booked block collapse into one entry."""
    entries: list[Entry] = []
    batches: dict[tuple[str, date, date], int] = {}
    for leg, booking, payment in rows:
        credit = leg.amount_minor > 0
        amount = Money.from_minor(abs(leg.amount_minor), currency).amount
        detail = _detail(booking, payment, leg, currency) if payment is not None else None
        kind = {"fee": "fee", "return": "return", "opening": "opening"}.get(booking.kind,
                                                                           "transfer")
        key = (payment.batch_key, booking.booking_date, booking.value_date) if (
            payment is not None and payment.batch_key and booking.kind == "hold") else None
        if key is not None and key in batches:
            i = batches[key]
            prev = entries[i]
            entries[i] = Entry(amount=prev.amount + amount, currency=currency, credit=False,
                               booking_date=prev.booking_date, value_date=prev.value_date,
                               bank_reference=prev.bank_reference, kind="transfer",
                               details=prev.details + ((detail,) if detail else ()))
            continue
        if key is not None:
            batches[key] = len(entries)
        entries.append(Entry(
            amount=amount, currency=currency, credit=credit, booking_date=booking.booking_date,
            value_date=booking.value_date, bank_reference=booking.reference,
            reversal=booking.kind == "release", kind=kind,
            details=(detail,) if detail else ()))
    return entries


def _detail(booking: Booking, p: Payment, leg: Leg, currency: str) -> EntryDetail:
    if booking.kind == "fee":
        # The bank's charge: no counterparty, so nobody mistakes it for a second payment.
        return EntryDetail(end_to_end_id=None, currency=currency,
                           amount=Money.from_minor(abs(leg.amount_minor), currency).amount,
                           remittance=f"手续费 charges for {p.end_to_end_id}")
    received = booking.kind == "settle" and leg.amount_minor > 0
    return EntryDetail(
        end_to_end_id=p.end_to_end_id, currency=currency,
        amount=Money.from_minor(p.amount_minor, currency).amount,
        counterparty_name=p.debtor_name if received else p.creditor_name,
        counterparty_account=p.debtor_account if received else p.creditor_account,
        remittance=p.purpose)


def _minor(amount: Decimal, currency: str) -> int:
    return Money.of(amount, currency).minor


def _opt_minor(amount: Decimal | None, currency: str) -> int | None:
    return None if amount is None else _minor(amount, currency)


def resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path
