"""Users, passwords, one-time codes and sessions in the database.

* A person proves who they are with a password (argon2id, :mod:`yinqi.security.passwords`)
  and a one-time code (TOTP) together; a login opens a session of 8 hours. The session token
  is 32 random bytes shown once to the client; only its SHA-256 is stored, so a copy of the
  database opens no session.
* Failed passwords and codes are counted on the user (the same count as wrong approval codes:
  a person guessing is a person guessing); after :data:`LOCK_AFTER_FAILURES` the user is locked
  for 15 minutes with a critical alert. Every failure, lock and login is audited.
* A one-time code's time step works once per user (``otp_uses``), at login, at approval and
  at a flow's entry alike.
* The login risk rules (:mod:`yinqi.store.login_risk`) run on every login and failure.

Refusals are *returned*, never raised, like the approval gate's: the caller commits the
transaction so the count, the lock and their audit events stay.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.risk import RiskRules
from yinqi.alerts import Severity
from yinqi.approval import (
    LOCK_AFTER_FAILURES,
    LOCK_DURATION,
    Reason,
    Refusal,
    check_user,
    verify_code,
)
from yinqi.approvals import Role, User
from yinqi.errors import InvalidValue, SecurityError
from yinqi.security import passwords
from yinqi.security.fields import FieldCipher
from yinqi.security.rbac import Actor, Kind
from yinqi.store import login_risk
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Alert, OtpUse, UserRole, UserSession
from yinqi.store.models import User as UserRow

SESSION_LIFETIME = timedelta(hours=8)
ISSUER = "Yinqi"
USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_TOKEN_BYTES = 32


# --- failures and the lock (shared with the approval gate) -----------------------------------


@dataclass(frozen=True, slots=True)
class Lockout:
    """How a failure is named, and which alert a lock raises."""

    alert_kind: str
    failures: str  # "wrong one-time codes"
    wrong: str  # "wrong one-time code"


CODE_LOCKOUT = Lockout("security.code_lockout", "wrong one-time codes", "wrong one-time code")
LOGIN_LOCKOUT = Lockout("security.login_lockout", "failed logins",
                        "wrong password or one-time code")


def record_failure(session: Session, audit: AuditLog, row: UserRow, now: datetime,
                   lockout: Lockout = CODE_LOCKOUT) -> Refusal:
    """Count one failed proof of identity; the :data:`LOCK_AFTER_FAILURES`-th locks the user
    for :data:`LOCK_DURATION`, with a critical alert and an audit event."""
    # The count is not reset by a lock: after it expires, the next failure locks again at
    # once, until a success proves the person has their password and authenticator back.
    row.failed_code_attempts += 1
    failures = row.failed_code_attempts
    if failures < LOCK_AFTER_FAILURES:
        return Refusal(Reason.CODE_WRONG,
                       f"{lockout.wrong} for {row.username} "
                       f"({failures} of {LOCK_AFTER_FAILURES} before a lock)")
    row.locked_until = now + LOCK_DURATION
    minutes = int(LOCK_DURATION.total_seconds() // 60)
    message = (f"{row.username} locked for {minutes} minutes after {failures} consecutive "
               f"{lockout.failures}")
    alert = Alert(kind=lockout.alert_kind, severity=Severity.CRITICAL.value,
                  subject=f"user {row.username}", message=message,
                  details={"username": row.username, "failures": failures,
                           "locked_until": row.locked_until.isoformat()},
                  created_at=now)
    session.add(alert)
    session.flush()
    audit.append(session, actor=row.username, action="user.locked", subject_type="user",
                 subject_ids=[row.id],
                 details={"failures": failures, "locked_until": row.locked_until.isoformat(),
                          "alert_id": alert.id, "after": lockout.failures},
                 at=now)
    return Refusal(Reason.CODE_WRONG, f"{lockout.wrong}; {message}")


def check_code(session: Session, audit: AuditLog, cipher: FieldCipher, row: UserRow, code: str,
               now: datetime, lockout: Lockout = CODE_LOCKOUT) -> Refusal | None:
    """Verify and spend ``row``'s one-time code; a wrong one counts as a failure.

    The first valid code after an enrolment confirms it (``totp_enrolled_at``).
    """
    if row.totp_secret is None:
        return Refusal(Reason.CODE_NOT_ENROLLED,
                       f"{row.username} has no one-time code enrolled; ask an administrator")
    step = verify_code(totp_secret(cipher, row), code, now)
    if step is None:
        return record_failure(session, audit, row, now, lockout)
    try:
        with session.begin_nested():
            session.add(OtpUse(user_id=row.id, time_step=step, used_at=now))
    except IntegrityError:
        # The primary key (user, time step) is the replay guard, whatever the code above does.
        return Refusal(Reason.CODE_REUSED,
                       f"this one-time code of {row.username} was already used; "
                       "wait for the next code")
    row.failed_code_attempts = 0
    if row.totp_enrolled_at is None:
        row.totp_enrolled_at = now
        audit.append(session, actor=row.username, action="user.totp_confirmed",
                     subject_type="user", subject_ids=[row.id], at=now)
    return None


def totp_secret(cipher: FieldCipher, row: UserRow) -> str:
    assert row.totp_secret is not None
    return cipher.decrypt(row.totp_secret, f"users.totp_secret:{row.username}").decode()


def current_code(session: Session, cipher: FieldCipher, username: str, at: datetime) -> str:
    """The code the user's authenticator app shows at ``at`` (for tests and the demo)."""
    row = _user(session, username)
    if row is None or row.totp_secret is None:
        raise SecurityError(f"{username!r} is not a user with a one-time code enrolled")
    return pyotp.TOTP(totp_secret(cipher, row)).at(at)


def roles_of(session: Session, user_id: int) -> frozenset[str]:
    return frozenset(session.execute(
        select(UserRole.role).where(UserRole.user_id == user_id)).scalars())


def domain_user(session: Session, row: UserRow) -> User:
    return User(row.username, row.display_name,
                frozenset(Role(r) for r in roles_of(session, row.id)), row.active)


# --- logging in ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Denied:
    """A refused login or session; ``code`` is stable for scripts and the audit log."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class LoggedIn:
    token: str  # shown to the client once; never stored
    actor: Actor
    risk: tuple[login_risk.LoginRisk, ...] = ()


def login(session: Session, audit: AuditLog, cipher: FieldCipher, rules: RiskRules, *,
          username: str, password: str, code: str, origin: str, client: str, now: datetime,
          lifetime: timedelta = SESSION_LIFETIME) -> LoggedIn | Denied:
    """Check the password and the one-time code of ``username`` and open a session."""
    row = _user(session, username, lock=True)
    details = {"origin": origin, "client": client}
    if row is None:
        passwords.verify_password(None, password)  # as slow as for a real user
        return _failed(session, audit, rules, None, username, "UNKNOWN_USER",
                       "login refused: wrong user name, password or one-time code", details,
                       now)
    frozen = login_risk.active_freeze(session, row.id)
    if frozen is not None:
        return _refused(session, audit, row, "USER_FROZEN",
                        f"{row.username} is frozen ({frozen.rule}: {frozen.reason}); two "
                        "people must lift the freeze (yinqi risk unfreeze)", details, now)
    refusal = check_user(domain_user(session, row), locked_until=row.locked_until, now=now)
    if refusal is not None and refusal.code is Reason.USER_INACTIVE:
        return _refused(session, audit, row, refusal.code.value, refusal.message, details, now)
    if refusal is not None:
        # Locked: the password is not even looked at, so a lock cannot be used to keep guessing.
        until = row.locked_until.isoformat() if row.locked_until else ""
        return _failed(session, audit, rules, row, username, refusal.code.value,
                       f"{row.username} is locked until {until} after {LOCK_AFTER_FAILURES} "
                       "failed attempts; wait, or ask an administrator (yinqi users unlock)",
                       details, now)
    if row.password_hash is None:
        return _refused(session, audit, row, "NO_PASSWORD",
                        f"{row.username} has no password yet; ask an administrator "
                        "(yinqi users set-password)", details, now)
    if not passwords.verify_password(row.password_hash, password):
        failed = record_failure(session, audit, row, now, LOGIN_LOCKOUT)
        return _failed(session, audit, rules, row, username, "PASSWORD_WRONG",
                       f"login refused: {failed.message}", details, now)
    refused = check_code(session, audit, cipher, row, code, now, LOGIN_LOCKOUT)
    if refused is not None:
        return _failed(session, audit, rules, row, username, refused.code.value,
                       f"login refused: {refused.message}", details, now)
    if passwords.needs_rehash(row.password_hash):
        row.password_hash = passwords.hash_password(password)
    fired = login_risk.check_new_origin(session, audit, rules, row, origin, now)
    if fired is not None and fired.frozen:
        end_sessions(session, audit, row, "frozen", now, actor=login_risk.SYSTEM)
        return _refused(session, audit, row, "USER_FROZEN",
                        f"login refused: {fired.message}; {row.username} is frozen until two "
                        "people lift it (yinqi risk unfreeze)", details, now)
    token, actor = start_session(session, audit, row, origin=origin, client=client, now=now,
                                 lifetime=lifetime)
    return LoggedIn(token, actor, (fired,) if fired is not None else ())


def start_session(session: Session, audit: AuditLog, row: UserRow, *, origin: str, client: str,
                  now: datetime, lifetime: timedelta = SESSION_LIFETIME) -> tuple[str, Actor]:
    """Open a session for ``row`` (its password and code already checked) and audit it."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    record = UserSession(user_id=row.id, token_sha256=token_digest(token), origin=origin[:200],
                         client=client[:200], created_at=now, expires_at=now + lifetime,
                         last_seen_at=now)
    session.add(record)
    row.last_login_at = now
    session.flush()
    audit.append(session, actor=row.username, action="auth.login", subject_type="user",
                 subject_ids=[row.id],
                 details={"session_id": record.id, "origin": record.origin,
                          "client": record.client, "expires_at": record.expires_at.isoformat()},
                 at=now)
    return token, _actor(session, row, record)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def resolve(session: Session, token: str, now: datetime) -> Actor | Denied:
    """The user (with roles) a session token belongs to, if it is still good."""
    record = session.execute(
        select(UserSession).where(UserSession.token_sha256 == token_digest(token.strip()))
    ).scalar_one_or_none()
    if record is None:
        return Denied("SESSION_UNKNOWN", "this session is unknown: log in again (yinqi login)")
    if record.ended_at is not None:
        return Denied("SESSION_ENDED", f"this session ended ({record.end_reason}): log in "
                                       "again (yinqi login)")
    if record.expires_at <= now:
        record.ended_at, record.end_reason = now, "expired"
        return Denied("SESSION_EXPIRED",
                      f"this session expired at {record.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
                      "log in again (yinqi login)")
    row = session.get_one(UserRow, record.user_id)
    if not row.active:
        return Denied("USER_INACTIVE", f"{row.username} is deactivated")
    if row.locked_until is not None and row.locked_until > now:
        return Denied("USER_LOCKED", f"{row.username} is locked until "
                                     f"{row.locked_until:%Y-%m-%d %H:%M:%S} UTC")
    frozen = login_risk.active_freeze(session, row.id)
    if frozen is not None:
        return Denied("USER_FROZEN", f"{row.username} is frozen ({frozen.rule}); two people "
                                     "must lift the freeze (yinqi risk unfreeze)")
    record.last_seen_at = now
    return _actor(session, row, record)


def logout(session: Session, audit: AuditLog, token: str, now: datetime) -> bool:
    """End the session of ``token``; False if it was unknown or already over."""
    record = session.execute(
        select(UserSession).where(UserSession.token_sha256 == token_digest(token.strip()))
    ).scalar_one_or_none()
    if record is None or record.ended_at is not None:
        return False
    record.ended_at, record.end_reason = now, "logout"
    row = session.get_one(UserRow, record.user_id)
    audit.append(session, actor=row.username, action="auth.logout", subject_type="user",
                 subject_ids=[row.id], details={"session_id": record.id}, at=now)
    return True


def end_sessions(session: Session, audit: AuditLog, row: UserRow, reason: str, now: datetime,
                 *, actor: str) -> int:
    """End every open session of ``row`` (password changed, re-enrolled, frozen)."""
    ids = list(session.execute(
        select(UserSession.id).where(UserSession.user_id == row.id,
                                     UserSession.ended_at.is_(None))).scalars())
    if not ids:
        return 0
    session.execute(update(UserSession).where(UserSession.id.in_(ids))
                    .values(ended_at=now, end_reason=reason))
    audit.append(session, actor=actor, action="auth.sessions_ended", subject_type="user",
                 subject_ids=[row.id], details={"sessions": ids, "reason": reason}, at=now)
    return len(ids)


def authorise_request(session: Session, audit: AuditLog, cipher: FieldCipher, *, username: str,
                      code: str, roles: Iterable[str], what: str, now: datetime
                      ) -> Actor | Denied:
    """A person asking for ``what`` (a flow run) with their one-time code: the user must be
    active, unlocked, unfrozen and hold one of ``roles``; the code is spent like any other.
    Granted and refused requests are both audited."""
    wanted = frozenset(roles)
    row = _user(session, username, lock=True)
    denied: Denied | None = None
    if row is None:
        denied = Denied(Reason.UNKNOWN_USER.value, f"no user named {username!r}")
    else:
        frozen = login_risk.active_freeze(session, row.id)
        refusal = check_user(domain_user(session, row), locked_until=row.locked_until, now=now)
        held = roles_of(session, row.id)
        if frozen is not None:
            denied = Denied("USER_FROZEN", f"{row.username} is frozen ({frozen.rule})")
        elif refusal is not None:
            denied = Denied(refusal.code.value, refusal.message)
        elif not held & wanted:
            denied = Denied("ROLE_MISSING", f"{what} needs role {' or '.join(sorted(wanted))}; "
                                            f"{row.username} has {', '.join(sorted(held)) or 'none'}")
        else:
            wrong = check_code(session, audit, cipher, row, code, now, CODE_LOCKOUT)
            if wrong is not None:
                denied = Denied(wrong.code.value, wrong.message)
    if denied is not None:
        audit.append(session, actor=username, action="access.refused", subject_type="command",
                     subject_ids=[what], details={"reason": denied.code,
                                                  "message": denied.message}, at=now)
        return denied
    assert row is not None
    audit.append(session, actor=row.username, action="access.granted", subject_type="command",
                 subject_ids=[what], details={"roles": sorted(held & wanted)}, at=now)
    return Actor(name=row.username, kind=Kind.USER, roles=roles_of(session, row.id))


# --- managing users -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordSet:
    username: str
    first: bool
    #: A new authenticator secret, issued with a first password while none was confirmed;
    #: shown once (it holds the secret).
    otpauth_uri: str | None
    sessions_ended: int


def armed(session: Session) -> bool:
    """Whether any user has a password: before that, nobody can log in (a new installation)."""
    return session.execute(
        select(UserRow.id).where(UserRow.password_hash.is_not(None)).limit(1)).first() is not None


def create_user(session: Session, audit: AuditLog, cipher: FieldCipher, *, username: str,
                roles: Iterable[str], display_name: str = "", actor: str,
                now: datetime) -> tuple[UserRow, str]:
    """A new user with roles and a fresh authenticator secret; returns the otpauth:// URI."""
    username = username.strip()
    if not USERNAME.match(username):
        raise InvalidValue(f"user name {username!r} must be 1 to 64 lower-case letters, digits, "
                           "'.', '_' or '-', starting and ending with a letter or digit")
    wanted = _valid_roles(roles)
    if _user(session, username) is not None:
        raise InvalidValue(f"a user named {username!r} already exists")
    secret = pyotp.random_base32()
    row = UserRow(username=username, display_name=display_name.strip(),
                  totp_secret=cipher.encrypt(secret.encode(), f"users.totp_secret:{username}"),
                  roles=[UserRole(role=r) for r in sorted(wanted)], created_at=now)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor, action="user.created", subject_type="user",
                 subject_ids=[row.id], details={username: sorted(wanted)}, at=now)
    return row, otpauth_uri(username, secret)


def set_password(session: Session, audit: AuditLog, cipher: FieldCipher, *, username: str,
                 password: str, actor: str, now: datetime, bootstrap: bool = False) -> PasswordSet:
    """Store a new password of ``username`` (the policy checked first).

    ``bootstrap``: the service identity sets the first administrator's first password; only
    while no user has any password, and only for a user with the admin role.
    """
    row = _existing(session, username, lock=True)
    passwords.check_policy(password, username=row.username)
    if bootstrap:
        if armed(session):
            raise SecurityError("the first password is already set: only an administrator "
                                "may set passwords now (yinqi login)")
        if Role.ADMIN.value not in roles_of(session, row.id):
            raise SecurityError(f"{row.username} is not an administrator; the first password "
                                "must be an administrator's")
    first = row.password_set_at is None and row.password_hash is None
    row.password_hash = passwords.hash_password(password)
    row.password_set_at = now
    uri = None
    if first and row.totp_enrolled_at is None:
        uri = _new_secret(cipher, row)
    ended = 0 if first else end_sessions(session, audit, row, "password_changed", now,
                                         actor=actor)
    audit.append(session, actor=actor, action="user.password_set", subject_type="user",
                 subject_ids=[row.id],
                 details={"username": row.username, "first": first, "bootstrap": bootstrap,
                          "totp_reissued": uri is not None},
                 at=now)
    return PasswordSet(row.username, first, uri, ended)


def enrol(session: Session, audit: AuditLog, cipher: FieldCipher, *, username: str, actor: str,
          now: datetime) -> str:
    """A new authenticator secret for ``username`` (lost phone); the old codes stop working
    and the user's sessions end. Returns the otpauth:// URI to show once."""
    row = _existing(session, username, lock=True)
    uri = _new_secret(cipher, row)
    end_sessions(session, audit, row, "totp_reenrolled", now, actor=actor)
    audit.append(session, actor=actor, action="user.totp_enrolled", subject_type="user",
                 subject_ids=[row.id], details={"username": row.username}, at=now)
    return uri


def unlock(session: Session, audit: AuditLog, *, username: str, actor: str, now: datetime) -> bool:
    """Lift a lock after failed attempts; False if the user was not locked."""
    row = _existing(session, username, lock=True)
    was = row.locked_until is not None and row.locked_until > now
    row.locked_until, row.failed_code_attempts = None, 0
    audit.append(session, actor=actor, action="user.unlocked", subject_type="user",
                 subject_ids=[row.id], details={"username": row.username, "was_locked": was},
                 at=now)
    return was


def users_overview(session: Session, now: datetime) -> list[dict[str, Any]]:
    rows = session.execute(select(UserRow).order_by(UserRow.username)).scalars().all()
    out = []
    for row in rows:
        frozen = login_risk.active_freeze(session, row.id)
        out.append({
            "username": row.username, "display_name": row.display_name,
            "roles": sorted(roles_of(session, row.id)), "active": row.active,
            "password": row.password_hash is not None,
            "totp_enrolled": row.totp_enrolled_at is not None,
            "locked_until": row.locked_until if row.locked_until and row.locked_until > now
            else None,
            "frozen": frozen.rule if frozen is not None else None,
            "last_login_at": row.last_login_at,
        })
    return out


def sessions_overview(session: Session, now: datetime, username: str | None = None,
                      limit: int = 200) -> list[dict[str, Any]]:
    query = (select(UserSession, UserRow.username).join(UserRow, UserRow.id == UserSession.user_id)
             .order_by(UserSession.id.desc()).limit(limit))
    if username is not None:
        query = query.where(UserRow.id == _existing(session, username).id)
    out = []
    for record, name in session.execute(query).all():
        state = ("ended" if record.ended_at is not None
                 else "expired" if record.expires_at <= now else "open")
        out.append({"id": record.id, "username": name, "origin": record.origin,
                    "client": record.client, "created_at": record.created_at,
                    "expires_at": record.expires_at, "last_seen_at": record.last_seen_at,
                    "state": state, "end_reason": record.end_reason})
    return out


def otpauth_uri(username: str, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


# --- helpers --------------------------------------------------------------------------------


def _user(session: Session, username: str, *, lock: bool = False) -> UserRow | None:
    query = select(UserRow).where(UserRow.username == username)
    if lock:
        # The user row is the lock that serialises one person's attempts (PostgreSQL), so two
        # concurrent logins cannot both slip under the failure limit.
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.execute(query).scalar_one_or_none()


def _existing(session: Session, username: str, *, lock: bool = False) -> UserRow:
    row = _user(session, username, lock=lock)
    if row is None:
        raise InvalidValue(f"no user named {username!r} (yinqi users list)")
    return row


def _valid_roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(r.strip() for r in roles if r.strip())
    known = {r.value for r in Role}
    unknown = sorted(wanted - known)
    if unknown:
        raise InvalidValue(f"unknown role(s) {', '.join(unknown)} (known: "
                           f"{', '.join(sorted(known))})")
    if not wanted:
        raise InvalidValue("a user needs at least one role (--role)")
    return wanted


def _new_secret(cipher: FieldCipher, row: UserRow) -> str:
    secret = pyotp.random_base32()
    row.totp_secret = cipher.encrypt(secret.encode(), f"users.totp_secret:{row.username}")
    row.totp_enrolled_at = None
    return otpauth_uri(row.username, secret)


def _actor(session: Session, row: UserRow, record: UserSession) -> Actor:
    return Actor(name=row.username, kind=Kind.USER, roles=roles_of(session, row.id),
                 session_id=record.id, origin=record.origin, expires_at=record.expires_at)


def _failed(session: Session, audit: AuditLog, rules: RiskRules, row: UserRow | None,
            username: str, code: str, message: str, details: dict[str, str],
            now: datetime) -> Denied:
    """Audit a failed login (it counts for ``repeated_failures``), then run that rule."""
    audit.append(session, actor=row.username if row is not None else username[:64],
                 action=login_risk.FAILED_LOGIN, subject_type="user",
                 subject_ids=[row.id] if row is not None else [],
                 details={"reason": code, **details}, at=now)
    if row is not None:
        fired = login_risk.check_repeated_failures(session, audit, rules, row, now)
        if fired is not None and fired.frozen:
            end_sessions(session, audit, row, "frozen", now, actor=login_risk.SYSTEM)
    return Denied(code, message)


def _refused(session: Session, audit: AuditLog, row: UserRow, code: str, message: str,
             details: dict[str, str], now: datetime) -> Denied:
    audit.append(session, actor=row.username, action="auth.login_refused", subject_type="user",
                 subject_ids=[row.id], details={"reason": code, **details}, at=now)
    return Denied(code, message)
