"""Bank statements into the database: recognised when re-delivered, checked before use,
quarantined whole when a check fails, never half-imported.

Identity: a statement seen before has the same content hash (its account, period, balances
and every entry, however it was delivered: file, connector, camt or MT940). The same
statement ID and sequence number arriving with *different* content is not a re-delivery but
a conflict: it is quarantined and alerted, never silently replaced.

Banks build statement and message IDs from the account number (``ICBC-<account>-<day>``):
those columns are not encrypted, so they are kept with the number masked
(``ICBC-****3456-<day>``), like the check results, reasons, alerts and audit details.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from yinqi.alerts import Severity
from yinqi.bankdata import Statement
from yinqi.money import Money
from yinqi.security.masking import mask_account, redact, redact_deep
from yinqi.statement_checks import PreviousStatement
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, BankAccount
from yinqi.store.models import Statement as StatementRow
from yinqi.store.models import StatementLine as LineRow

#: How a conflicting re-delivery's quarantine reason starts (it is never rechecked).
CONFLICT = "conflict:"

#: Statements whose entries are matched against payments (intraday reports and
#: notifications would count the same money twice).
END_OF_DAY = frozenset({"camt.053", "mt940", "cn-h2h"})


class Report(Protocol):
    passed: bool

    def as_json(self) -> dict[str, Any]: ...


Checker = Callable[[Sequence[Statement], Mapping[tuple[str, str], PreviousStatement]],
                   Sequence[Report]]


@dataclass
class IntakeResult:
    accepted: list[int] = field(default_factory=list)
    quarantined: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)


def statement_digest(s: Statement) -> str:
    """A hash of what the statement says, independent of how it was delivered."""
    def money(m: Money | None) -> str | None:
        return None if m is None else f"{m.minor}:{m.currency.code}"

    body = {
        "account": s.account, "currency": s.currency, "id": s.statement_id,
        "sequence": s.sequence, "kind": s.kind, "from": str(s.from_date), "to": str(s.to_date),
        "opening": money(s.opening_balance), "closing": money(s.closing_balance),
        "lines": [[money(x.amount), str(x.booking_date), str(x.value_date), x.end_to_end_id,
                   x.bank_reference, x.counterparty_name, x.counterparty_account, x.remittance,
                   x.is_reversal, x.entry_ref, x.status, money(x.charges)] for x in s.lines],
    }
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def previous_statements(session: Session, firsts: Mapping[tuple[str, str], date | None]
                        ) -> dict[tuple[str, str], PreviousStatement]:
    """Per (account, currency): the latest accepted end-of-day statement that ends before
    ``firsts[key]`` (the first day of what arrives now); a statement delivered late is
    checked against the one before it, not against a later one already taken in."""
    found: dict[tuple[str, str], PreviousStatement] = {}
    for (account, currency), first in firsts.items():
        query = (select(StatementRow).where(StatementRow.account == account,
                                            StatementRow.currency == currency,
                                            StatementRow.status == "accepted",
                                            StatementRow.kind.in_(END_OF_DAY))
                 .order_by(StatementRow.to_date.desc().nullslast(), StatementRow.id.desc())
                 .limit(1))
        if first is not None:
            query = query.where(StatementRow.to_date < first)
        row = session.execute(query).scalars().first()
        if row is not None:
            closing = (Money.from_minor(row.closing_minor, currency)
                       if row.closing_minor is not None else None)
            found[(account, currency)] = PreviousStatement(closing, row.sequence,
                                                           row.statement_id, row.kind)
    return found


def take_in(session: Session, audit: AuditLog, statements: Sequence[Statement], *,
            source: str, checker: Checker, actor: str) -> IntakeResult:
    """Store ``statements`` (one file or one download) in the caller's transaction."""
    source = redact(source)  # a file named after its account ("MT940_<account>.sta")
    result = IntakeResult()
    fresh: list[tuple[Statement, str]] = []
    recheck: dict[str, StatementRow] = {}
    for s in statements:
        digest = statement_digest(s)
        seen = session.execute(select(StatementRow).where(
            StatementRow.content_sha256 == digest)).scalars().first()
        if seen is not None and seen.status == "quarantined" and not \
                (seen.reason or "").startswith(CONFLICT):
            # Quarantined for its checks, perhaps only because it came before the statement
            # it continues: delivered again, it is checked again.
            recheck[digest] = seen
            fresh.append((s, digest))
        elif seen is not None:
            result.duplicates.append((redact(s.statement_id), seen.id))
        elif digest not in {d for _, d in fresh}:
            fresh.append((s, digest))
    if not fresh:
        return result
    end_of_day = [(s, d) for s, d in fresh if s.kind in END_OF_DAY]
    firsts: dict[tuple[str, str], date | None] = {}
    for st, _ in end_of_day:
        key = (st.account, st.currency)
        day = st.from_date or st.to_date
        if key not in firsts:
            firsts[key] = day
        elif day is not None and (firsts[key] is None or day < firsts[key]):  # type: ignore[operator]
            firsts[key] = day
    reports = dict(zip([d for _, d in end_of_day],
                       checker([s for s, _ in end_of_day], previous_statements(session, firsts)),
                       strict=True))
    others = [(s, d) for s, d in fresh if s.kind not in END_OF_DAY]
    if others:
        # Intraday reports and notifications are checked on their own (no continuity).
        reports.update(zip([d for _, d in others], checker([s for s, _ in others], {}),
                           strict=True))
    accounts = {number: pk for pk, number in session.execute(
        select(BankAccount.id, BankAccount.number))}
    for s, digest in fresh:
        report = reports[digest]
        if digest in recheck:
            _recheck(session, audit, recheck[digest], report, result, actor)
            continue
        reason = None if report.passed else _reason(report)
        conflict = _conflict(session, s)
        if conflict is not None:
            reason = (f"{CONFLICT} statement {redact(s.statement_id)} (sequence {s.sequence}) "
                      "was delivered "
                      f"before as #{conflict} with different content; kept apart, check with "
                      "the bank which one is right")
        status = "accepted" if reason is None else "quarantined"
        row = StatementRow(
            bank_account_id=accounts.get(s.account), account=s.account, currency=s.currency,
            statement_id=redact(s.statement_id), msg_id=redact(s.msg_id), sequence=s.sequence,
            from_date=s.from_date, to_date=s.to_date,
            opening_minor=s.opening_balance.minor if s.opening_balance else None,
            closing_minor=s.closing_balance.minor if s.closing_balance else None,
            content_sha256=digest, source=source[:500], status=status, reason=reason,
            kind=s.kind, line_count=len(s.lines), checks=redact_deep(report.as_json()))
        session.add(row)
        session.flush()
        _insert_lines(session, row.id, s)
        summary = {"statement_id": redact(s.statement_id), "account": mask_account(s.account),
                   "kind": s.kind,
                   "lines": len(s.lines), "status": status, "source": source[:200]}
        if reason is None:
            result.accepted.append(row.id)
        else:
            result.quarantined.append((row.id, reason))
            summary["reason"] = reason
            session.add(Alert(kind="statement.quarantined", severity=Severity.WARNING.value,
                              subject=f"statement {summary['statement_id']} of "
                                      f"{summary['account']}",
                              message=reason[:2000],
                              details={"statement_pk": row.id, "source": source[:200]}))
        result.reports.append({**summary, "statement_pk": row.id, "checks": row.checks})
        audit.append(session, actor=actor, action=f"statement.{status}",
                     subject_type="statement", subject_ids=[row.id],
                     details={**summary, "sha256": digest})
    return result


def _recheck(session: Session, audit: AuditLog, row: StatementRow, report: Report,
             result: IntakeResult, actor: str) -> None:
    row.checks = redact_deep(report.as_json())
    if not report.passed:
        row.reason = _reason(report)
        result.duplicates.append((row.statement_id, row.id))
        return
    row.status, row.reason = "accepted", None
    result.accepted.append(row.id)
    result.reports.append({"statement_id": row.statement_id,
                           "account": mask_account(row.account),
                           "kind": row.kind, "lines": row.line_count, "status": "accepted",
                           "source": row.source, "statement_pk": row.id,
                           "checks": row.checks})
    audit.append(session, actor=actor, action="statement.accepted", subject_type="statement",
                 subject_ids=[row.id],
                 details={"statement_id": row.statement_id,
                          "account": mask_account(row.account),
                          "recheck": "passed its checks when delivered again",
                          "sha256": row.content_sha256})


def _reason(report: Report) -> str:
    failures = getattr(report, "failures", None) or []
    return redact("; ".join(f"{f.check}: {f.message}" for f in failures))[:4000] or \
        "failed its data-quality checks"


def _conflict(session: Session, s: Statement) -> int | None:
    if s.sequence is None:
        return None
    return session.execute(select(StatementRow.id).where(
        StatementRow.account == s.account, StatementRow.currency == s.currency,
        StatementRow.kind == s.kind, StatementRow.statement_id == redact(s.statement_id),
        StatementRow.sequence == s.sequence)).scalars().first()


def _insert_lines(session: Session, statement_pk: int, s: Statement, chunk: int = 20_000
                  ) -> None:
    rows = [{"statement_pk": statement_pk, "line_no": n, "amount_minor": x.amount.minor,
             "currency": x.amount.currency.code, "booking_date": x.booking_date,
             "value_date": x.value_date, "end_to_end_id": _cut(x.end_to_end_id, 64),
             "bank_reference": _cut(x.bank_reference, 64),
             "counterparty_name": _cut(x.counterparty_name, 200),
             "counterparty_account": _cut(x.counterparty_account, 64),
             "remittance": x.remittance, "is_reversal": x.is_reversal,
             "entry_ref": _cut(x.entry_ref, 64), "status": (x.status or "BOOK")[:4],
             "charges_minor": x.charges.minor if x.charges is not None else None}
            for n, x in enumerate(s.lines, start=1)]
    for i in range(0, len(rows), chunk):
        session.execute(insert(LineRow), rows[i:i + chunk])


def _cut(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]
