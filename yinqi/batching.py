"""Grouping approved payments into bank messages.

One message debits one account, in one currency, with one urgency and one execution date
(pain.001's PmtInf carries all four once), and holds at most the bank's batch size limit.
Grouping is deterministic (payments ordered by id), so a crash between planning and saving
plans the same batches again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from yinqi.errors import InvalidValue


@dataclass(frozen=True, slots=True, order=True)
class BatchKey:
    bank: str
    debtor_account: str
    currency: str
    urgent: bool
    execution_date: date


@dataclass(frozen=True, slots=True)
class Batchable:
    """What batching needs to know of an approved payment."""

    payment_id: int
    bank: str
    debtor_account: str
    currency: str
    urgent: bool
    execution_date: date


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    key: BatchKey
    payment_ids: tuple[int, ...]


def plan_batches(payments: Iterable[Batchable], limits: Mapping[str, int]) -> list[PlannedBatch]:
    groups: dict[BatchKey, list[int]] = defaultdict(list)
    for p in sorted(payments, key=lambda p: p.payment_id):
        groups[BatchKey(p.bank, p.debtor_account, p.currency, p.urgent,
                        p.execution_date)].append(p.payment_id)
    planned = []
    for key in sorted(groups):
        try:
            limit = limits[key.bank]
        except KeyError:
            raise InvalidValue(f"bank {key.bank!r} has no batch size limit configured") from None
        if limit < 1:
            raise InvalidValue(f"bank {key.bank!r}: batch size limit must be at least 1")
        ids = groups[key]
        planned.extend(PlannedBatch(key, tuple(ids[i:i + limit]))
                       for i in range(0, len(ids), limit))
    return planned
