"""Reconciliation in the database: what to match, and recording what matched.

Loading is done in SQL into pandas frames with the column contract of
:func:`yinqi.matching.match`; recording is bulk inserts and chunked state moves, so a day of a
busy company (hundreds of thousands of lines) takes seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from yinqi.states import PaymentState
from yinqi.store.models import BankAccount, Batch, Payment, ReconMatchItem
from yinqi.store.models import Statement as StatementRow
from yinqi.store.models import StatementLine as LineRow
from yinqi.store.statements import END_OF_DAY

S = PaymentState
#: Payments the bank booked and that wait for their statement line.
TO_MATCH = (S.SETTLED.value, S.RECEIPTED.value)


def load_payments(session: Session, accounts: Sequence[str] | None, first: date, last: date,
                  window_days: int, *, states: Sequence[str] = TO_MATCH) -> pd.DataFrame:
    """Payments of ``accounts`` executed in [first - window, last + window] in ``states``."""
    lo, hi = first - timedelta(days=window_days), last + timedelta(days=window_days)
    query = (
        select(Payment.id.label("payment_id"), Payment.end_to_end_id, Payment.bank_reference,
               Batch.msg_id.label("batch_key"), BankAccount.number.label("account"),
               Payment.currency, Payment.amount_minor,
               Batch.execution_date.label("value_date"), Payment.creditor_name,
               Payment.creditor_account, Payment.state)
        .join(Batch, Batch.id == Payment.batch_id)
        .join(BankAccount, BankAccount.id == Payment.debtor_account_id)
        .where(Payment.state.in_(list(states)), Batch.execution_date.between(lo, hi))
    )
    if accounts:
        query = query.where(BankAccount.number.in_(list(accounts)))
    frame = _frame(session, query)
    if not frame.empty:
        frame["value_date"] = pd.to_datetime(frame["value_date"])
    return frame


def load_lines(session: Session, accounts: Sequence[str] | None, first: date, last: date
               ) -> pd.DataFrame:
    """Booked entries of accepted end-of-day statements in [first, last] not matched yet."""
    matched = exists().where(ReconMatchItem.statement_line_id == LineRow.id)
    query = (
        select(LineRow.id.label("line_id"), StatementRow.account, LineRow.currency,
               LineRow.amount_minor, LineRow.booking_date, LineRow.value_date,
               LineRow.end_to_end_id, LineRow.bank_reference, LineRow.counterparty_name,
               LineRow.counterparty_account, LineRow.remittance, LineRow.is_reversal,
               LineRow.entry_ref, LineRow.status, LineRow.charges_minor)
        .join(StatementRow, StatementRow.id == LineRow.statement_pk)
        .where(StatementRow.status == "accepted", StatementRow.kind.in_(END_OF_DAY),
               and_(LineRow.booking_date >= first, LineRow.booking_date <= last), ~matched)
    )
    if accounts:
        query = query.where(StatementRow.account.in_(list(accounts)))
    frame = _frame(session, query)
    frame["batch_key"] = pd.Series([None] * len(frame), dtype="object")
    for column in ("booking_date", "value_date"):
        if not frame.empty:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _frame(session: Session, query: Any) -> pd.DataFrame:
    result = session.execute(query)
    frame = pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()))
    if frame.empty:
        # No rows: object columns, which the matcher refuses for ids and amounts (a day with
        # nothing left to match must still run, not fail).
        frame = frame.astype({c: "int64" for c in ("payment_id", "line_id", "amount_minor")
                              if c in frame.columns})
    return frame
