"""Users, passwords, one-time codes and sessions in the store, on SQLite and PostgreSQL.

Time is always passed in; each login uses a code of its own 30-second step, since a step
works once per user.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from store_support import code, events
from yinqi.approval import LOCK_AFTER_FAILURES
from yinqi.bootstrap import App
from yinqi.errors import InvalidValue, SecurityError
from yinqi.security import passwords
from yinqi.security.rbac import Kind
from yinqi.store import auth
from yinqi.store.models import (
    Alert,
    AuditEventRow,
    Freeze,
    RiskHit,
    User,
    UserSession,
)

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)
PASSWORD = "correct horse battery staple"
HOME = "local:treasury-pc"
AWAY = "203.0.113.9"


# --- helpers ----------------------------------------------------------------------------------


def rules(app: App, **changes: dict[str, Any]) -> Any:
    """The shipped risk rules with some rules' fields changed, e.g. repeated_failures={...}."""
    base = app.config.risk_rules
    return base.model_copy(update={name: getattr(base, name).model_copy(update=fields)
                                   for name, fields in changes.items()})


def quiet(app: App) -> Any:
    """No login risk rule: for tests about the lock and the session alone."""
    return rules(app, repeated_failures={"enabled": False}, new_login_location={"enabled": False})


def give_password(app: App, username: str, password: str = PASSWORD) -> None:
    with app.sessions.begin() as s:
        auth.set_password(s, app.audit, app.field_cipher, username=username, password=password,
                          actor="admin", now=NOW)


def log_in(app: App, username: str, at: datetime, *, password: str = PASSWORD,
           code_: str | None = None, origin: str = HOME, risk: Any = None
           ) -> auth.LoggedIn | auth.Denied:
    given = code_ if code_ is not None else code(app, username, at)
    with app.sessions.begin() as s:
        return auth.login(s, app.audit, app.field_cipher,
                          risk if risk is not None else quiet(app), username=username,
                          password=password, code=given, origin=origin, client="wu /dev/pts/1",
                          now=at)


def wrong_code(app: App, username: str, at: datetime) -> str:
    with app.sessions() as s:
        accepted = {auth.current_code(s, app.field_cipher, username, at + k * STEP)
                    for k in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(10)) if c not in accepted)


def resolve(app: App, token: str, at: datetime) -> Any:
    with app.sessions.begin() as s:
        return auth.resolve(s, token, at)


def user(app: App, username: str) -> User:
    with app.sessions() as s:
        return s.execute(select(User).where(User.username == username)).scalar_one()


def assert_chain_intact(app: App) -> None:
    with app.sessions() as s:
        assert app.audit.verify(s).ok


# --- passwords --------------------------------------------------------------------------------


def test_a_password_is_stored_as_a_salted_argon2id_hash_that_does_not_give_it_back() -> None:
    one, two = passwords.hash_password(PASSWORD), passwords.hash_password(PASSWORD)
    assert one.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert one != two  # a fresh salt each time: equal passwords do not show as equal hashes
    for encoded in (one, two):
        assert PASSWORD not in encoded and PASSWORD.encode().hex() not in encoded
        assert passwords.verify_password(encoded, PASSWORD)
        assert not passwords.verify_password(encoded, PASSWORD + " ")
        assert not passwords.needs_rehash(encoded)
    assert not passwords.verify_password(None, PASSWORD)
    assert not passwords.verify_password("$argon2id$garbage", PASSWORD)
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    assert passwords.verify_password(weaker, PASSWORD) and passwords.needs_rehash(weaker)


@pytest.mark.parametrize(("password", "says"), [
    ("short pw", "at least 12 characters"),
    (" " * 14, "only spaces"),
    ("Wu.Maker", "at least 12"),
    ("x" * 300, "at most 256"),
])
def test_the_password_policy_refuses_in_one_line(password: str, says: str) -> None:
    with pytest.raises(InvalidValue, match=says) as caught:
        passwords.check_policy(password, username="wu.maker")
    assert password.strip() == "" or password not in str(caught.value)


def test_the_password_must_not_be_the_user_name() -> None:
    with pytest.raises(InvalidValue, match="user name"):
        passwords.check_policy("liu.treasurer", username="liu.treasurer")


def test_a_login_re_hashes_a_password_stored_with_weaker_parameters(app: App) -> None:
    give_password(app, "liu.treasurer")
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with app.sessions.begin() as s:
        s.execute(select(User).where(User.username == "liu.treasurer")).scalar_one() \
            .password_hash = weaker
    assert isinstance(log_in(app, "liu.treasurer", NOW), auth.LoggedIn)
    stored = user(app, "liu.treasurer").password_hash
    assert stored != weaker and stored is not None and not passwords.needs_rehash(stored)


# --- logging in -------------------------------------------------------------------------------


def test_a_login_opens_a_session_that_records_who_and_from_where(app: App) -> None:
    give_password(app, "liu.treasurer")
    done = log_in(app, "liu.treasurer", NOW, origin=AWAY)
    assert isinstance(done, auth.LoggedIn)
    assert done.actor.kind is Kind.USER and done.actor.roles == {"treasurer"}
    assert done.actor.expires_at == NOW + timedelta(hours=8)
    with app.sessions() as s:
        [row] = s.execute(select(UserSession)).scalars()
        # Only the token's SHA-256 is stored: a copy of the database opens no session.
        assert row.token_sha256 == hashlib.sha256(done.token.encode()).hexdigest()
        assert done.token not in (row.token_sha256, row.origin, row.client)
        assert (row.origin, row.client) == (AWAY, "wu /dev/pts/1")
    treasurer = user(app, "liu.treasurer")
    assert treasurer.last_login_at == NOW and treasurer.totp_enrolled_at == NOW
    [event] = events(app, "auth.login")
    assert event.actor == "liu.treasurer"
    assert (event.details["origin"], event.details["session_id"]) == (AWAY, row.id)
    who = resolve(app, done.token, NOW + timedelta(hours=1))
    assert (who.name, who.roles, who.origin) == ("liu.treasurer", {"treasurer"}, AWAY)
    assert_chain_intact(app)


def test_a_wrong_password_is_refused_counted_and_audited_without_the_password(app: App) -> None:
    give_password(app, "liu.treasurer")
    refused = log_in(app, "liu.treasurer", NOW, password="not the password at all")
    assert isinstance(refused, auth.Denied) and refused.code == "PASSWORD_WRONG"
    assert "1 of 5" in refused.message
    assert user(app, "liu.treasurer").failed_code_attempts == 1
    [event] = events(app, "auth.login_failed")
    assert (event.actor, event.details["reason"]) == ("liu.treasurer", "PASSWORD_WRONG")
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(UserSession)).scalar_one() == 0
        everything = str([(e.details, e.actor) for e in s.execute(select(AuditEventRow))
                          .scalars()]) + str(list(s.execute(select(Alert.message))))
    assert "not the password" not in everything and PASSWORD not in everything


def test_an_unknown_user_is_refused_like_a_wrong_password_and_audited(app: App) -> None:
    refused = log_in(app, "mallory", NOW, code_="123456")
    assert isinstance(refused, auth.Denied) and refused.code == "UNKNOWN_USER"
    assert "wrong user name, password or one-time code" in refused.message
    [event] = events(app, "auth.login_failed")
    assert (event.actor, event.subject_ids) == ("mallory", [])


def test_a_user_without_a_password_cannot_log_in(app: App) -> None:
    refused = log_in(app, "wu.maker", NOW)
    assert isinstance(refused, auth.Denied) and refused.code == "NO_PASSWORD"
    assert events(app, "auth.login_refused")


def test_wrong_codes_lock_the_user_with_a_critical_alert_and_audit(app: App) -> None:
    give_password(app, "liu.treasurer")
    for attempt in range(1, LOCK_AFTER_FAILURES + 1):
        at = NOW + attempt * timedelta(seconds=5)
        refused = log_in(app, "liu.treasurer", at, code_=wrong_code(app, "liu.treasurer", at))
        assert isinstance(refused, auth.Denied) and refused.code == "CODE_WRONG"
    locked_at = NOW + LOCK_AFTER_FAILURES * timedelta(seconds=5)
    treasurer = user(app, "liu.treasurer")
    assert treasurer.locked_until == locked_at + timedelta(minutes=15)
    with app.sessions() as s:
        [alert] = s.execute(select(Alert).where(Alert.kind == "security.login_lockout")).scalars()
    assert alert.severity == "critical" and "liu.treasurer" in alert.message
    [lock] = events(app, "user.locked")
    assert lock.details["alert_id"] == alert.id
    assert len(events(app, "auth.login_failed")) == LOCK_AFTER_FAILURES

    # Locked: even the right password and code are refused, and the attempt is audited.
    during = locked_at + timedelta(minutes=1)
    refused = log_in(app, "liu.treasurer", during)
    assert isinstance(refused, auth.Denied) and refused.code == "USER_LOCKED"
    assert "locked until" in refused.message
    assert len(events(app, "auth.login_failed")) == LOCK_AFTER_FAILURES + 1

    after = locked_at + timedelta(minutes=16)
    assert isinstance(log_in(app, "liu.treasurer", after), auth.LoggedIn)
    assert user(app, "liu.treasurer").failed_code_attempts == 0
    assert_chain_intact(app)


def test_wrong_passwords_count_towards_the_same_lock(app: App) -> None:
    give_password(app, "liu.treasurer")
    for attempt in range(LOCK_AFTER_FAILURES):
        log_in(app, "liu.treasurer", NOW + attempt * STEP, password="a wrong password!")
    assert user(app, "liu.treasurer").locked_until is not None
    [alert] = list(_alerts(app, "security.login_lockout"))
    assert "failed logins" in alert.message


def test_a_one_time_code_works_once(app: App) -> None:
    give_password(app, "liu.treasurer")
    same = code(app, "liu.treasurer", NOW)
    assert isinstance(log_in(app, "liu.treasurer", NOW, code_=same), auth.LoggedIn)
    replay = log_in(app, "liu.treasurer", NOW + timedelta(seconds=10), code_=same)
    assert isinstance(replay, auth.Denied) and replay.code == "CODE_REUSED"
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(UserSession)).scalar_one() == 1
    assert events(app, "auth.login_failed")[-1].details["reason"] == "CODE_REUSED"


def test_a_session_expires_after_eight_hours(app: App) -> None:
    give_password(app, "liu.treasurer")
    done = log_in(app, "liu.treasurer", NOW)
    assert isinstance(done, auth.LoggedIn)
    assert resolve(app, done.token, NOW + timedelta(hours=7, minutes=59)).name == "liu.treasurer"
    late = resolve(app, done.token, NOW + timedelta(hours=8, seconds=1))
    assert isinstance(late, auth.Denied) and late.code == "SESSION_EXPIRED"
    again = resolve(app, done.token, NOW + timedelta(hours=9))
    assert isinstance(again, auth.Denied) and again.code == "SESSION_ENDED"
    unknown = resolve(app, done.token + "x", NOW)
    assert isinstance(unknown, auth.Denied) and unknown.code == "SESSION_UNKNOWN"


def test_logout_ends_the_session(app: App) -> None:
    give_password(app, "liu.treasurer")
    done = log_in(app, "liu.treasurer", NOW)
    assert isinstance(done, auth.LoggedIn)
    with app.sessions.begin() as s:
        assert auth.logout(s, app.audit, done.token, NOW + timedelta(minutes=5))
    with app.sessions.begin() as s:
        assert not auth.logout(s, app.audit, done.token, NOW + timedelta(minutes=6))
    ended = resolve(app, done.token, NOW + timedelta(minutes=7))
    assert isinstance(ended, auth.Denied) and ended.code == "SESSION_ENDED"
    assert "logout" in ended.message
    [event] = events(app, "auth.logout")
    assert event.actor == "liu.treasurer"


def test_a_new_password_ends_the_users_sessions(app: App) -> None:
    give_password(app, "liu.treasurer")
    done = log_in(app, "liu.treasurer", NOW)
    assert isinstance(done, auth.LoggedIn)
    with app.sessions.begin() as s:
        changed = auth.set_password(s, app.audit, app.field_cipher, username="liu.treasurer",
                                    password="another good password", actor="admin",
                                    now=NOW + STEP)
    assert (changed.first, changed.otpauth_uri, changed.sessions_ended) == (False, None, 1)
    assert isinstance(resolve(app, done.token, NOW + 2 * STEP), auth.Denied)


# --- enrolment and the first password ---------------------------------------------------------


def test_a_first_password_issues_the_authenticator_and_the_first_code_confirms_it(
    app: App,
) -> None:
    old = code(app, "liu.treasurer", NOW)
    with app.sessions.begin() as s:
        done = auth.set_password(s, app.audit, app.field_cipher, username="liu.treasurer",
                                 password=PASSWORD, actor="admin", now=NOW)
    assert done.first and done.otpauth_uri is not None
    assert done.otpauth_uri.startswith("otpauth://totp/Yinqi:liu.treasurer?secret=")
    secret = done.otpauth_uri.split("secret=")[1].split("&")[0]
    with app.sessions() as s:
        everything = str([e.details for e in s.execute(select(AuditEventRow)).scalars()])
    assert secret not in everything  # shown once to the person, never kept in the clear
    assert user(app, "liu.treasurer").totp_enrolled_at is None
    at = NOW + 3 * STEP
    if old != code(app, "liu.treasurer", NOW):  # the old secret's code no longer works
        stale = log_in(app, "liu.treasurer", NOW, code_=old)
        assert isinstance(stale, auth.Denied) and stale.code == "CODE_WRONG"
    assert isinstance(log_in(app, "liu.treasurer", at), auth.LoggedIn)
    assert user(app, "liu.treasurer").totp_enrolled_at == at
    assert events(app, "user.totp_confirmed")


def test_re_enrolment_replaces_the_secret_and_ends_sessions(app: App) -> None:
    give_password(app, "liu.treasurer")
    done = log_in(app, "liu.treasurer", NOW)
    assert isinstance(done, auth.LoggedIn)
    with app.sessions.begin() as s:
        uri = auth.enrol(s, app.audit, app.field_cipher, username="liu.treasurer",
                         actor="admin", now=NOW + STEP)
    assert uri.startswith("otpauth://totp/")
    assert user(app, "liu.treasurer").totp_enrolled_at is None
    assert isinstance(resolve(app, done.token, NOW + 2 * STEP), auth.Denied)


def test_the_bootstrap_password_is_only_the_first_administrators(app: App) -> None:
    with app.sessions.begin() as s, pytest.raises(SecurityError, match="not an administrator"):
        auth.set_password(s, app.audit, app.field_cipher, username="liu.treasurer",
                          password=PASSWORD, actor="service:ops", now=NOW, bootstrap=True)
    with app.sessions.begin() as s:
        assert not auth.armed(s)
        auth.set_password(s, app.audit, app.field_cipher, username="admin", password=PASSWORD,
                          actor="service:ops", now=NOW, bootstrap=True)
    with app.sessions.begin() as s, pytest.raises(SecurityError, match="already set"):
        auth.set_password(s, app.audit, app.field_cipher, username="admin",
                          password="a takeover password", actor="service:ops", now=NOW,
                          bootstrap=True)
    with app.sessions() as s:
        assert auth.armed(s)
    [event] = events(app, "user.password_set")
    assert event.details["bootstrap"] is True and event.actor == "service:ops"


def test_users_are_created_with_valid_names_and_known_roles(app: App) -> None:
    with app.sessions.begin() as s:
        row, uri = auth.create_user(s, app.audit, app.field_cipher, username="qian.treasurer",
                                    roles=["treasurer", "auditor"], display_name="钱司库",
                                    actor="admin", now=NOW)
        assert auth.roles_of(s, row.id) == {"treasurer", "auditor"}
    assert uri.startswith("otpauth://totp/Yinqi:qian.treasurer?secret=")
    for name, roles, says in (("Bad Name", ["maker"], "user name"),
                              ("qian.treasurer", ["maker"], "already exists"),
                              ("zheng.x", ["king"], "unknown role"),
                              ("zheng.y", [], "at least one role")):
        with app.sessions.begin() as s, pytest.raises(InvalidValue, match=says):
            auth.create_user(s, app.audit, app.field_cipher, username=name, roles=roles,
                             actor="admin", now=NOW)


# --- the login risk rules ---------------------------------------------------------------------


def test_a_login_from_a_new_place_fires_the_rule_and_the_usual_place_stays_quiet(
    app: App,
) -> None:
    give_password(app, "liu.treasurer")
    watching = rules(app, repeated_failures={"enabled": False})
    first = log_in(app, "liu.treasurer", NOW, risk=watching)  # the baseline: nothing to compare
    again = log_in(app, "liu.treasurer", NOW + 2 * STEP, risk=watching)
    assert isinstance(first, auth.LoggedIn) and isinstance(again, auth.LoggedIn)
    assert first.risk == () and again.risk == ()
    assert _hits(app) == []

    away = log_in(app, "liu.treasurer", NOW + 4 * STEP, origin=AWAY, risk=watching)
    assert isinstance(away, auth.LoggedIn)  # the shipped action is "alert": the login goes on
    [fired] = away.risk
    assert (fired.rule, fired.action, fired.frozen) == ("new_login_location", "alert", False)
    [hit] = _hits(app)
    assert (hit.rule, hit.action, hit.subject_type) == ("new_login_location", "alert", "user")
    assert hit.subject_id == user(app, "liu.treasurer").id and AWAY in hit.message
    [alert] = _alerts(app, "risk.new_login_location")
    assert alert.id == fired.alert_id and alert.severity == "warning"
    [event] = events(app, "risk.fired")
    assert (event.details["rule"], event.subject_type) == ("new_login_location", "user")
    # Seen now: the next login from there is quiet.
    assert log_in(app, "liu.treasurer", NOW + 6 * STEP, origin=AWAY, risk=watching).risk == ()
    assert_chain_intact(app)


def test_a_login_from_a_new_place_can_freeze_the_user(app: App) -> None:
    give_password(app, "liu.treasurer")
    freezing = rules(app, repeated_failures={"enabled": False},
                     new_login_location={"action": "freeze"})
    home = log_in(app, "liu.treasurer", NOW, risk=freezing)
    assert isinstance(home, auth.LoggedIn)
    away = log_in(app, "liu.treasurer", NOW + 2 * STEP, origin=AWAY, risk=freezing)
    assert isinstance(away, auth.Denied) and away.code == "USER_FROZEN"
    with app.sessions() as s:
        [freeze] = s.execute(select(Freeze)).scalars()
        assert (freeze.subject_type, freeze.rule, freeze.status) == (
            "user", "new_login_location", "active")
        assert s.execute(select(func.count()).select_from(UserSession)).scalar_one() == 1
    # The session opened at home stops working, and nobody logs in as the user any more.
    assert isinstance(resolve(app, home.token, NOW + 3 * STEP), auth.Denied)
    back = log_in(app, "liu.treasurer", NOW + 4 * STEP, risk=freezing)
    assert isinstance(back, auth.Denied) and back.code == "USER_FROZEN"
    assert [a.severity for a in _alerts(app, "risk.new_login_location")] == ["critical"]
    [frozen] = events(app, "risk.frozen")
    assert frozen.details["freeze_ids"] == [freeze.id]


def test_repeated_login_failures_freeze_the_user(app: App) -> None:
    give_password(app, "liu.treasurer")
    shipped = app.config.risk_rules  # count 3 within 24 h, action freeze
    assert (shipped.repeated_failures.count, shipped.repeated_failures.action) == (3, "freeze")
    for n in range(3):
        refused = log_in(app, "liu.treasurer", NOW + n * timedelta(hours=1),
                         password="guess number %d" % n, risk=shipped)
        assert isinstance(refused, auth.Denied) and refused.code == "PASSWORD_WRONG"
    [hit] = _hits(app)
    assert (hit.rule, hit.action, hit.subject_type) == ("repeated_failures", "freeze", "user")
    assert hit.details["failures"] == 3
    [alert] = _alerts(app, "risk.repeated_failures")
    assert alert.severity == "critical"
    right = log_in(app, "liu.treasurer", NOW + timedelta(hours=4), risk=shipped)
    assert isinstance(right, auth.Denied) and right.code == "USER_FROZEN"
    # A refusal of a frozen user is no guess: it does not fire the rule again.
    assert len(_hits(app)) == 1


def test_failures_spread_beyond_the_window_stay_quiet(app: App) -> None:
    give_password(app, "liu.treasurer")
    shipped = app.config.risk_rules
    for n in range(4):  # one failure every 13 hours: never 3 within 24 hours
        log_in(app, "liu.treasurer", NOW + n * timedelta(hours=13), password="wrong password!",
               risk=shipped)
    assert _hits(app) == []
    assert isinstance(log_in(app, "liu.treasurer", NOW + timedelta(hours=60), risk=shipped),
                      auth.LoggedIn)


def test_repeated_failures_with_the_alert_action_alert_once_per_window(app: App) -> None:
    give_password(app, "liu.treasurer")
    alerting = rules(app, repeated_failures={"action": "alert"},
                     new_login_location={"enabled": False})
    for n in range(4):
        log_in(app, "liu.treasurer", NOW + n * STEP, password="wrong password!", risk=alerting)
    [hit] = _hits(app)
    assert hit.action == "alert"
    with app.sessions() as s:
        assert s.execute(select(func.count()).select_from(Freeze)).scalar_one() == 0
    assert isinstance(log_in(app, "liu.treasurer", NOW + 10 * STEP, risk=alerting), auth.LoggedIn)


def test_a_frozen_user_cannot_log_in(app: App) -> None:
    give_password(app, "liu.treasurer")
    with app.sessions.begin() as s:
        s.add(Freeze(subject_type="user", subject_id=user(app, "liu.treasurer").id,
                     rule="manual", reason="investigation", frozen_by="admin", created_at=NOW))
    refused = log_in(app, "liu.treasurer", NOW)
    assert isinstance(refused, auth.Denied) and refused.code == "USER_FROZEN"
    assert "investigation" in refused.message
    [event] = events(app, "auth.login_refused")
    assert event.details["reason"] == "USER_FROZEN"


# --- a person asking for a flow run -----------------------------------------------------------


def test_a_flow_request_needs_the_role_and_a_fresh_code(app: App) -> None:
    def ask(username: str, given: str, at: datetime) -> Any:
        with app.sessions.begin() as s:
            return auth.authorise_request(s, app.audit, app.field_cipher, username=username,
                                          code=given, roles=["treasurer"], what="Rerun batch",
                                          now=at)

    ok = ask("liu.treasurer", code(app, "liu.treasurer", NOW), NOW)
    assert ok.name == "liu.treasurer" and ok.kind is Kind.USER
    replay = ask("liu.treasurer", code(app, "liu.treasurer", NOW), NOW)
    assert isinstance(replay, auth.Denied) and replay.code == "CODE_REUSED"
    maker = ask("wu.maker", code(app, "wu.maker", NOW), NOW)
    assert isinstance(maker, auth.Denied) and maker.code == "ROLE_MISSING"
    assert "needs role treasurer" in maker.message
    assert isinstance(ask("nobody", "123456", NOW), auth.Denied)
    assert [e.details["reason"] for e in events(app, "access.refused")] == [
        "CODE_REUSED", "ROLE_MISSING", "UNKNOWN_USER"]
    assert [e.actor for e in events(app, "access.granted")] == ["liu.treasurer"]


def _hits(app: App) -> list[RiskHit]:
    with app.sessions() as s:
        return list(s.execute(select(RiskHit).order_by(RiskHit.id)).scalars())


def _alerts(app: App, kind: str) -> list[Alert]:
    with app.sessions() as s:
        return list(s.execute(select(Alert).where(Alert.kind == kind).order_by(Alert.id))
                    .scalars())
