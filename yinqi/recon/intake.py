"""Statements in: from files an operator drops, and from the banks' channels on a schedule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from yinqi.bootstrap import App
from yinqi.store.statements import IntakeResult, take_in

ACTOR = "yinqi.reconcile"


def _checker():  # type: ignore[no-untyped-def]
    # great-expectations costs seconds to import: only when a statement not seen before is
    # to be checked (a re-delivery is recognised by its hash without it).
    def check(statements, previous):  # type: ignore[no-untyped-def]
        from yinqi.statement_checks import check_statements

        return check_statements(statements, previous)

    return check


def import_statement_file(app: App, path: Path, *, actor: str = ACTOR) -> IntakeResult:
    """A camt.052/053/054 or MT940/942 file: parsed, checked, stored (or quarantined) whole."""
    from connectors.statement_files import parse_file

    statements = parse_file(path)
    with app.sessions.begin() as session:
        return take_in(session, app.audit, statements, source=str(path), checker=_checker(),
                       actor=actor)


@dataclass
class FetchResult:
    intake: IntakeResult = field(default_factory=IntakeResult)
    errors: list[str] = field(default_factory=list)


def fetch_statements(app: App, accounts: Sequence[str] | None, first: date, last: date, *,
                     actor: str = ACTOR) -> FetchResult:
    """End-of-day statements of [first, last] from each account's bank, taken in per account
    (one account's bad answer never stops the others)."""
    from connectors.errors import BankError
    from yinqi.errors import InvalidValue
    from yinqi.pipeline import BankPool
    from yinqi.recon.accounts import resolve_accounts
    from yinqi.security.masking import mask_account, redact

    result = FetchResult()
    accounts = resolve_accounts(app.config, accounts)
    wanted = [a for a in app.config.accounts if not accounts or a.number in accounts]
    with BankPool(app) as banks:
        for account in wanted:
            try:
                statements = banks[account.bank].statements(account.number, first, last)
            except (BankError, InvalidValue) as exc:
                result.errors.append(redact(f"{account.bank} {mask_account(account.number)}: "
                                            f"{exc}"))
                continue
            with app.sessions.begin() as session:
                got = take_in(session, app.audit, statements,
                              source=f"{account.bank} statements {first}..{last}",
                              checker=_checker(), actor=actor)
            result.intake.accepted += got.accepted
            result.intake.quarantined += got.quarantined
            result.intake.duplicates += got.duplicates
            result.intake.reports += got.reports
    return result
