"""The risk rules that look at logins (``risk_rules.toml``): a new place, repeated failures.

``new_login_location``: a user who has logged in before logs in from a network place
(``origin``) none of their earlier sessions came from. A user's very first login sets the
baseline and fires nothing: there is nothing to compare it with, and a freeze on every new
user's first login would make the rule unusable.

``repeated_failures``: ``count`` or more failed logins of one user within ``within_hours``
hours. It fires once per window: a hit of this rule for this user inside the window already
says it.

A rule that fires writes a ``RiskHit`` (subject_type "user") and an ``Alert``, audited. Its
action ``alert`` stops there; ``freeze`` (and ``hold``: a login cannot wait in a queue, so a
hold on a person is a freeze) also inserts a ``Freeze`` of the user: the user cannot log in,
and their sessions stop working, until two people lift it (``yinqi risk unfreeze``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.risk import RiskRules
from yinqi.alerts import Severity
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, AuditEventRow, Freeze, RiskHit, UserSession
from yinqi.store.models import User as UserRow

NEW_LOCATION = "new_login_location"
REPEATED_FAILURES = "repeated_failures"
SYSTEM = "system:risk"

#: The audit action of a failed login that counts for ``repeated_failures`` (a wrong
#: password or code, a reused code, an attempt while locked). Refusals that are not
#: guesses (no password yet, user deactivated or frozen) are audited as ``auth.login_refused``.
FAILED_LOGIN = "auth.login_failed"


@dataclass(frozen=True, slots=True)
class LoginRisk:
    rule: str
    action: str
    hit_id: int
    alert_id: int
    freeze_id: int | None
    message: str

    @property
    def frozen(self) -> bool:
        return self.freeze_id is not None


def active_freeze(session: Session, user_id: int) -> Freeze | None:
    """The user's oldest active freeze, if any (manual or by a rule)."""
    return session.execute(
        select(Freeze).where(Freeze.subject_type == "user", Freeze.subject_id == user_id,
                             Freeze.status == "active").order_by(Freeze.id).limit(1)
    ).scalar_one_or_none()


def check_new_origin(session: Session, audit: AuditLog, rules: RiskRules, user: UserRow,
                     origin: str, now: datetime) -> LoginRisk | None:
    """Fire ``new_login_location`` if ``user`` logged in before, never from ``origin``.

    Call before the new session row is added.
    """
    rule = rules.new_login_location
    if not rule.enabled:
        return None
    known = set(session.execute(
        select(UserSession.origin).where(UserSession.user_id == user.id).distinct()
    ).scalars())
    if not known or origin in known:
        return None
    message = (f"{user.username} logged in from {origin}, a place none of their "
               f"{len(known)} earlier login place(s) was")
    return _fire(session, audit, rule_name=NEW_LOCATION, action=rule.action, user=user,
                 message=message, details={"origin": origin, "known_origins": len(known)},
                 now=now)


def check_repeated_failures(session: Session, audit: AuditLog, rules: RiskRules,
                            user: UserRow, now: datetime) -> LoginRisk | None:
    """Fire ``repeated_failures`` if ``user`` failed ``count`` logins within the window.

    Call after the failure itself was audited, in the same transaction.
    """
    rule = rules.repeated_failures
    if not rule.enabled:
        return None
    since = now - timedelta(hours=rule.within_hours)
    failures = session.execute(
        select(func.count()).select_from(AuditEventRow).where(
            AuditEventRow.action == FAILED_LOGIN, AuditEventRow.actor == user.username,
            AuditEventRow.occurred_at > since, AuditEventRow.occurred_at <= now)
    ).scalar_one()
    if failures < rule.count:
        return None
    already = session.execute(
        select(RiskHit.id).where(RiskHit.rule == REPEATED_FAILURES,
                                 RiskHit.subject_type == "user", RiskHit.subject_id == user.id,
                                 RiskHit.created_at > since).limit(1)
    ).first()
    if already is not None:
        return None
    message = (f"{user.username} failed {failures} logins within {rule.within_hours} h "
               f"(the rule fires at {rule.count})")
    return _fire(session, audit, rule_name=REPEATED_FAILURES, action=rule.action, user=user,
                 message=message,
                 details={"failures": failures, "within_hours": rule.within_hours,
                          "count": rule.count},
                 now=now)


def _fire(session: Session, audit: AuditLog, *, rule_name: str, action: str, user: UserRow,
          message: str, details: dict[str, Any], now: datetime) -> LoginRisk:
    freezes = action in ("freeze", "hold")
    hit = RiskHit(rule=rule_name, action=action, subject_type="user", subject_id=user.id,
                  message=message, details={"username": user.username, **details},
                  status="open", created_at=now)
    alert = Alert(kind=f"risk.{rule_name}",
                  severity=(Severity.CRITICAL if freezes else Severity.WARNING).value,
                  subject=f"user {user.username}",
                  message=message + ("; the user is frozen until two people lift it"
                                     if freezes else ""),
                  details={"rule": rule_name, "action": action, "username": user.username,
                           **details},
                  created_at=now)
    session.add_all([hit, alert])
    freeze, new = None, False
    if freezes:
        freeze = active_freeze(session, user.id)
        if freeze is None:
            freeze, new = Freeze(subject_type="user", subject_id=user.id, rule=rule_name,
                                 reason=message, frozen_by=SYSTEM, status="active",
                                 created_at=now), True
            session.add(freeze)
    session.flush()
    # The same events as the payment rules' (yinqi.store.risk), with stage "login".
    if new:
        assert freeze is not None
        audit.append(session, actor=SYSTEM, action="risk.frozen", subject_type="user",
                     subject_ids=[user.id],
                     details={"rule": rule_name, "stage": "login", "freeze_ids": [freeze.id]},
                     at=now)
    audit.append(session, actor=SYSTEM, action="risk.fired", subject_type="user",
                 subject_ids=[user.id],
                 details={"rule": rule_name, "action": action, "stage": "login", "hits": 1,
                          "alert_id": alert.id, "hit_id": hit.id, "first": message[:300],
                          "freeze_id": freeze.id if freeze is not None else None},
                 at=now)
    return LoginRisk(rule=rule_name, action=action, hit_id=hit.id, alert_id=alert.id,
                     freeze_id=freeze.id if freeze is not None else None, message=message)
