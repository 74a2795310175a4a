"""Bringing the database in line with the config: the company, its accounts, its users.

Every function here is idempotent (``yinqi init`` may run any number of times) and audits
exactly what it changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import YinqiConfig
from yinqi.approvals import Role
from yinqi.security.fields import FieldCipher
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import BankAccount, Company, User, UserRole

SYSTEM = "system:init"


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    display_name: str
    roles: frozenset[Role]


def sync_company(session: Session, config: YinqiConfig, audit: AuditLog) -> list[str]:
    """Create the configured company and any of its accounts not yet in the database."""
    changes: list[str] = []
    company = session.execute(
        select(Company).where(Company.credit_code == config.company.credit_code)
    ).scalar_one_or_none()
    if company is None:
        company = Company(name=config.company.name, credit_code=config.company.credit_code)
        session.add(company)
        session.flush()
        audit.append(session, actor=SYSTEM, action="company.created", subject_type="company",
                     subject_ids=[company.id], details={"name": company.name})
        changes.append(f"company {company.name}")
    existing = {
        (a.bank, a.number)
        for a in session.execute(select(BankAccount).where(BankAccount.company_id == company.id))
        .scalars()
    }
    added = []
    for acct in config.accounts:
        if (acct.bank, acct.number) in existing:
            continue
        row = BankAccount(company_id=company.id, bank=acct.bank, number=acct.number,
                          currency=acct.currency, name=acct.name)
        session.add(row)
        added.append(row)
    if added:
        session.flush()
        audit.append(session, actor=SYSTEM, action="account.created", subject_type="bank_account",
                     subject_ids=[a.id for a in added],
                     details={"accounts": [f"{a.bank}:****{a.number[-4:]}" for a in added]})
        changes.append(f"{len(added)} bank account(s)")
    return changes


def ensure_users(
    session: Session, users: Iterable[NewUser], cipher: FieldCipher, audit: AuditLog
) -> list[str]:
    """Create missing users, each enrolled for one-time codes with a fresh TOTP secret."""
    known = set(session.execute(select(User.username)).scalars())
    created = []
    for new in users:
        if new.username in known:
            continue
        secret = pyotp.random_base32()
        user = User(
            username=new.username,
            display_name=new.display_name,
            totp_secret=cipher.encrypt(secret.encode(), f"users.totp_secret:{new.username}"),
            roles=[UserRole(role=r.value) for r in sorted(new.roles)],
        )
        session.add(user)
        created.append(user)
    if created:
        session.flush()
        audit.append(session, actor=SYSTEM, action="user.created", subject_type="user",
                     subject_ids=[u.id for u in created],
                     details={u.username: sorted(r.role for r in u.roles) for u in created})
    return [u.username for u in created]


DEMO_USERS: tuple[NewUser, ...] = (
    NewUser("wu.maker", "吴制单", frozenset({Role.MAKER})),
    NewUser("zhou.maker", "周制单", frozenset({Role.MAKER})),
    NewUser("li.approver", "李审批", frozenset({Role.APPROVER})),
    NewUser("sun.approver", "孙审批", frozenset({Role.APPROVER})),
    NewUser("chen.manager", "陈财务经理", frozenset({Role.APPROVER, Role.FINANCE_MANAGER})),
    NewUser("wang.cfo", "王财务总监", frozenset({Role.CFO})),
    NewUser("liu.treasurer", "刘司库", frozenset({Role.TREASURER})),
    NewUser("zhao.auditor", "赵审计", frozenset({Role.AUDITOR})),
    NewUser("admin", "系统管理员", frozenset({Role.ADMIN})),
)
