"""Taking apart a batch that was never signed, so that its payments can go another way.

The way out of a batch set aside because its file cannot be built (INVALID): its payments go
back to APPROVED and are batched again by the next run, except those that cannot be built
even on their own, which are HELD with the reason; batching them again would fail again.
A BUILT batch can be dissolved too (nothing of it has left). A signed one cannot: its bytes
are kept for exactly-once sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yinqi.bootstrap import App
from yinqi.errors import InvalidValue
from yinqi.payments import BatchState
from yinqi.pipeline.banks import BankPool
from yinqi.pipeline.reruns import find_batch
from yinqi.pipeline.signing import outgoing
from yinqi.states import PaymentState
from yinqi.store.models import Batch, Payment
from yinqi.store.risk import active_freeze
from yinqi.store.transitions import move_payments

S = PaymentState
#: Batches nothing of which has been signed or sent.
DISSOLVABLE = (BatchState.BUILT.value, BatchState.INVALID.value)


@dataclass
class Dissolved:
    batch_id: int
    msg_id: str
    returned: list[int] = field(default_factory=list)
    #: Payment id -> why its own order cannot be built.
    held: dict[int, str] = field(default_factory=dict)


def dissolve_batch(app: App, ref: str, *, actor: str, reason: str) -> Dissolved:
    """Dissolve batch ``ref`` (id or message ID); refused unless BUILT or INVALID."""
    why = " ".join(reason.split())
    if not why:
        raise InvalidValue("dissolving a batch needs a reason: say why it is taken apart")
    batch = find_batch(app, ref)
    with app.sessions() as s:
        _check(s, batch)
    faults = _faulty_payments(app, batch)
    result = Dissolved(batch.id, batch.msg_id)
    with app.sessions.begin() as s:
        row = s.execute(select(Batch).where(Batch.id == batch.id).with_for_update()
                        ).scalars().one()
        _check(s, row)  # again under the lock: a worker may have signed it meanwhile
        pids = list(s.execute(select(Payment.id).where(
            Payment.batch_id == batch.id, Payment.state == S.BATCHED.value)
            .order_by(Payment.id).with_for_update()).scalars())
        move_payments(s, app.audit, pids, S.APPROVED, actor=actor,
                      reason=f"batch {batch.msg_id} dissolved by {actor}: {why}")
        s.execute(update(Payment).where(Payment.id.in_(pids)).values(batch_id=None)
                  .execution_options(synchronize_session=False))
        held = {pid: faults[pid] for pid in pids if pid in faults}
        for pid, fault in held.items():
            move_payments(s, app.audit, [pid], S.HELD, actor=actor,
                          reason=f"its payment order cannot be built: {fault}"[:500])
        row.state = BatchState.DISSOLVED.value
        row.lease_until = None
        result.held = held
        result.returned = [pid for pid in pids if pid not in held]
        app.audit.append(s, actor=actor, action="batch.dissolved", subject_type="batch",
                         subject_ids=[batch.id],
                         details={"msg_id": batch.msg_id, "state": batch.state, "reason": why,
                                  "returned": result.returned,
                                  "held": {str(k): v[:300] for k, v in held.items()}})
    return result


def _check(session: Session, batch: Batch) -> None:
    if batch.state not in DISSOLVABLE:
        raise InvalidValue(f"batch {batch.msg_id} is {batch.state}: only a batch that was never "
                           "signed (BUILT, or INVALID: set aside) can be dissolved; a signed "
                           "one is sent as it was signed")
    if batch.frozen:
        # Dissolving must not be a way around a freeze: its payments would be batched anew.
        freeze = active_freeze(session, "batch", batch.id)
        named = f" (freeze #{freeze.id})" if freeze is not None else ""
        raise InvalidValue(f"batch {batch.msg_id} is frozen{named}: two people lift the freeze "
                           "first (`yinqi risk unfreeze`)")


def _faulty_payments(app: App, batch: Batch) -> dict[int, str]:
    """Payments whose order cannot be built even on their own, with why: each is built and
    checked alone, exactly as signing would (the bank's dialect, its schema)."""
    from dataclasses import replace

    order = outgoing(app, batch)
    with app.sessions() as s:
        ids = dict(s.execute(select(Payment.end_to_end_id, Payment.id)
                             .where(Payment.batch_id == batch.id)).all())
    faults: dict[int, str] = {}
    with BankPool(app) as banks:
        bank = banks.for_signing(batch.bank)
        for payment in order.payments:
            try:
                bank.prepare(replace(order, payments=[payment]))
            except InvalidValue as exc:
                faults[ids[payment.end_to_end_id]] = str(exc)
    return faults
