"""Which channels get an alert, and what they are sent: pure functions, no I/O.

Every text leaving Yinqi in an alert passes :func:`clean` first, which masks anything that
looks like an account number (``****1234``): the raisers of alerts mask already, this is the
last safety net under them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from config.alerts import SEVERITIES, Channel, Retry
from yinqi.security.masking import redact

TEST_KIND = "alerts.test"
"""Sent by ``yinqi alerts test`` to the channels named in its details, and to no other."""

# What each kind means and what to do about it; shown in messages and in docs/alerts.md.
ADVICE: dict[str, str] = {
    "alerts.test": "A test sent by `yinqi alerts test`; nothing to do.",
    "approval.overdue": "Payments waited longer than escalate_after_hours at one approval "
                        "level: remind the approvers named in next_roles, or reject.",
    "audit.state_mismatch": "Payment states differ from the audit trail (edited in the "
                            "database?): stop payment runs, run `yinqi audit verify`, "
                            "investigate who changed the rows.",
    "backup.broken_chain": "A backup cannot be restored because a backup it builds on is "
                           "missing: find out who deleted it; the next backup starts a new "
                           "chain by itself (`yinqi backup list`, docs/backup.md).",
    "backup.chain_restarted": "An incremental backup was due but a full one was taken (the "
                              "chain was broken or the schema changed): nothing to do unless "
                              "it happens again.",
    "backup.drill_failed": "The restore drill could not restore the newest backup: run `yinqi "
                           "backup verify`, take a full backup now (`yinqi backup create "
                           "--full`), and find out what damaged the backup.",
    "backup.sending_frozen": "The database was restored from a backup, so payments made after "
                             "it may already be at the bank: every company account is frozen. "
                             "Check each account's bank transactions since the backup was "
                             "taken, then `yinqi backup release ACCOUNT|--all`.",
    "backup.stale": "The newest backup is more than a day and a half old: check that the "
                    "backup-nightly deployment is served and its runs succeed.",
    "backup.unreadable": "A backup's manifest does not authenticate (damaged, or made with "
                         "another master secret): it is kept; compare it with an off-site "
                         "copy, then delete it by hand.",
    "bank.bad_answer": "A bank answer was malformed, unsigned or failed its signature check: "
                       "the payments stay UNKNOWN; check the bank's signing certificate and "
                       "ask the bank before doing anything else.",
    "bank.certificate": "The channel to this bank cannot be opened: our TLS client "
                        "certificate or the bank's CA expired or is missing, the bank refused "
                        "our certificate, or its own did not verify. Nothing reaches this "
                        "bank (its batches wait with the reason in last_error; other banks "
                        "go on) until the certificates are renewed (`yinqi bank test BANK`, "
                        "docs/certificates.md); the next run or sweep carries them on.",
    "batch.file_tampered": "A signed payment file changed or vanished after signing and was "
                           "not sent: treat as a security incident, compare it with the "
                           "archive and the audit log.",
    "batch.invalid_file": "A batch's payment file cannot be built (a value the bank's "
                          "schema refuses); it was set aside (INVALID), nothing was signed "
                          "or sent, the other batches went on. `yinqi batches dissolve "
                          "BATCH --reason ...` returns its payments to the next run and "
                          "holds those that cause it; reject those (`yinqi risk reject`) and "
                          "enter them again corrected.",
    "batch.refused": "The bank refused a whole batch: read the reason, correct "
                     "(`yinqi payments fix`) and rerun (`yinqi batches rerun`).",
    "key.cannot_sign": "Our signing key cannot sign payment orders (its certificate expired "
                       "or is not yet valid, or the key is missing or does not open): no new "
                       "batch is signed; batches signed before are still sent. An "
                       "administrator rotates it (`yinqi keys rotate`) and registers the new "
                       "certificate with the bank (docs/keys.md).",
    "payment.held": "Payments were held before batching (approvals no longer match the "
                    "payment, or maker-checker broken): review and approve again or reject.",
    "payment.returned": "The bank returned settled payments (退票): the money is back in the "
                        "account and the payments are RETURNED, which is final. Ask the bank "
                        "or the payee why, then pay with a new voucher (new voucher number) "
                        "carrying the corrected details; the risk screen may hold it as a "
                        "duplicate of the returned one (`yinqi risk release`).",
    "receipt.bad_signature": "Bank receipts failed their signature check and were not "
                             "stored: ask the bank; do not trust those documents.",
    "security.code_lockout": "A user was locked after repeated wrong one-time codes: confirm "
                             "with the person; if it was not them, treat it as an attack.",
    "security.login_lockout": "A user was locked after repeated failed logins: confirm with "
                              "the person; if it was not them, treat it as an attack.",
    "statement.quarantined": "A bank statement failed its data-quality checks and is not "
                             "used: `yinqi statements show ID`, fetch it again or ask the bank.",
    # One per rule of risk_rules.toml; the action (alert, hold, freeze) is in the details.
    "risk.large_single_amount": "A payment at or above the single-amount threshold: check it "
                                "with the maker; release (`yinqi risk release`) or reject.",
    "risk.daily_total_per_payee": "Payments to one payee crossed the daily total: check they "
                                  "belong together; release or reject.",
    "risk.new_payee": "The first payment ever to this payee account: confirm the account with "
                      "the payee through a known channel (not the invoice's).",
    "risk.payee_account_changed": "The payee's account changed recently, a classic fraud: "
                                  "confirm the change by phone to a known number.",
    "risk.duplicate_payment": "Same payee, amount and currency as a recent payment: reject "
                              "the duplicate or release it if both are due.",
    "risk.split_payments": "Several payments to one payee together cross the threshold: look "
                           "for a large payment cut up to stay under the limits.",
    "risk.blacklist": "A payee account or name on the blacklist: do not pay; unfreezing takes "
                      "two people (`yinqi risk unfreeze`).",
    "risk.out_of_hours": "A payment entered or approved outside business hours: confirm with "
                         "the people named in the audit log.",
    "risk.repeated_failures": "Repeated failures (bank rejections to one payee, or failed "
                              "logins of one user): find the cause before anything is retried.",
    "risk.new_login_location": "A user logged in from a place not seen before: confirm with "
                               "the person (`yinqi users sessions USER` shows where from); "
                               "if it was not them, end their sessions with a new password "
                               "(`yinqi users set-password USER`) or authenticator (`yinqi "
                               "users enrol USER`).",
}

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_MAX_DETAIL_CHARS = 300
_MAX_DETAILS = 30
WECOM_MAX_BYTES = 4096
DINGTALK_MAX_CHARS = 5000


@dataclass(frozen=True)
class AlertFacts:
    """An alert as the routing and the messages see it (a row of the ``alerts`` table)."""

    id: int
    kind: str
    severity: str
    subject: str
    message: str
    created_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)


def severity_rank(severity: str) -> int:
    """0 for info ... 2 for critical; an unknown severity counts as critical: better told
    too often than never."""
    return _RANK.get(severity, len(SEVERITIES) - 1)


def wants(channel: Channel, alert: AlertFacts) -> bool:
    """Whether ``channel`` (enabled or not) takes ``alert`` by its severity and kinds."""
    if alert.kind == TEST_KIND:
        return channel.name in (alert.details.get("channels") or ())
    if severity_rank(alert.severity) < severity_rank(channel.min_severity):
        return False
    return not channel.kinds or any(fnmatchcase(alert.kind, p) for p in channel.kinds)


def route(alert: AlertFacts, channels: Sequence[Channel]) -> list[str]:
    """Names of the enabled channels that get ``alert``, in the file's order."""
    return [c.name for c in channels if c.enabled and wants(c, alert)]


# --- masking -----------------------------------------------------------------------------


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # An account number stored as a number is still an account number.
        text = str(value)
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {redact(str(k)): _clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in value]
    return redact(str(value))


def clean(alert: AlertFacts) -> AlertFacts:
    """``alert`` with every account-number-like run masked in subject, message and details."""
    return replace(alert, subject=redact(alert.subject), message=redact(alert.message),
                   kind=redact(alert.kind), details=_clean_value(dict(alert.details)))


# --- messages ----------------------------------------------------------------------------


def _when(alert: AlertFacts, timezone: str | None) -> str:
    utc = f"{alert.created_at:%Y-%m-%d %H:%M:%S} UTC"
    if timezone is None:
        return utc
    local = alert.created_at.astimezone(ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M:%S} {timezone} ({utc})"


def _detail_lines(details: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in list(details.items())[:_MAX_DETAILS]:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                default=str)
        if len(text) > _MAX_DETAIL_CHARS:
            text = text[:_MAX_DETAIL_CHARS - 1] + "…"
        lines.append(f"{key}: {text}")
    if len(details) > _MAX_DETAILS:
        lines.append(f"… {len(details) - _MAX_DETAILS} more")
    return lines


def _advice(kind: str) -> str:
    return ADVICE.get(kind, "See docs/alerts.md.")


def render_email(alert: AlertFacts, timezone: str | None = None) -> tuple[str, str]:
    """Subject and plain-text body of the e-mail for ``alert`` (masked)."""
    a = clean(alert)
    subject = f"[Yinqi {a.severity.upper()}] {a.kind}: {a.subject}"
    lines = [f"Yinqi alert #{a.id}: {a.severity.upper()} {a.kind}", "", a.subject, "",
             a.message, ""]
    if a.details:
        lines += ["Details:", *(f"  {line}" for line in _detail_lines(a.details)), ""]
    lines += [f"Raised: {_when(a, timezone)}", f"What to do: {_advice(a.kind)}",
              f"Acknowledge: yinqi alerts ack {a.id} --as YOUR.NAME", "",
              "-- ", "Sent by Yinqi. Every alert is also in `yinqi alerts list`."]
    return " ".join(subject.split())[:250], "\n".join(lines) + "\n"


def generic_body(alert: AlertFacts) -> dict[str, Any]:
    a = clean(alert)
    return {"id": a.id, "kind": a.kind, "severity": a.severity, "subject": a.subject,
            "message": a.message, "details": a.details,
            "created_at": a.created_at.isoformat()}


def _chat_safe(text: str) -> str:
    # Alert texts can carry a bank's free text: it is data, never markup of the chat client.
    return text.replace("<", "＜").replace(">", "＞")


def _markdown(a: AlertFacts, timezone: str | None, title: str) -> list[str]:
    lines = [title, "", f"**{_chat_safe(a.subject)}**", "", _chat_safe(a.message), ""]
    lines += [f"> {_chat_safe(line)}" for line in _detail_lines(a.details)[:10]]
    lines += ["", f"Raised {_when(a, timezone)}", "",
              _chat_safe(_advice(a.kind)), "", f"`yinqi alerts ack {a.id}`"]
    return lines


_WECOM_COLOUR = {"info": "info", "warning": "comment", "critical": "warning"}


def wecom_body(alert: AlertFacts, timezone: str | None = None) -> dict[str, Any]:
    a = clean(alert)
    colour = _WECOM_COLOUR.get(a.severity, "warning")
    title = (f'### Yinqi <font color="{colour}">{a.severity.upper()}</font> '
             f"{_chat_safe(a.kind)} #{a.id}")
    content = "\n".join(_markdown(a, timezone, title))
    raw = content.encode("utf-8")
    if len(raw) > WECOM_MAX_BYTES:
        content = raw[:WECOM_MAX_BYTES - 4].decode("utf-8", "ignore") + "\n…"
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_body(alert: AlertFacts, timezone: str | None = None) -> dict[str, Any]:
    a = clean(alert)
    title = f"Yinqi {a.severity.upper()} {a.kind}"
    text = "\n".join(_markdown(a, timezone, f"### {_chat_safe(title)} #{a.id}"))
    if len(text) > DINGTALK_MAX_CHARS:
        text = text[:DINGTALK_MAX_CHARS - 2] + "\n…"
    return {"msgtype": "markdown", "markdown": {"title": _chat_safe(title)[:100], "text": text}}


def webhook_body(fmt: str, alert: AlertFacts, timezone: str | None = None) -> dict[str, Any]:
    if fmt == "wecom":
        return wecom_body(alert, timezone)
    if fmt == "dingtalk":
        return dingtalk_body(alert, timezone)
    return generic_body(alert)


# --- signatures and answers --------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>")); sent as the
    ``sign`` query parameter beside ``timestamp`` (URL-encoding is the HTTP client's job)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def generic_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>"): X-Yinqi-Signature."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def answer_problem(fmt: str, status: int, text: str) -> str | None:
    """Why a webhook's answer is a failure, or None when the alert was taken."""
    snippet = " ".join(text.split())[:200]
    if not 200 <= status < 300:
        return f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    if fmt not in ("wecom", "dingtalk"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return f"HTTP {status} but the answer is not JSON: {snippet}"
    code = data.get("errcode") if isinstance(data, dict) else None
    if code != 0:
        reason = data.get("errmsg", "") if isinstance(data, dict) else ""
        return f"{fmt} answered errcode {code}: {reason}"[:300]
    return None


def public_url(url: str) -> str:
    """``url`` without its query and fragment: WeCom keys and DingTalk tokens live there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def backoff_seconds(failures: int, retry: Retry, rng: random.Random) -> float:
    """Wait after the ``failures``-th failed attempt: doubling from the base up to the
    ceiling, shortened by a random share of up to ``retry.jitter``."""
    delay = min(retry.backoff_max_seconds,
                retry.backoff_base_seconds * 2 ** max(0, min(failures - 1, 62)))
    return delay * (1 - retry.jitter * rng.random())
