"""Alerts without I/O: alerts.toml, which channel gets which alert, the messages, back-off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config import load_config, load_settings
from config.alerts import AlertsConfig, Retry
from config.loader import DEFAULTS_DIR
from yinqi.alert_routing import (
    ADVICE,
    TEST_KIND,
    WECOM_MAX_BYTES,
    AlertFacts,
    answer_problem,
    backoff_seconds,
    clean,
    dingtalk_body,
    dingtalk_sign,
    generic_body,
    generic_signature,
    public_url,
    render_email,
    route,
    wecom_body,
)
from yinqi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "6222021234567890123"
IBAN = "DE89370400440532013000"
AT = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def alert(kind: str = "payment.returned", severity: str = "critical",
          **more: Any) -> AlertFacts:
    fields: dict[str, Any] = {"id": 42, "kind": kind, "severity": severity,
                              "subject": "2 payment(s) returned by the bank (退票)",
                              "message": "check the payee details", "created_at": AT,
                              "details": {"payment_ids": [7, 8]}}
    fields.update(more)
    return AlertFacts(**fields)


def channels(*tables: str) -> AlertsConfig:
    """A config whose webhooks are the given TOML fragments (name/url filled in)."""
    hooks = []
    for n, extra in enumerate(tables):
        hooks.append({"name": f"hook{n}", "url": f"https://hooks.example.com/{n}",
                      **_toml_fragment(extra)})
    return AlertsConfig.model_validate({"webhooks": hooks})


def _toml_fragment(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


# --- routing ------------------------------------------------------------------------------


def test_a_channel_gets_alerts_at_or_above_its_min_severity() -> None:
    cfg = channels('min_severity = "info"', 'min_severity = "warning"',
                   'min_severity = "critical"')
    assert route(alert(severity="info"), cfg.channels) == ["hook0"]
    assert route(alert(severity="warning"), cfg.channels) == ["hook0", "hook1"]
    assert route(alert(severity="critical"), cfg.channels) == ["hook0", "hook1", "hook2"]


def test_kinds_narrow_a_channel_to_matching_kinds() -> None:
    cfg = channels('kinds = ["payment.*", "security.code_lockout"]', "")
    assert route(alert(kind="payment.returned"), cfg.channels) == ["hook0", "hook1"]
    assert route(alert(kind="security.code_lockout"), cfg.channels) == ["hook0", "hook1"]
    assert route(alert(kind="statement.quarantined"), cfg.channels) == ["hook1"]
    # A pattern is matched whole: "payment.*" does not take "payments.x" or "xpayment.y".
    assert route(alert(kind="xpayment.returned"), cfg.channels) == ["hook1"]


def test_disabled_channels_get_nothing() -> None:
    cfg = channels("enabled = false", "")
    assert route(alert(), cfg.channels) == ["hook1"]


def test_an_unknown_severity_counts_as_critical() -> None:
    cfg = channels('min_severity = "critical"')
    assert route(alert(severity="fatal"), cfg.channels) == ["hook0"]


def test_a_test_alert_goes_only_to_the_channels_it_names() -> None:
    cfg = channels('min_severity = "info"', 'min_severity = "info"', "enabled = false")
    test = alert(kind=TEST_KIND, severity="info", details={"channels": ["hook1", "hook2"]})
    # hook2 is disabled: a test of it is sent by `yinqi alerts test` directly, never routed.
    assert route(test, cfg.channels) == ["hook1"]


# --- masking and messages -------------------------------------------------------------------


def leaky() -> AlertFacts:
    return alert(subject=f"statement 77 of {ACCOUNT}",
                 message=f"payee account {ACCOUNT} / IBAN {IBAN} on 2026-11-25, amount 1234.56",
                 details={"account": ACCOUNT, "as_number": int(ACCOUNT),
                          "nested": {ACCOUNT: [f"to {ACCOUNT}"]}, "batch_id": 3,
                          "payment_ids": [1, 2, 3]})


def test_clean_masks_account_numbers_everywhere_and_keeps_the_rest() -> None:
    facts = clean(leaky())
    text = json.dumps([facts.subject, facts.message, facts.details], ensure_ascii=False)
    assert ACCOUNT not in text and IBAN not in text and ACCOUNT[-12:] not in text
    assert "****0123" in facts.subject
    assert facts.details["account"] == "****0123"
    assert facts.details["as_number"] == "****0123"
    assert facts.details["nested"] == {"****0123": ["to ****0123"]}
    # Dates, amounts and small ids stay readable.
    assert "2026-11-25" in facts.message and "1234.56" in facts.message
    assert facts.details["batch_id"] == 3 and facts.details["payment_ids"] == [1, 2, 3]


def test_email_subject_and_body() -> None:
    subject, body = render_email(leaky(), "Asia/Shanghai")
    assert subject == "[Yinqi CRITICAL] payment.returned: statement 77 of ****0123"
    assert ACCOUNT not in subject + body and IBAN not in body
    assert "Yinqi alert #42: CRITICAL payment.returned" in body
    assert "2026-11-25 16:30:00 Asia/Shanghai (2026-11-25 08:30:00 UTC)" in body
    assert ADVICE["payment.returned"] in body
    assert "yinqi alerts ack 42 --as" in body
    assert "  batch_id: 3" in body and "  payment_ids: [1, 2, 3]" in body


def test_email_subject_is_one_line_even_if_the_alert_subject_is_not() -> None:
    subject, _ = render_email(alert(subject="two\nlines"))
    assert "\n" not in subject and subject.endswith("two lines")


def test_generic_body_has_exactly_the_documented_keys() -> None:
    body = generic_body(leaky())
    assert set(body) == {"kind", "severity", "subject", "message", "details", "created_at",
                         "id"}
    assert body["id"] == 42 and body["created_at"] == "2026-11-25T08:30:00+00:00"
    assert body["subject"] == "statement 77 of ****0123"
    assert ACCOUNT not in json.dumps(body)


def test_wecom_body() -> None:
    body = wecom_body(leaky(), "Asia/Shanghai")
    assert body["msgtype"] == "markdown" and set(body) == {"msgtype", "markdown"}
    content = body["markdown"]["content"]
    assert content.startswith('### Yinqi <font color="warning">CRITICAL</font> '
                              "payment.returned #42")
    assert "statement 77 of ****0123" in content and ACCOUNT not in content


def test_wecom_body_stays_under_its_byte_limit_and_bank_text_is_not_markup() -> None:
    huge = alert(message="<font color=\"info\">fake</font> " + "退票" * 5000)
    content = wecom_body(huge)["markdown"]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MAX_BYTES
    assert '<font color="info">fake' not in content and "＜font" in content


def test_dingtalk_body() -> None:
    body = dingtalk_body(leaky())
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "Yinqi CRITICAL payment.returned"
    text = body["markdown"]["text"]
    assert "Yinqi" in text  # DingTalk robots with the keyword setting need it in every text
    assert "****0123" in text and ACCOUNT not in text


def test_dingtalk_signature_follows_the_documented_recipe() -> None:
    secret, ts = "SECa1b2c3", 1732521600000
    expected = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert dingtalk_sign(secret, ts) == expected
    assert dingtalk_sign(secret, ts + 1) != expected


def test_generic_signature() -> None:
    sig = generic_signature("k", 1700000000, b'{"a":1}')
    assert sig == "sha256=" + hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("fmt", "status", "text", "problem"), [
    ("generic", 200, "", None),
    ("generic", 204, "", None),
    ("generic", 500, "boom", "HTTP 500: boom"),
    ("generic", 302, "", "HTTP 302"),
    ("wecom", 200, '{"errcode":0,"errmsg":"ok"}', None),
    ("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}',
     "wecom answered errcode 93000: invalid webhook url"),
    ("dingtalk", 200, '{"errcode":310000,"errmsg":"sign not match"}',
     "dingtalk answered errcode 310000: sign not match"),
    ("dingtalk", 200, "<html>", "HTTP 200 but the answer is not JSON: <html>"),
    ("dingtalk", 200, "{}", "dingtalk answered errcode None: "),
])
def test_answers(fmt: str, status: int, text: str, problem: str | None) -> None:
    assert answer_problem(fmt, status, text) == problem


def test_public_url_drops_the_secret_parts() -> None:
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx#x"
    assert public_url(url) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    assert public_url("http://127.0.0.1:8080/a?t=1") == "http://127.0.0.1:8080/a"


def test_backoff_doubles_up_to_the_ceiling() -> None:
    retry = Retry(backoff_base_seconds=60, backoff_max_seconds=600, jitter=0)
    rng = random.Random(1)
    assert [backoff_seconds(n, retry, rng) for n in range(1, 7)] == [60, 120, 240, 480, 600,
                                                                      600]


def test_jitter_only_shortens_and_spreads() -> None:
    retry = Retry(backoff_base_seconds=100, backoff_max_seconds=100, jitter=0.5)
    rng = random.Random(7)
    waits = [backoff_seconds(3, retry, rng) for _ in range(200)]
    assert all(50 <= w <= 100 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100


# --- alerts.toml ----------------------------------------------------------------------------


def test_shipped_alerts_toml_documents_channels_but_enables_none(tmp_path: Path) -> None:
    cfg = load_config(load_settings(home=tmp_path)).alerts
    assert cfg.email and cfg.webhooks
    assert {h.format for h in cfg.webhooks} == {"generic", "wecom", "dingtalk"}
    assert not any(c.enabled for c in cfg.channels)
    assert cfg.retry.max_attempts == 6 and cfg.delivery.lease_seconds == 300
    text = (DEFAULTS_DIR / "alerts.toml").read_text(encoding="utf-8")
    for key in ("password_env", "secret_env", "url_env", "min_severity", "kinds", "security",
                "backoff_base_seconds", "backoff_max_seconds", "jitter", "max_attempts"):
        assert key in text


GOOD_EMAIL = '''
[[email]]
name = "mail"
host = "smtp.example.com"
port = 587
from = "Yinqi <yinqi@example.com>"
to = ["a@example.com"]
username = "yinqi"
password_env = "YINQI_SMTP_PASSWORD"
'''


def load(tmp_path: Path, text: str) -> AlertsConfig:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "alerts.toml").write_text(text, encoding="utf-8")
    return load_config(load_settings(home=tmp_path / "home", config_dir=etc)).alerts


def fault(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    line = str(caught.value)
    assert "\n" not in line and "pydantic" not in line
    assert line.startswith(f"{tmp_path / 'etc' / 'alerts.toml'}: ")
    return line.split("alerts.toml: ", 1)[1]


def test_a_good_email_channel_loads(tmp_path: Path) -> None:
    mail = load(tmp_path, GOOD_EMAIL).email[0]
    assert (mail.from_, mail.to, mail.security, mail.min_severity) == (
        "Yinqi <yinqi@example.com>", ("a@example.com",), "starttls", "warning")
    assert mail.enabled is True


@pytest.mark.parametrize(("text", "problem"), [
    (GOOD_EMAIL.replace('password_env = "YINQI_SMTP_PASSWORD"\n', ""),
     "email[0].password_env: username and password_env go together: give both or neither"),
    (GOOD_EMAIL.replace('"YINQI_SMTP_PASSWORD"', '"hunter2 hunter2"'),
     "email[0].password_env: must be the name of an environment variable like "
     "'YINQI_SMTP_PASSWORD', not its value (got 15 characters)"),
    (GOOD_EMAIL.replace("port = 587", 'port = 587\nsecurity = "none"'),
     'email[0].security: "none" would send the password to smtp.example.com in clear text; '
     'use "starttls" or "tls"'),
    (GOOD_EMAIL.replace('to = ["a@example.com"]', 'to = []'),
     "email[0].to: must not be empty"),
    (GOOD_EMAIL.replace('"a@example.com"', '"treasury"'),
     "email[0].to[0]: must be an e-mail address like 'treasury@example.com' (got 'treasury')"),
    (GOOD_EMAIL.replace('port = 587', 'port = 587\nmin_severity = "urgent"'),
     "email[0].min_severity: must be 'info', 'warning' or 'critical' (got 'urgent')"),
    (GOOD_EMAIL.replace('name = "mail"', 'name = "Treasury Mail"'),
     "email[0].name: channel name 'Treasury Mail' must be 1-64 lowercase letters, digits, "
     "'.', '_' or '-', like 'treasury-mail'"),
    (GOOD_EMAIL + GOOD_EMAIL.replace("[[email]]", "[[webhooks]]").split("host")[0]
     + 'url = "https://h.example.com/x"\n',
     "webhooks[0].name: channel name 'mail' is already used by email[0]"),
    (GOOD_EMAIL.replace("port = 587", "port = 587\ntimeout_seconds = 200"),
     "email[0].timeout_seconds: 200 s is more than half of delivery.lease_seconds (300 s): a "
     "slow send could outlive its claim and be sent twice"),
    ('[[webhooks]]\nname = "w"\nurl = "http://hooks.example.com/x"\n',
     "webhooks[0].url: must be an https:// URL; plain http is only allowed towards this "
     "machine (127.0.0.1, localhost), got host 'hooks.example.com'"),
    ('[[webhooks]]\nname = "w"\nurl = "https://u:p@hooks.example.com/x"\n',
     "webhooks[0].url: must not contain a user name or password; put a URL that carries a "
     "secret in an environment variable and name it in url_env"),
    ('[[webhooks]]\nname = "w"\n',
     "webhooks[0].url: give exactly one of url and url_env"),
    ('[[webhooks]]\nname = "w"\nurl = "https://h.example.com/"\nurl_env = "HOOK"\n',
     "webhooks[0].url: give exactly one of url and url_env"),
    ('[[webhooks]]\nname = "w"\nformat = "wecom"\nurl_env = "HOOK"\nsecret_env = "S"\n',
     "webhooks[0].secret_env: WeCom robots do not sign requests (the key is in the URL); "
     "remove secret_env and put the URL in url_env"),
    ('[[webhooks]]\nname = "w"\nformat = "slack"\nurl = "https://h.example.com/"\n',
     "webhooks[0].format: must be 'generic', 'wecom' or 'dingtalk' (got 'slack')"),
    ('[retry]\nbackoff_base_seconds = 600\nbackoff_max_seconds = 60\n',
     "retry.backoff_max_seconds: 60 s is below backoff_base_seconds (600 s)"),
    ('[retry]\njitter = 1.5\n',
     "retry.jitter: input should be less than or equal to 1 (got 1.5)"),
    ('[retry]\nmax_attemps = 3\n',
     "retry.max_attemps: unknown key, did you mean 'max_attempts'?"),
])
def test_faults_are_one_line_naming_the_key(tmp_path: Path, text: str, problem: str) -> None:
    assert fault(tmp_path, text) == problem


def test_webhook_over_plain_http_is_fine_towards_this_machine(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[[webhooks]]\nname = "w"\nurl = "http://127.0.0.1:9/x"\n')
    assert cfg.webhooks[0].url == "http://127.0.0.1:9/x"


# --- the kinds of alert the code raises are all documented -----------------------------------

_RAISED = (re.compile(r'Alert\(\s*kind="([a-z_.]+)"'), re.compile(r'_alert\(app, "([a-z_.]+)"'),
           re.compile(r'kind="([a-z_]+\.[a-z_.]+)", severity='),
           re.compile(r'Lockout\("([a-z_]+\.[a-z_.]+)"'))


def raised_kinds() -> set[str]:
    """Kinds written as literals where alerts are raised, and risk.<rule> for every rule."""
    from config.risk import RiskRule, RiskRules

    kinds = {f"risk.{name}" for name, info in RiskRules.model_fields.items()
             if isinstance(info.annotation, type) and issubclass(info.annotation, RiskRule)}
    for path in (ROOT / "yinqi").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _RAISED:
            kinds.update(pattern.findall(text))
    return kinds


def test_every_alert_kind_the_code_raises_is_explained() -> None:
    kinds = raised_kinds()
    assert {"payment.returned", "security.code_lockout", "batch.file_tampered",
            "bank.certificate", "risk.blacklist"} <= kinds
    docs = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    unexplained = sorted(k for k in kinds if k not in ADVICE)
    assert not unexplained, f"add these kinds to yinqi.alert_routing.ADVICE: {unexplained}"
    undocumented = sorted(k for k in kinds | set(ADVICE) if f"`{k}`" not in docs)
    assert not undocumented, f"add these kinds to docs/alerts.md: {undocumented}"
