"""Who may run which ``yinqi`` command: one table, checked before every command.

The table maps a command path ("payments run", "reconcile exceptions write-off") to the roles
allowed to run it and whether the *service identity* (``YINQI_ACTOR=service``: cron jobs,
Prefect workers, scripts) may. The service identity is for routine work that involves no
human judgement; a command that decides something (approve, correct, rerun, write off,
release, unfreeze, rotate keys, manage users, decrypt a receipt) needs a logged-in person.

A command missing from the table is refused (fail closed); a unit test walks the command
tree so a new command cannot ship without a rule. Nothing here touches the database: the CLI
resolves the caller (:mod:`yinqi.store.auth`) and asks :func:`authorise`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from yinqi.approvals import Role


class Kind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs a command: a logged-in user (with roles) or the service identity."""

    name: str  # what the audit log records as the actor
    kind: Kind
    roles: frozenset[str] = frozenset()
    session_id: int | None = None
    origin: str | None = None
    expires_at: datetime | None = None

    @classmethod
    def service(cls, name: str) -> Actor:
        return cls(name=name, kind=Kind.SERVICE)

    @property
    def is_person(self) -> bool:
        return self.kind is Kind.USER

    def describe(self) -> str:
        if self.kind is Kind.SERVICE:
            return f"the service identity ({self.name})"
        return f"{self.name} ({', '.join(sorted(self.roles)) or 'no roles'})"


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[str] = frozenset()
    #: The service identity may run it (routine, no human judgement).
    service: bool = False
    #: No identity needed at all (logging in, a demo in its own new folder, parsing a file).
    anonymous: bool = False
    #: The service identity may run it while no user has a password yet: how the first
    #: administrator gets a password on a new installation.
    bootstrap: bool = False


def _roles(*roles: Role) -> frozenset[str]:
    return frozenset(r.value for r in roles)


EVERYONE = _roles(*Role)
READERS = _roles(Role.TREASURER, Role.AUDITOR, Role.ADMIN, Role.FINANCE_MANAGER, Role.CFO)
TREASURY = _roles(Role.TREASURER)
ADMIN = _roles(Role.ADMIN)
OPS = _roles(Role.TREASURER, Role.ADMIN)
KEY_READERS = _roles(Role.ADMIN, Role.AUDITOR, Role.TREASURER)
RISK_DECIDERS = _roles(Role.TREASURER, Role.FINANCE_MANAGER, Role.CFO)
RISK_READERS = RISK_DECIDERS | _roles(Role.AUDITOR, Role.ADMIN)
ALERT_READERS = _roles(Role.TREASURER, Role.ADMIN, Role.AUDITOR)
FILE_READERS = _roles(Role.AUDITOR, Role.TREASURER, Role.ADMIN)
BACKUP_READERS = _roles(Role.ADMIN, Role.AUDITOR)

_OPEN = Rule(anonymous=True)


def _service(roles: frozenset[str]) -> Rule:
    return Rule(roles=roles, service=True)


def _person(roles: frozenset[str]) -> Rule:
    return Rule(roles=roles)


RULES: dict[str, Rule] = {
    # Identity itself, and what touches nothing of the installation.
    "login": _OPEN,
    "logout": _OPEN,
    "whoami": _OPEN,
    "demo": _OPEN,  # its own new folder, database and demo master secret
    "statements parse": _OPEN,  # reads the file it is given; no database, no keys
    # Setting up and watching the installation.
    "init": _service(ADMIN),
    "doctor": _service(OPS | _roles(Role.AUDITOR)),
    "flows serve": _service(OPS),
    # `yinqi up` runs the Prefect server, the sandbox bank and every deployment.
    "up": _service(ADMIN),
    "down": _service(ADMIN),
    "status": _service(READERS),
    # Changes the shared Prefect server's automations, not Yinqi's data.
    "flows automations install": _service(ADMIN),
    # Registers the deployments with a work pool of the shared Prefect server.
    "flows deploy": _service(ADMIN),
    "sandbox-bank serve": _service(OPS),
    "sandbox-bank connect": _service(OPS),
    "bank test": _service(OPS),
    "audit verify": _service(_roles(Role.AUDITOR, Role.ADMIN)),
    # Bank information.
    "balances": _service(READERS),
    "transactions": _service(READERS),
    # Intake and approval.
    "vouchers import": _service(_roles(Role.MAKER, Role.TREASURER)),
    "approvals list": _service(EVERYONE),
    "approvals check": _service(_roles(Role.AUDITOR, Role.ADMIN, Role.TREASURER)),
    # The approval gate judges the level's role itself; any role may be a level's.
    "approvals approve": _person(EVERYONE),
    "approvals reject": _person(EVERYONE),
    # Payments to the bank.
    "payments run": _service(TREASURY),
    "payments list": _service(READERS),
    "payments fix": _person(TREASURY),
    "batches list": _service(READERS),
    "batches rerun": _person(TREASURY),
    # Takes an unsigned batch apart (its payments back to APPROVED or HELD): a decision.
    "batches dissolve": _person(OPS),
    # Statements and reconciliation.
    "statements import": _service(TREASURY),
    "statements fetch": _service(TREASURY),
    "statements show": _service(READERS),
    "reconcile run": _service(TREASURY),
    "reconcile report": _service(READERS),
    "reconcile exceptions list": _service(READERS),
    "reconcile exceptions confirm": _person(TREASURY),
    "reconcile exceptions rematch": _person(TREASURY),
    "reconcile exceptions write-off": _person(TREASURY),
    # Decrypting kept files is a person's act, always audited with who asked.
    "receipts show": _person(FILE_READERS),
    "archive show": _person(FILE_READERS),
    # Keys.
    "keys list": _person(KEY_READERS),
    "keys export-cert": _person(KEY_READERS),
    "keys verify": _person(KEY_READERS),
    "keys rotate": _person(ADMIN),
    "keys import-tls": _person(ADMIN),
    # Risk: hits, holds and freezes.
    "risk hits": _person(RISK_READERS),
    "risk freezes": _person(RISK_READERS),
    "risk release": _person(RISK_DECIDERS),
    "risk reject": _person(RISK_DECIDERS),
    "risk freeze": _person(OPS),
    "risk unfreeze": _person(OPS),
    # Alerts.
    "alerts list": _person(ALERT_READERS),
    "alerts ack": _person(ALERT_READERS),
    "alerts deliver": _service(OPS),
    "alerts test": _person(OPS),
    # Backups: routine runs by the service identity; a restore is a person's decision, except
    # into an installation that has no users yet (its database was lost: nobody can log in).
    "backup create": _service(ADMIN),
    "backup list": _service(BACKUP_READERS),
    "backup verify": _service(BACKUP_READERS),
    "backup drill": _service(ADMIN),
    "backup prune": _service(ADMIN),
    "backup restore": Rule(roles=ADMIN, bootstrap=True),
    # A restored installation sends again only when a person has checked the bank.
    "backup release": _person(ADMIN),
    # Users and sessions.
    "users list": _person(ADMIN),
    "users add": _person(ADMIN),
    "users set-password": Rule(roles=ADMIN, bootstrap=True),
    "users enrol": _person(ADMIN),
    "users unlock": _person(ADMIN),
    "users sessions": _person(ADMIN),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    message: str = ""
    rule: Rule | None = field(default=None)


def _needs(rule: Rule) -> str:
    roles = sorted(rule.roles)
    if not roles:
        return "no role"
    return f"role {' or '.join(roles)}" if len(roles) <= 3 else f"one of the roles {', '.join(roles)}"


def authorise(path: str, actor: Actor | None, *, armed: bool = True) -> Verdict:
    """May ``actor`` (None: nobody identified) run the command ``path``?

    ``armed`` is False while no user has a password yet (a new installation): then the
    service identity may also run the bootstrap commands.
    """
    rule = RULES.get(path)
    if rule is None:
        return Verdict(False, f"{path or 'this command'} is not in the access table "
                              "(yinqi/security/rbac.py), so nobody may run it")
    if rule.anonymous:
        return Verdict(True, rule=rule)
    if actor is None:
        how = ("log in with `yinqi login`, or set YINQI_ACTOR=service for routine work"
               if rule.service else "log in with `yinqi login`")
        return Verdict(False, f"{path} needs {_needs(rule)}; nobody is logged in: {how}",
                       rule)
    if actor.kind is Kind.SERVICE:
        if rule.service or (rule.bootstrap and not armed):
            return Verdict(True, rule=rule)
        return Verdict(False, f"{path} needs a person with {_needs(rule)}; the service "
                              "identity may not run it: log in with `yinqi login`", rule)
    if actor.roles & rule.roles:
        return Verdict(True, rule=rule)
    return Verdict(False, f"{path} needs {_needs(rule)}; you are {actor.describe()}", rule)


def command_paths(tree: object, prefix: Iterable[str] = ()) -> list[str]:
    """Every leaf command path of a click/typer command tree (groups have ``commands``)."""
    commands = getattr(tree, "commands", None)
    if commands is None:
        return [" ".join(prefix)]
    paths: list[str] = []
    for name, sub in sorted(commands.items()):
        paths += command_paths(sub, (*prefix, name))
    return paths
