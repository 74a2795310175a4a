"""Users, roles and approval decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
