"""The morning report: per account and day, the bank's closing balance against what Yinqi can
explain, matched and unmatched counts and amounts, and the open exceptions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from yinqi.bootstrap import App
from yinqi.exports import write_xlsx
from yinqi.i18n import _
from yinqi.identifiers import mask
from yinqi.money import Money
from yinqi.store.models import BankAccount, Batch, Payment, ReconException, ReconMatchItem
from yinqi.store.models import Statement as StatementRow
from yinqi.store.models import StatementLine as LineRow
from yinqi.store.statements import END_OF_DAY

BOOKED = ("SETTLED", "RECEIPTED", "RECONCILED", "RETURNED")


@dataclass(frozen=True)
class AccountDay:
    account: str
    currency: str
    day: date
    statements: int
    bank_opening: str | None
    bank_closing: str | None
    lines: int
    matched_lines: int
    matched_amount: str
    unmatched_lines: int
    unmatched_amount: str
    written_off_lines: int
    ledger_balance: str | None  # bank opening + every entry matched or written off
    difference: str | None  # bank closing - ledger balance: what is still unexplained
    payments: int  # Yinqi payments executed that day that the bank booked
    payments_reconciled: int
    payments_unmatched: int
    payments_returned: int
    open_exceptions: int
    quarantined_statements: int

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


def daily_report(app: App, day: date, accounts: Sequence[str] | None = None
                 ) -> list[AccountDay]:
    from yinqi.recon.accounts import resolve_accounts

    accounts = resolve_accounts(app.config, accounts)
    wanted = [a for a in app.config.accounts if not accounts or a.number in accounts]
    rows = []
    with app.sessions() as s:
        for account in wanted:
            rows.append(_account_day(s, account.number, account.currency, day))
    return rows


def _account_day(s: Any, number: str, currency: str, day: date) -> AccountDay:
    def amount(minor: int | None) -> str | None:
        return None if minor is None else str(Money.from_minor(int(minor), currency).amount)

    statements = s.execute(select(StatementRow).where(
        StatementRow.account == number, StatementRow.currency == currency,
        StatementRow.kind.in_(END_OF_DAY), StatementRow.from_date <= day,
        StatementRow.to_date >= day)).scalars().all()
    accepted = [st for st in statements if st.status == "accepted"]
    quarantined = len(statements) - len(accepted)
    ids = [st.id for st in accepted]
    matched_ids = select(ReconMatchItem.statement_line_id).where(
        ReconMatchItem.statement_line_id.is_not(None))
    base = select(func.count(), func.coalesce(func.sum(LineRow.amount_minor), 0)).where(
        LineRow.statement_pk.in_(ids), LineRow.status == "BOOK", LineRow.booking_date == day)
    lines, total = s.execute(base).one() if ids else (0, 0)
    matched, matched_sum = s.execute(base.where(LineRow.id.in_(matched_ids))).one() \
        if ids else (0, 0)
    written_ids = select(ReconException.statement_line_id).where(
        ReconException.status == "written_off", ReconException.statement_line_id.is_not(None))
    written, written_sum = s.execute(base.where(LineRow.id.in_(written_ids))).one() \
        if ids else (0, 0)
    opening = min(accepted, key=lambda st: (st.from_date, st.id)).opening_minor \
        if accepted else None
    closing = max(accepted, key=lambda st: (st.to_date, st.id)).closing_minor \
        if accepted else None
    # Explained: matched to payments, or written off by an operator with a reason.
    ledger = None if opening is None else opening + int(matched_sum) + int(written_sum)
    account_id = s.execute(select(BankAccount.id).where(BankAccount.number == number)
                           ).scalar_one_or_none()
    pays = dict(s.execute(select(Payment.state, func.count()).join(
        Batch, Batch.id == Payment.batch_id).where(
        Payment.debtor_account_id == account_id, Batch.execution_date == day,
        Payment.state.in_(BOOKED)).group_by(Payment.state)).all()) if account_id else {}
    exceptions = s.execute(select(func.count()).select_from(ReconException).where(
        ReconException.account == number, ReconException.status == "open",
        ReconException.day == day)).scalar_one()
    return AccountDay(
        account=number, currency=currency, day=day, statements=len(accepted),
        bank_opening=amount(opening), bank_closing=amount(closing), lines=int(lines),
        matched_lines=int(matched), matched_amount=amount(int(matched_sum)) or "0",
        unmatched_lines=int(lines) - int(matched) - int(written),
        unmatched_amount=amount(int(total) - int(matched_sum) - int(written_sum)) or "0",
        written_off_lines=int(written),
        ledger_balance=amount(ledger),
        difference=amount(closing - ledger) if closing is not None and ledger is not None
        else None,
        payments=sum(pays.values()), payments_reconciled=pays.get("RECONCILED", 0),
        payments_unmatched=pays.get("SETTLED", 0) + pays.get("RECEIPTED", 0),
        payments_returned=pays.get("RETURNED", 0),
        open_exceptions=int(exceptions), quarantined_statements=quarantined)


COLUMNS = ("account", "currency", "day", "bank_opening", "bank_closing", "ledger_balance",
           "difference", "lines", "matched_lines", "matched_amount", "unmatched_lines",
           "unmatched_amount", "written_off_lines", "payments", "payments_reconciled", "payments_unmatched",
           "payments_returned", "open_exceptions", "quarantined_statements")


def as_markdown(rows: Sequence[AccountDay], day: date,
                labels: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The report as a Prefect markdown artifact; ``labels`` (``yinqi.recon.accounts.labels``)
    name each account by bank and name beside its last four digits."""
    from yinqi.security.masking import account_label, escape_markdown

    def shown(number: str) -> str:
        label = (labels or {}).get(number)
        return escape_markdown(account_label(label["bank"], label["account_name"], number)
                               if label else mask(number))

    titles = (_("account"), _("ccy"), _("opening"), _("closing"), _("ledger"), _("difference"),
              _("lines"), _("matched"), _("unmatched"), _("payments"), _("reconciled"),
              _("exceptions"))
    out = ["## " + _("Reconciliation {day}").format(day=day.isoformat()), "",
           "| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for r in rows:
        out.append(f"| {shown(r.account)} | {r.currency} | {r.bank_opening or '—'} | "
                   f"{r.bank_closing or '—'} | {r.ledger_balance or '—'} | "
                   f"{r.difference or '—'} | {r.lines} | {r.matched_lines} | "
                   f"{r.unmatched_lines} ({r.unmatched_amount}) | {r.payments} | "
                   f"{r.payments_reconciled} | {r.open_exceptions} |")
    return "\n".join(out) + "\n"


def export_xlsx(app: App, rows: Sequence[AccountDay], path: Path) -> Path:
    """The report and the open exceptions as a workbook; no cell can be a formula. Our
    accounts show as bank, name and last four digits, never the whole number."""
    from yinqi.recon.accounts import labels
    from yinqi.recon.exceptions import list_exceptions

    from decimal import Decimal

    named = labels(app.config)

    amounts = ("bank_opening", "bank_closing", "ledger_balance", "difference",
               "matched_amount", "unmatched_amount")
    report = [{**r.as_json(), **named.get(r.account, {}), "account": mask(r.account),
               "day": r.day,
               **{k: None if getattr(r, k) is None else Decimal(getattr(r, k))
                  for k in amounts}} for r in rows]
    exceptions = [{**e, **named.get(e["account"], {}), "account": mask(e["account"]),
                   "amount": Decimal(e["amount"])} for e in list_exceptions(app)]
    return write_xlsx(path, {
        _("reconciliation"): (["bank", "account_name", *COLUMNS], report),
        _("exceptions"): (["id", "side", "bank", "account_name", "account", "day", "amount",
                           "currency", "counterparty",
                           "reference", "candidates", "status"], exceptions),
    }, titles=_workbook_titles())


def _workbook_titles() -> dict[str, str]:
    """The workbook's column titles in the current language; in English they are the keys,
    as spreadsheets built on earlier exports look them up."""
    return {
        "account": _("account"), "account_name": _("account_name"), "amount": _("amount"),
        "bank": _("bank"), "bank_closing": _("bank_closing"), "bank_opening": _("bank_opening"),
        "candidates": _("candidates"), "counterparty": _("counterparty"),
        "currency": _("currency"), "day": _("day"), "difference": _("difference"),
        "id": _("id"), "ledger_balance": _("ledger_balance"), "lines": _("lines"),
        "matched_amount": _("matched_amount"), "matched_lines": _("matched_lines"),
        "open_exceptions": _("open_exceptions"), "payments": _("payments"),
        "payments_reconciled": _("payments_reconciled"),
        "payments_returned": _("payments_returned"),
        "payments_unmatched": _("payments_unmatched"),
        "quarantined_statements": _("quarantined_statements"), "reference": _("reference"),
        "side": _("side"), "status": _("status"), "unmatched_amount": _("unmatched_amount"),
        "unmatched_lines": _("unmatched_lines"), "written_off_lines": _("written_off_lines"),
    }
