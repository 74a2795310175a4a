"""Double-entry bookkeeping for the sandbox bank.

Every booking has at least two legs that sum to zero, and balances move only through legs,
so the sum of all accounts of a currency never changes: that is the invariant the chaos
tests check after thousands of faulty payments.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from connectors.sandbox.models import Account, Booking, Leg


class LedgerError(Exception):
    """A booking that would break double entry: a bug, never a customer error."""


def new_reference(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8).upper()}"


def post(
    session: Session,
    *,
    bank: str,
    kind: str,
    legs: Sequence[tuple[Account, int]],
    at: datetime,
    booking_date: date,
    value_date: date,
    payment_id: int | None = None,
) -> Booking:
    _check(kind, legs)
    booking = Booking(bank=bank, kind=kind, payment_id=payment_id, reference=new_reference("B"),
                      booked_at=at, booking_date=booking_date, value_date=value_date)
    session.add(booking)
    session.flush()
    session.add_all(Leg(booking_id=booking.id, account_id=a.id, amount_minor=m, currency=a.currency)
                    for a, m in legs)
    # In SQL, so concurrent bookings on one account add up instead of overwriting; in id
    # order, so two bookings never wait for each other's rows in opposite orders.
    for account, amount in sorted(legs, key=lambda leg: leg[0].id):
        session.execute(update(Account).where(Account.id == account.id)
                        .values(balance_minor=Account.balance_minor + amount)
                        .execution_options(synchronize_session=False))
    session.flush()
    return booking


def _check(kind: str, legs: Sequence[tuple[Account, int]]) -> None:
    if len(legs) < 2:
        raise LedgerError(f"a {kind} booking needs two legs, got {len(legs)}")
    currencies = {a.currency for a, _ in legs}
    if len(currencies) != 1:
        raise LedgerError(f"a {kind} booking mixes currencies {sorted(currencies)}")
    if sum(amount for _, amount in legs) != 0:
        raise LedgerError(f"a {kind} booking does not balance: {[m for _, m in legs]}")


class Journal:
    """Bookings gathered in one transaction and written together.

    The same bookings (in the same order), legs and balance changes as :func:`post` one by
    one, each checked the same way as it is added, in a few statements: one INSERT for the
    bookings, one for their legs, and one UPDATE per account moved (in id order, added up in
    SQL as post() does), instead of five statements per booking.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[dict[str, object], Sequence[tuple[Account, int]]]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, *, bank: str, kind: str, legs: Sequence[tuple[Account, int]], at: datetime,
            booking_date: date, value_date: date, payment_id: int | None = None) -> None:
        _check(kind, legs)
        self._entries.append(({"bank": bank, "kind": kind, "payment_id": payment_id,
                               "reference": new_reference("B"), "booked_at": at,
                               "booking_date": booking_date, "value_date": value_date},
                              tuple(legs)))

    def write(self, session: Session) -> int:
        """Write what was gathered (in the caller's transaction); returns the bookings."""
        entries, self._entries = self._entries, []
        if not entries:
            return 0
        session.flush()
        ids = session.execute(
            insert(Booking).returning(Booking.id, sort_by_parameter_order=True),
            [row for row, _ in entries]).scalars().all()
        totals: dict[int, int] = {}
        rows = []
        for booking_id, (_, legs) in zip(ids, entries, strict=True):
            for account, amount in legs:
                rows.append({"booking_id": booking_id, "account_id": account.id,
                             "amount_minor": amount, "currency": account.currency})
                totals[account.id] = totals.get(account.id, 0) + amount
        session.execute(insert(Leg), rows)
        for account_id in sorted(totals):
            if totals[account_id]:
                session.execute(update(Account).where(Account.id == account_id)
                                .values(balance_minor=Account.balance_minor + totals[account_id])
                                .execution_options(synchronize_session=False))
        return len(entries)


def lock(session: Session, accounts: list[Account]) -> None:
    """Take the row locks of customer accounts first, in id order (PostgreSQL; SQLite holds
    the whole database already). Checks of funds and limits made after this cannot race."""
    ids = sorted({a.id for a in accounts})
    if ids:
        session.execute(select(Account.id).where(Account.id.in_(ids))
                        .order_by(Account.id).with_for_update()).all()


def balance(session: Session, account: Account) -> int:
    return session.execute(
        select(Account.balance_minor).where(Account.id == account.id)
    ).scalar_one()


def check(session: Session) -> dict[str, object]:
    """The ledger's invariants, as numbers a test or an operator can read."""
    per_currency = dict(session.execute(
        select(Account.currency, func.sum(Account.balance_minor)).group_by(Account.currency)
    ).all())
    unbalanced = session.execute(
        select(Leg.booking_id).group_by(Leg.booking_id)
        .having((func.sum(Leg.amount_minor) != 0) | (func.count() < 2))
    ).scalars().all()
    legs_total = dict(session.execute(
        select(Leg.account_id, func.sum(Leg.amount_minor)).group_by(Leg.account_id)
    ).all())
    # Columns, not entities: balances move by SQL UPDATE, so loaded objects may be stale.
    drift = [number for acct_id, number, bal in session.execute(
        select(Account.id, Account.number, Account.balance_minor))
             if bal != legs_total.get(acct_id, 0)]
    bookings = session.execute(select(func.count(Booking.id))).scalar_one()
    return {
        "balanced": all(v == 0 for v in per_currency.values()) and not unbalanced and not drift,
        "sum_per_currency": {k: int(v) for k, v in per_currency.items()},
        "unbalanced_bookings": list(unbalanced),
        "balance_drift_accounts": drift,
        "bookings": bookings,
    }
