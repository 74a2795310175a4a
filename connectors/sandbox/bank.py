"""The sandbox bank's business: taking payment orders, settling, returning, reporting.

Dialect codecs turn requests into :class:`Instruction` lists and outcomes back into bytes;
this module never sees XML or JSON. All state lives in the bank's own database, so a
restarted server answers exactly as before.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
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
    StatementSequence,
)
from connectors.sandbox.records import AccountStatement, Entry, EntryDetail
from connectors.sandbox.settings import BankSpec, SandboxConfig
from yinqi.money import Money

INTERNAL_KINDS = ("capital", "suspense", "clearing", "fees")


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
        self.banks = {code: Bank(code, spec) for code, spec in config.banks.items()}
        self._settle_lock = threading.Lock()

    # --- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Create tables and open the configured accounts, funded from the bank's capital."""
        SandboxBase.metadata.create_all(self.engine)
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
        return s.execute(select(Account).where(
            Account.bank == bank, Account.number == number, Account.currency == currency
        )).scalar_one_or_none()

    def bank(self, code: str) -> Bank:
        return self.banks[code]

    # --- taking payment orders ------------------------------------------------------------

    def submit(self, bank_code: str, msg_id: str, *, dialect: str, message_name: str,
               request: bytes, instructions: Sequence[Instruction],
               render: Renderer) -> Answer:
        """Take a payment order exactly once: a known message ID gets its original answer."""
        self.settle_due()
        replay = self.stored_answer(bank_code, msg_id)
        if replay is not None:
            return replay
        bank = self.banks[bank_code]
        try:
            with self.sessions.begin() as s:
                outcomes = self._take(s, bank, msg_id, instructions)
                body, content_type = render(outcomes)
                s.add(Message(bank=bank_code, msg_id=msg_id, dialect=dialect,
                              message_name=message_name,
                              request_sha256=hashlib.sha256(request).hexdigest(),
                              response=body, response_type=content_type,
                              received_at=self.clock.now()))
        except IntegrityError:
            # The same message raced in on another connection and won: answer as it was.
            replay = self.stored_answer(bank_code, msg_id)
            if replay is None:
                raise
            return replay
        return Answer(body, content_type, replayed=False)

    def stored_answer(self, bank_code: str, msg_id: str) -> Answer | None:
        with self.sessions() as s:
            row = s.execute(select(Message).where(
                Message.bank == bank_code, Message.msg_id == msg_id)).scalar_one_or_none()
            return Answer(row.response, row.response_type, replayed=True) if row else None

    def _take(self, s: Session, bank: Bank, msg_id: str,
              instructions: Sequence[Instruction]) -> list[Outcome]:
        now = self.clock.now()
        known = set(s.execute(select(Payment.end_to_end_id).where(
            Payment.bank == bank.code,
            Payment.end_to_end_id.in_([i.end_to_end_id for i in instructions]),
        )).scalars())
        outcomes = []
        for ins in instructions:
            reason = self._refusal(s, bank, ins, known, now)
            if reason:
                outcomes.append(Outcome(ins.end_to_end_id, ins.instr_id, "RJCT", *reason))
                s.add(Rejection(bank=bank.code, msg_id=msg_id, end_to_end_id=ins.end_to_end_id,
                                instr_id=ins.instr_id, pmt_inf_id=ins.pmt_inf_id,
                                reason_code=reason[0],
                                reason_text=reason[1], received_at=now))
                continue
            known.add(ins.end_to_end_id)
            outcomes.append(self._accept(s, bank, msg_id, ins, now))
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
        if bank.is_own(ins.creditor_agent) or ins.creditor_agent is None:
            creditor = self._account(s, bank.code, ins.creditor_account, ins.currency)
            if creditor is None and bank.is_own(ins.creditor_agent):
                return "AC01", "creditor account unknown at this bank"
            if creditor is not None and creditor.status == "closed":
                return "AC04", "creditor account is closed"
        if debtor.per_tx_limit_minor is not None and amount > debtor.per_tx_limit_minor:
            return "AM02", "amount exceeds the account's per-transaction limit"
        execution = bank.calendar.execution_date(now, ins.requested_date)
        if debtor.daily_limit_minor is not None:
            used = s.execute(select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
                Payment.bank == bank.code, Payment.debtor_account == debtor.number,
                Payment.currency == debtor.currency, Payment.execution_date == execution,
                Payment.status.in_(("ACSP", "ACSC", "RTND")))).scalar_one()
            if used + amount > debtor.daily_limit_minor:
                return "AM02", "amount exceeds the account's daily limit"
        if ledger.balance(s, debtor) + debtor.overdraft_minor < amount:
            return "AM04", "insufficient funds"
        return None

    def _accept(self, s: Session, bank: Bank, msg_id: str, ins: Instruction,
                now: datetime) -> Outcome:
        cal = bank.calendar
        execution = cal.execution_date(now, ins.requested_date)
        start = max(now, cal.opening(execution)) if execution > cal.business_date(now) else now
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
        s.flush()
        debtor = self._account(s, bank.code, ins.debtor_account, ins.currency)
        assert debtor is not None
        today = cal.business_date(now)
        # Funds leave the debtor at once (a hold into suspense); settlement moves them on.
        ledger.post(s, bank=bank.code, kind="hold", payment_id=payment.id,
                    legs=[(debtor, -payment.amount_minor),
                          (self._internal(s, bank.code, "suspense", ins.currency),
                           payment.amount_minor)],
                    at=now, booking_date=today, value_date=execution)
        return Outcome(ins.end_to_end_id, ins.instr_id, "ACSP", bank_reference=payment.bank_reference)

    # --- the passage of time --------------------------------------------------------------

    def settle_due(self, now: datetime | None = None) -> int:
        """Settle accepted payments whose time has come, and book due returns (退票)."""
        now = now or self.clock.now()
        done = 0
        with self._settle_lock:
            while True:
                with self.sessions.begin() as s:
                    due = s.execute(select(Payment).where(
                        Payment.status == "ACSP", Payment.due_at <= now
                    ).order_by(Payment.id).limit(500).with_for_update(skip_locked=True)
                    ).scalars().all()
                    returns = s.execute(select(Payment).where(
                        Payment.status == "ACSC", Payment.return_due_at <= now
                    ).order_by(Payment.id).limit(500).with_for_update(skip_locked=True)
                    ).scalars().all()
                    for p in due:
                        self._settle(s, p, now)
                    for p in returns:
                        self._return(s, p, now)
                done += len(due) + len(returns)
                if len(due) < 500 and len(returns) < 500:
                    return done

    def _settle(self, s: Session, p: Payment, now: datetime) -> None:
        bank = self.banks[p.bank]
        today = bank.calendar.business_date(now)
        suspense = self._internal(s, p.bank, "suspense", p.currency)
        internal = bank.is_own(p.creditor_agent) or p.creditor_agent is None
        creditor = self._account(s, p.bank, p.creditor_account, p.currency) if internal else None
        if creditor is not None and creditor.status != "open":
            debtor = self._account(s, p.bank, p.debtor_account, p.currency)
            assert debtor is not None
            ledger.post(s, bank=p.bank, kind="release", payment_id=p.id,
                        legs=[(suspense, -p.amount_minor), (debtor, p.amount_minor)],
                        at=now, booking_date=today, value_date=today)
            p.status, p.reason_code = "RJCT", "AC04" if creditor.status == "closed" else "AC06"
            p.reason_text = f"creditor account is {creditor.status}"
            return
        target = creditor or self._internal(s, p.bank, "clearing", p.currency)
        ledger.post(s, bank=p.bank, kind="settle", payment_id=p.id,
                    legs=[(suspense, -p.amount_minor), (target, p.amount_minor)],
                    at=now, booking_date=today, value_date=p.execution_date)
        fee = _minor(bank.spec.fee_per_external_transfer, p.currency)
        if creditor is None and fee:
            debtor = self._account(s, p.bank, p.debtor_account, p.currency)
            assert debtor is not None
            ledger.post(s, bank=p.bank, kind="fee", payment_id=p.id,
                        legs=[(debtor, -fee), (self._internal(s, p.bank, "fees", p.currency), fee)],
                        at=now, booking_date=today, value_date=today)
        p.status, p.settled_at = "ACSC", now
        if creditor is None and self.faults.returns(p.end_to_end_id):
            day = today
            for _ in range(self.faults.spec.return_after_days):
                day = bank.calendar.next_business_day(day)
            p.return_due_at = bank.calendar.opening(day)

    def _return(self, s: Session, p: Payment, now: datetime) -> None:
        today = self.banks[p.bank].calendar.business_date(now)
        debtor = self._account(s, p.bank, p.debtor_account, p.currency)
        assert debtor is not None
        ledger.post(s, bank=p.bank, kind="return", payment_id=p.id,
                    legs=[(self._internal(s, p.bank, "clearing", p.currency), -p.amount_minor),
                          (debtor, p.amount_minor)],
                    at=now, booking_date=today, value_date=today)
        p.status, p.returned_at = "RTND", now
        p.reason_code, p.reason_text = "AC04", "returned by the creditor's bank: account closed"

    # --- what the bank reports ------------------------------------------------------------

    def payments(self, bank_code: str, *, msg_id: str | None = None,
                 end_to_end_ids: Iterable[str] | None = None) -> list[Payment]:
        self.settle_due()
        with self.sessions() as s:
            q = select(Payment).where(Payment.bank == bank_code).order_by(Payment.id)
            if msg_id is not None:
                q = q.where(Payment.msg_id == msg_id)
            if end_to_end_ids is not None:
                q = q.where(Payment.end_to_end_id.in_(list(end_to_end_ids)))
            return list(s.execute(q).scalars())

    def rejections(self, bank_code: str, msg_id: str) -> list[Rejection]:
        with self.sessions() as s:
            return list(s.execute(select(Rejection).where(
                Rejection.bank == bank_code, Rejection.msg_id == msg_id
            ).order_by(Rejection.id)).scalars())

    def message_exists(self, bank_code: str, msg_id: str) -> bool:
        return self.stored_answer(bank_code, msg_id) is not None

    def customer_account(self, bank_code: str, number: str,
                         currency: str | None = None) -> Account | None:
        with self.sessions() as s:
            q = select(Account).where(Account.bank == bank_code, Account.number == number,
                                      Account.kind == "customer")
            if currency:
                q = q.where(Account.currency == currency)
            return s.execute(q).scalars().first()

    def statement(self, bank_code: str, number: str, day: date, *,
                  intraday: bool = False) -> AccountStatement:
        """The account's bookings of one business day, with opening and closing balances."""
        self.settle_due()
        bank = self.banks[bank_code]
        now = self.clock.now()
        with self.sessions.begin() as s:
            acct = s.execute(select(Account).where(
                Account.bank == bank_code, Account.number == number,
                Account.kind == "customer")).scalars().first()
            if acct is None:
                raise KeyError(number)
            opening = s.execute(select(func.coalesce(func.sum(Leg.amount_minor), 0))
                                .join(Booking, Booking.id == Leg.booking_id)
                                .where(Leg.account_id == acct.id, Booking.booking_date < day)
                                ).scalar_one()
            rows = s.execute(
                select(Leg, Booking, Payment)
                .join(Booking, Booking.id == Leg.booking_id)
                .outerjoin(Payment, Payment.id == Booking.payment_id)
                .where(Leg.account_id == acct.id, Booking.booking_date == day)
                .order_by(Booking.id)
            ).all()
            entries = _entries(rows, acct.currency)
            sequence = self._sequence(s, bank_code, acct, day, now) if not intraday else 0
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

    def _sequence(self, s: Session, bank_code: str, acct: Account, day: date,
                  now: datetime) -> int:
        row = s.execute(select(StatementSequence).where(
            StatementSequence.bank == bank_code, StatementSequence.account == acct.number,
            StatementSequence.currency == acct.currency, StatementSequence.day == day,
        )).scalar_one_or_none()
        if row:
            return row.sequence
        last = s.execute(select(func.max(StatementSequence.sequence)).where(
            StatementSequence.bank == bank_code, StatementSequence.account == acct.number,
            StatementSequence.currency == acct.currency)).scalar_one() or 0
        step = 2 if self.faults.statement_gap(f"{bank_code}|{acct.number}|{day}") else 1
        s.add(StatementSequence(bank=bank_code, account=acct.number, currency=acct.currency,
                                day=day, sequence=last + step, created_at=now))
        return last + step

    def ledger_check(self) -> dict[str, object]:
        with self.sessions() as s:
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
    batches: dict[tuple[str, date], int] = {}
    for leg, booking, payment in rows:
        credit = leg.amount_minor > 0
        amount = Money.from_minor(abs(leg.amount_minor), currency).amount
        detail = None
        if payment is not None:
            outgoing = booking.kind in ("hold", "fee")
            detail = EntryDetail(
                end_to_end_id=payment.end_to_end_id,
                amount=Money.from_minor(payment.amount_minor if booking.kind != "fee"
                                        else abs(leg.amount_minor), currency).amount,
                currency=currency,
                counterparty_name=payment.creditor_name if outgoing or booking.kind == "release"
                or booking.kind == "return" else payment.debtor_name,
                counterparty_account=payment.creditor_account
                if outgoing or booking.kind in ("release", "return") else payment.debtor_account,
                remittance=payment.purpose,
            )
        kind = {"fee": "fee", "return": "return", "release": "transfer"}.get(booking.kind, "transfer")
        key = (payment.batch_key, booking.booking_date) if (
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


def _minor(amount: Decimal, currency: str) -> int:
    return Money.of(amount, currency).minor


def _opt_minor(amount: Decimal | None, currency: str) -> int | None:
    return None if amount is None else _minor(amount, currency)


def resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path
