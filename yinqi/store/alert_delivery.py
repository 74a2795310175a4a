"""Delivering alerts: the alert log (``alert_deliveries``), claims, SMTP and webhooks.

One row per alert and channel. :func:`deliver_due` first gives every undelivered alert a row
for each channel that wants it (:func:`yinqi.alert_routing.route`), then claims due rows and
sends them:

- **Claims.** PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows no other worker
  is claiming; SQLite: the engine's ``BEGIN IMMEDIATE`` serialises claims. In the same
  transaction the attempt is counted and ``next_attempt_at`` moved one lease ahead, so the
  row is nobody else's until the lease ends. Two workers never send one delivery twice while
  both are alive.
- **At least once after a crash.** A worker that dies between the claim and the record of
  the result leaves the row pending; after the lease another worker sends it again (the
  attempt was counted, so ``max_attempts`` still bounds it). Receivers can drop repeats by
  ``X-Yinqi-Delivery`` (webhooks) or the Message-ID (e-mail), both fixed per alert and channel.
- **Results.** Sent: ``status='sent'``; once every row of an alert is sent, the alert's
  ``delivered_at`` is set. Failed: ``next_attempt_at`` backs off exponentially with jitter;
  after ``max_attempts`` the row is ``failed`` and stays visible in ``yinqi alerts list``.
"""

from __future__ import annotations

import json
import os
import random
import smtplib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import and_, exists, or_, select, true, update
from sqlalchemy.orm import Session

from config.alerts import AlertsConfig, EmailChannel, WebhookChannel, check_webhook_url
from yinqi.alert_routing import (
    TEST_KIND,
    AlertFacts,
    answer_problem,
    backoff_seconds,
    dingtalk_sign,
    generic_signature,
    public_url,
    render_email,
    route,
    webhook_body,
)
from yinqi.errors import InvalidValue
from yinqi.security.masking import redact
from yinqi.store.models import Alert, AlertDelivery
from yinqi.store.types import utcnow

if TYPE_CHECKING:
    from yinqi.bootstrap import App

Channel = EmailChannel | WebhookChannel

_ID_CHUNK = 500
_ERROR_CHARS = 1000


class DeliveryFailed(Exception):
    """One attempt on one channel did not get through; the message says why (no secrets)."""


@dataclass
class DeliveryReport:
    """What one :func:`deliver_due` call did."""

    routed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"routed": self.routed, "sent": self.sent, "retrying": self.retrying,
                "failed": self.failed, "errors": self.errors[:50]}


@dataclass(frozen=True)
class _Claim:
    id: int
    alert_id: int
    channel: str
    attempts: int


# --- the loop ----------------------------------------------------------------------------


def deliver_due(app: App, now: datetime | None = None, limit: int = 200, *,
                config: AlertsConfig | None = None, rng: random.Random | None = None,
                env: Mapping[str, str] | None = None) -> DeliveryReport:
    """Route new alerts to their channels, then send up to ``limit`` due deliveries.

    ``now`` is the moment the due times and back-offs are counted from (tests move it);
    ``config`` replaces ``app.config.alerts``; ``env`` holds the secrets named in the config
    (default: the process environment).
    """
    cfg = config if config is not None else app.config.alerts
    now = now or utcnow()
    rng = rng or random.Random()
    env = os.environ if env is None else env
    report = DeliveryReport()
    _fail_orphans(app, cfg, now)
    if not any(c.enabled for c in cfg.channels):
        return report
    report.routed = route_new(app, cfg, now, env)
    # Small claims: a claim's sends must end well within its lease, or another worker
    # would take the rest over and send them a second time.
    slowest = max(c.timeout_seconds for c in cfg.channels if c.enabled)
    chunk = max(1, int(cfg.delivery.lease_seconds // (4 * slowest)))
    done = 0
    while done < limit:
        claims = _claim(app, cfg, now, min(chunk, limit - done))
        if not claims:
            break
        done += len(claims)
        for claim in claims:
            _attempt(app, cfg, claim, now, rng, env, report, retry=True)
    return report


def route_new(app: App, cfg: AlertsConfig, now: datetime,
              env: Mapping[str, str] | None = None) -> int:
    """Give every recent, undelivered, unacknowledged alert a pending row per channel that
    wants it (rows that exist are kept); returns how many rows were created."""
    env = os.environ if env is None else env
    cutoff = now - timedelta(hours=cfg.delivery.route_within_hours)
    created, finished = 0, []
    with app.sessions.begin() as s:
        alerts = s.execute(
            select(Alert.id, Alert.kind, Alert.severity, Alert.created_at)
            .where(Alert.delivered_at.is_(None), Alert.acknowledged_at.is_(None),
                   Alert.created_at >= cutoff)
            .order_by(Alert.id)).all()
        for start in range(0, len(alerts), _ID_CHUNK):
            chunk = alerts[start:start + _ID_CHUNK]
            ids = [a.id for a in chunk]
            have: dict[int, dict[str, str]] = {}
            for aid, channel, status in s.execute(
                    select(AlertDelivery.alert_id, AlertDelivery.channel, AlertDelivery.status)
                    .where(AlertDelivery.alert_id.in_(ids))):
                have.setdefault(aid, {})[channel] = status
            tests = {aid: details for aid, details in s.execute(
                select(Alert.id, Alert.details).where(Alert.id.in_(ids),
                                                      Alert.kind == TEST_KIND))}
            rows = []
            for a in chunk:
                facts = AlertFacts(id=a.id, kind=a.kind, severity=a.severity, subject="",
                                   message="", created_at=a.created_at,
                                   details=tests.get(a.id) or {})
                existing = have.get(a.id, {})
                missing = [n for n in route(facts, cfg.channels) if n not in existing]
                rows += [_new_row(cfg, a.id, name, now, env) for name in missing]
                if existing and not missing and all(v == "sent" for v in existing.values()):
                    finished.append(a.id)
            if rows:
                created += len(_insert_new(s, rows))
    if finished:
        # Normally set by the worker that sent the last channel; this catches an alert whose
        # last two channels were sent at the same moment. Its own short transaction, so it
        # never holds alert rows while inserting.
        with app.sessions.begin() as s:
            s.execute(update(Alert).where(Alert.id.in_(finished), Alert.delivered_at.is_(None))
                      .values(delivered_at=now).execution_options(synchronize_session=False))
    return created


def _new_row(cfg: AlertsConfig, alert_id: int, name: str, now: datetime,
             env: Mapping[str, str]) -> dict[str, Any]:
    channel = cfg.channel(name)
    assert channel is not None  # routed from the same config
    return {"alert_id": alert_id, "channel": name, "target": target_of(channel, env)[:300],
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}


def _insert_new(s: Session, rows: list[dict[str, Any]]) -> list[int]:
    # Two workers may route the same alert at once: the unique (alert_id, channel) decides,
    # and the loser's insert does nothing instead of failing its transaction.
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(AlertDelivery).on_conflict_do_nothing(index_elements=["alert_id", "channel"])
    return list(s.scalars(stmt.returning(AlertDelivery.id), rows))


def target_of(channel: Channel, env: Mapping[str, str]) -> str:
    """Where a channel sends, as the alert log shows it: never a secret."""
    if isinstance(channel, EmailChannel):
        return channel.target
    if channel.url is not None:
        return public_url(channel.url)
    value = env.get(channel.url_env or "")
    return public_url(value) if value else f"${channel.url_env} (not set)"


def _fail_orphans(app: App, cfg: AlertsConfig, now: datetime) -> None:
    """Pending rows of a channel no longer in alerts.toml can never be sent: say so."""
    names = [c.name for c in cfg.channels]
    with app.sessions.begin() as s:
        s.execute(update(AlertDelivery)
                  .where(AlertDelivery.status == "pending",
                         AlertDelivery.channel.not_in(names) if names else true())
                  .values(status="failed", next_attempt_at=None,
                          last_error="the channel is no longer in alerts.toml")
                  .execution_options(synchronize_session=False))


def _claim(app: App, cfg: AlertsConfig, now: datetime, n: int,
           ids: Sequence[int] | None = None) -> list[_Claim]:
    """Take up to ``n`` due deliveries of enabled channels (or exactly ``ids``) for one lease."""
    lease_end = now + timedelta(seconds=cfg.delivery.lease_seconds)
    query = select(AlertDelivery.id, AlertDelivery.alert_id, AlertDelivery.channel,
                   AlertDelivery.attempts).where(AlertDelivery.status == "pending")
    if ids is None:
        enabled = [c.name for c in cfg.channels if c.enabled]
        query = query.where(AlertDelivery.channel.in_(enabled),
                            or_(AlertDelivery.next_attempt_at.is_(None),
                                AlertDelivery.next_attempt_at <= now))
    else:
        query = query.where(AlertDelivery.id.in_(list(ids)))
    with app.sessions.begin() as s:
        rows = s.execute(query.order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
                         .limit(n).with_for_update(skip_locked=True)).all()
        if rows:
            s.execute(update(AlertDelivery)
                      .where(AlertDelivery.id.in_([r.id for r in rows]))
                      .values(attempts=AlertDelivery.attempts + 1, next_attempt_at=lease_end)
                      .execution_options(synchronize_session=False))
    return [_Claim(r.id, r.alert_id, r.channel, r.attempts + 1) for r in rows]


def _attempt(app: App, cfg: AlertsConfig, claim: _Claim, now: datetime, rng: random.Random,
             env: Mapping[str, str], report: DeliveryReport, *, retry: bool) -> str | None:
    """Send one claimed delivery and record what happened; the error text, or None if sent."""
    channel = cfg.channel(claim.channel)
    with app.sessions() as s:
        row = s.get_one(Alert, claim.alert_id)
        facts = AlertFacts(id=row.id, kind=row.kind, severity=row.severity,
                           subject=row.subject, message=row.message,
                           created_at=row.created_at, details=row.details or {})
    error: str | None = None
    extra: str | None = None
    try:
        if channel is None:
            raise DeliveryFailed("the channel is no longer in alerts.toml")
        if isinstance(channel, EmailChannel):
            extra = send_email(channel, facts, env=env, timezone=app.settings.timezone,
                               home=app.settings.home)
        else:
            send_webhook(channel, facts, env=env, timezone=app.settings.timezone, now=now,
                         home=app.settings.home)
    except DeliveryFailed as exc:
        error = redact(str(exc))[:_ERROR_CHARS]
    except Exception as exc:  # noqa: BLE001 - one odd alert must not stop the others' sends
        error = redact(f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]
    gives_up = error is not None and (not retry or claim.attempts >= cfg.retry.max_attempts)
    with app.sessions.begin() as s:
        # The alert row first, then its deliveries: two workers finishing two channels of
        # one alert queue here, so the second one sees the first one's result.
        s.execute(select(Alert.id).where(Alert.id == claim.alert_id)
                  .with_for_update(key_share=True))
        mine = and_(AlertDelivery.id == claim.id, AlertDelivery.attempts == claim.attempts,
                    AlertDelivery.status == "pending")
        if error is None:
            values: dict[str, Any] = {"status": "sent", "delivered_at": now,
                                      "next_attempt_at": None, "last_error": extra}
        elif gives_up:
            values = {"status": "failed", "next_attempt_at": None, "last_error": error}
        else:
            wait = backoff_seconds(claim.attempts, cfg.retry, rng)
            values = {"next_attempt_at": now + timedelta(seconds=wait), "last_error": error}
        done = s.execute(update(AlertDelivery).where(mine).values(**values)
                         .execution_options(synchronize_session=False)).rowcount
        if done and error is None:
            unsent = exists().where(AlertDelivery.alert_id == claim.alert_id,
                                    AlertDelivery.status != "sent")
            s.execute(update(Alert).where(Alert.id == claim.alert_id,
                                          Alert.delivered_at.is_(None), ~unsent)
                      .values(delivered_at=now).execution_options(synchronize_session=False))
    if error is None:
        report.sent += 1
        return None
    report.errors.append(f"alert #{claim.alert_id} via {claim.channel} "
                         f"(attempt {claim.attempts}): {error}")
    if gives_up:
        report.failed += 1
    else:
        report.retrying += 1
    return error


# --- transports --------------------------------------------------------------------------


def _secret(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name)
    if not value:
        raise DeliveryFailed(f"environment variable {name} ({what}) is not set")
    return value


def _tls_context(channel: Channel, home: Path) -> ssl.SSLContext:
    if channel.ca_file is None:
        return ssl.create_default_context()
    path = channel.ca_file if channel.ca_file.is_absolute() else home / channel.ca_file
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(f"ca_file {path}: {exc}") from None


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "yinqi.invalid"


def email_message(channel: EmailChannel, alert: AlertFacts,
                  timezone: str | None = None) -> EmailMessage:
    subject, body = render_email(alert, timezone)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = channel.from_
    msg["To"] = ", ".join(channel.to)
    msg["Date"] = formatdate(localtime=False)
    # Fixed per alert and channel: a repeat after a crash has the same Message-ID.
    msg["Message-ID"] = f"<yinqi-alert-{alert.id}.{channel.name}@{_domain(channel.from_)}>"
    msg["X-Yinqi-Alert-Id"] = str(alert.id)
    msg["X-Yinqi-Severity"] = alert.severity
    msg.set_content(body)
    return msg


def send_email(channel: EmailChannel, alert: AlertFacts, *, env: Mapping[str, str],
               timezone: str | None = None, home: Path = Path(".")) -> str | None:
    """Send one alert by SMTP; DeliveryFailed if no recipient took it. Returns a note when
    only some recipients refused it (the others got it, so it is not sent again)."""
    password = (_secret(env, channel.password_env, f"password_env of email {channel.name!r}")
                if channel.password_env else None)
    msg = email_message(channel, alert, timezone)
    where = f"{channel.host}:{channel.port}"
    try:
        if channel.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                channel.host, channel.port, timeout=channel.timeout_seconds,
                context=_tls_context(channel, home))
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_seconds)
        with smtp:
            smtp.ehlo()
            if channel.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryFailed(f"{where} does not offer STARTTLS; not sending in "
                                         "clear text (security = \"starttls\")")
                smtp.starttls(context=_tls_context(channel, home))
                smtp.ehlo()
            if channel.username is not None and password is not None:
                smtp.login(channel.username, password)
            refused = smtp.send_message(msg)
    except DeliveryFailed:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryFailed(f"{where} refused every recipient: "
                             f"{_refusals(exc.recipients)}") from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        raise DeliveryFailed(f"{where} answered {exc.smtp_code} {text}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"{where}: {type(exc).__name__}: {exc}") from None
    return f"refused by {_refusals(refused)}" if refused else None


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{who} ({code} {text.decode(errors='replace')})"
                     for who, (code, text) in refused.items())


def send_webhook(channel: WebhookChannel, alert: AlertFacts, *, env: Mapping[str, str],
                 timezone: str | None = None, now: datetime | None = None,
                 home: Path = Path(".")) -> None:
    """POST one alert to a webhook; DeliveryFailed unless it was taken (2xx, errcode 0)."""
    if channel.url is not None:
        url = channel.url
    else:
        url = _secret(env, channel.url_env or "", f"url_env of webhook {channel.name!r}")
        try:
            check_webhook_url(url)
        except ValueError as exc:
            raise DeliveryFailed(f"${channel.url_env}: {exc}") from None
    shown = public_url(url)
    moment = int((now or utcnow()).timestamp() * 1000)
    body = json.dumps(webhook_body(channel.format, alert, timezone), ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "yinqi-alerts",
               "X-Yinqi-Alert-Id": str(alert.id),
               "X-Yinqi-Delivery": f"{alert.id}:{channel.name}"}
    params: dict[str, str] = {}
    if channel.secret_env is not None:
        secret = _secret(env, channel.secret_env, f"secret_env of webhook {channel.name!r}")
        if channel.format == "dingtalk":
            params = {"timestamp": str(moment), "sign": dingtalk_sign(secret, moment)}
        else:
            seconds = moment // 1000
            headers["X-Yinqi-Timestamp"] = str(seconds)
            headers["X-Yinqi-Signature"] = generic_signature(secret, seconds, body)
    verify: ssl.SSLContext | bool = (_tls_context(channel, home)
                                     if channel.ca_file is not None else True)
    # Merged into the URL's own query: httpx's params= would replace the access token.
    target = str(httpx.URL(url).copy_merge_params(params)) if params else url
    try:
        with httpx.Client(timeout=channel.timeout_seconds, verify=verify,
                          follow_redirects=False, trust_env=False) as client:
            answer = client.post(target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # Error texts may quote the URL; its query holds the token and the signature.
        text = str(exc).replace(target, shown).replace(url, shown) or type(exc).__name__
        raise DeliveryFailed(f"{shown}: {type(exc).__name__}: {text}") from None
    problem = answer_problem(channel.format, answer.status_code, answer.text)
    if problem is not None:
        raise DeliveryFailed(f"{shown}: {problem}")


# --- the test command, the log and acknowledgements --------------------------------------


def send_test(app: App, names: Sequence[str], *, actor: str, now: datetime | None = None,
              config: AlertsConfig | None = None, env: Mapping[str, str] | None = None
              ) -> dict[str, str | None]:
    """Raise an ``alerts.test`` alert for ``names`` (enabled or not) and send it once to each
    now, without retries; channel name -> error, or None where it was sent."""
    cfg = config if config is not None else app.config.alerts
    now = now or utcnow()
    env = os.environ if env is None else env
    unknown = [n for n in names if cfg.channel(n) is None]
    if unknown:
        known = ", ".join(c.name for c in cfg.channels) or "none"
        raise InvalidValue(f"no channel {unknown[0]!r} in {app.config.sources['alerts']} "
                           f"(channels: {known})")
    host = os.uname().nodename if hasattr(os, "uname") else "this machine"
    with app.sessions.begin() as s:
        alert = Alert(kind=TEST_KIND, severity="info", subject="test alert",
                      message=f"A test of Yinqi's alert channels, sent by {actor} from {host} "
                              "with `yinqi alerts test`. If you read this, the channel works.",
                      details={"channels": list(names), "requested_by": actor},
                      created_at=now)
        s.add(alert)
        s.flush()
        rows = [_new_row(cfg, alert.id, n, now, env) for n in names]
        ids = _insert_new(s, rows)
        app.audit.append(s, actor=actor, action="alert.test", subject_type="alert",
                         subject_ids=[alert.id], details={"channels": list(names)}, at=now)
    report = DeliveryReport()
    results: dict[str, str | None] = {}
    for claim in _claim(app, cfg, now, len(ids), ids=ids):
        results[claim.channel] = _attempt(app, cfg, claim, now, random.Random(), env, report,
                                          retry=False)
    return results


@dataclass(frozen=True)
class LogEntry:
    id: int
    kind: str
    severity: str
    subject: str
    message: str
    details: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    deliveries: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """Masked: what the CLI prints."""
        from yinqi.alert_routing import clean

        facts = clean(AlertFacts(id=self.id, kind=self.kind, severity=self.severity,
                                 subject=self.subject, message=self.message,
                                 created_at=self.created_at, details=self.details))
        return {"id": self.id, "kind": facts.kind, "severity": self.severity,
                "subject": facts.subject, "message": facts.message,
                "details": dict(facts.details),
                "created_at": self.created_at.isoformat(),
                "delivered_at": _iso(self.delivered_at),
                "acknowledged_by": self.acknowledged_by,
                "acknowledged_at": _iso(self.acknowledged_at),
                "deliveries": [{**d, "last_error": redact(d["last_error"])
                                if d["last_error"] else None,
                                "next_attempt_at": _iso(d["next_attempt_at"]),
                                "delivered_at": _iso(d["delivered_at"])}
                               for d in self.deliveries]}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def alert_log(session: Session, *, open_only: bool = False, limit: int = 50,
              kind: str | None = None) -> list[LogEntry]:
    """The newest ``limit`` alerts (open: not acknowledged), each with its deliveries."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if open_only:
        query = query.where(Alert.acknowledged_at.is_(None))
    if kind is not None:
        query = query.where(Alert.kind == kind)
    alerts = list(session.scalars(query))
    by_alert: dict[int, list[dict[str, Any]]] = {}
    if alerts:
        for d in session.scalars(select(AlertDelivery).where(
                AlertDelivery.alert_id.in_([a.id for a in alerts]))
                .order_by(AlertDelivery.id)):
            by_alert.setdefault(d.alert_id, []).append(
                {"channel": d.channel, "target": d.target, "status": d.status,
                 "attempts": d.attempts, "last_error": d.last_error,
                 "next_attempt_at": d.next_attempt_at, "delivered_at": d.delivered_at})
    return [LogEntry(a.id, a.kind, a.severity, a.subject, a.message, dict(a.details or {}),
                     a.created_at, a.delivered_at, a.acknowledged_by, a.acknowledged_at,
                     by_alert.get(a.id, [])) for a in alerts]


@dataclass
class Acknowledged:
    done: list[int] = field(default_factory=list)
    already: list[tuple[int, str, datetime]] = field(default_factory=list)


def acknowledge(session: Session, audit: Any, ids: Iterable[int], *, actor: str,
                note: str | None, now: datetime) -> Acknowledged:
    """Mark alerts as seen by ``actor`` (audited, with the note); InvalidValue, and nothing
    changed, if an id does not exist. Deliveries still due go on: others may not know yet."""
    wanted = sorted(set(ids))
    rows = {a.id: a for a in session.scalars(
        select(Alert).where(Alert.id.in_(wanted)).with_for_update())}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise InvalidValue(f"no alert #{missing[0]}" + (
            f" (and {len(missing) - 1} more unknown)" if len(missing) > 1 else ""))
    out = Acknowledged()
    for aid in wanted:
        row = rows[aid]
        if row.acknowledged_at is not None:
            out.already.append((aid, row.acknowledged_by or "?", row.acknowledged_at))
            continue
        row.acknowledged_by, row.acknowledged_at = actor, now
        out.done.append(aid)
    if out.done:
        session.flush()
        audit.append(session, actor=actor, action="alert.acknowledged", subject_type="alert",
                     subject_ids=out.done,
                     details={"note": redact(note)[:500] if note else None,
                              "kinds": sorted({rows[i].kind for i in out.done})}, at=now)
    return out
