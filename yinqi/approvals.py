"""Users, roles and approval decisions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from yinqi.money import Money
from yinqi.security.masking import escape_markdown, mask_account


class Role(StrEnum):
    MAKER = "maker"
    APPROVER = "approver"
    FINANCE_MANAGER = "finance_manager"
    CFO = "cfo"
    TREASURER = "treasurer"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    roles: frozenset[Role]
    active: bool = True

    def has_role(self, role: Role | str) -> bool:
        return self.active and Role(role) in self.roles


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's decision on one level of one payment."""

    end_to_end_id: str
    level: int
    role: Role
    approver: str
    decision: Decision
    decided_at: datetime
    reason: str | None = None


class Waiting(Protocol):
    """One payment waiting for approval, as far as an approval form counts it."""

    @property
    def amount(self) -> Money: ...
    @property
    def levels(self) -> tuple[str, ...]: ...
    @property
    def next_role(self) -> str | None: ...


def approval_form_description(waiting: Sequence[Waiting],
                              payer_accounts: Iterable[tuple[str, str, str]]) -> str:
    """What the approver reads above a paused run's form (markdown): how many payments, their
    totals per currency, the accounts they are paid from (``(bank, number, currency)``,
    shown masked), the levels they need, what a decision does and that it takes a one-time
    code. Roles and banks come from configuration: every value is escaped."""
    totals: dict[str, Decimal] = {}
    for w in waiting:
        code = w.amount.currency.code
        totals[code] = totals.get(code, Decimal(0)) + w.amount.amount
    chains = Counter(" → ".join(escape_markdown(r) for r in w.levels)
                     or "none (the policy cannot say)" for w in waiting)
    next_roles = Counter(w.next_role for w in waiting if w.next_role)
    accounts = sorted({(bank, mask_account(number), currency)
                       for bank, number, currency in payer_accounts})

    def counted(found: Counter[str]) -> str:
        return "; ".join(f"{what} ({n})" for what, n in sorted(found.items())) or "none"

    return "\n".join([
        f"### {len(waiting)} payment(s) wait for approval",
        "",
        "- **Totals:** " + ("; ".join(f"{amount:f} {currency}" for currency, amount
                                      in sorted(totals.items())) or "none"),
        "- **Paid from:** " + ("; ".join(escape_markdown(f"{bank} {number} ({currency})")
                                         for bank, number, currency in accounts) or "none"),
        "- **Levels needed:** " + counted(chains),
        "- **Next level:** " + counted(Counter({escape_markdown(r): n
                                                 for r, n in next_roles.items()})),
        "",
        "**Approve** fills your level on every payment waiting for it, or only on the "
        "payment ids you list; a payment whose last level is filled is approved, and this "
        "run sends the approved payments to the bank once nothing waits any more. "
        "**Reject** needs a reason: a rejected payment is never paid.",
        "",
        "Your current **6-digit one-time code** is required, and each code works once. The "
        "rules of `yinqi approvals approve` apply: nobody approves a payment they made, and "
        "one person fills at most one level of a payment.",
    ])
