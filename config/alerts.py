"""alerts.toml: where alerts go (e-mail over SMTP, webhooks) and how failed sends are retried.

Secrets never live in the file: it names the environment variables that hold them
(``password_env``, ``secret_env``, ``url_env``), read when a message is sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, Strict

from config._problems import Problem
from config.fields import ConfigModel, Count, FilePath, Flag, Seconds, Text

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
"""Lowest first: a channel gets every alert at or above its ``min_severity``."""

SmtpSecurity = Literal["none", "starttls", "tls"]
WebhookFormat = Literal["generic", "wecom", "dingtalk"]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KIND_PATTERN = re.compile(r"[a-z0-9_.*?-]+")


def _name(value: str) -> str:
    # Names are the `channel` column of the alert log and appear in the CLI: keep them plain.
    if not _NAME.fullmatch(value):
        raise ValueError(f"channel name {value!r} must be 1-64 lowercase letters, digits, "
                         "'.', '_' or '-', like 'treasury-mail'")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be the name of an environment variable like "
                         f"'YINQI_SMTP_PASSWORD', not its value (got {len(value)} characters)")
    return value


def _address(value: str) -> str:
    _display, address = parseaddr(value)
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", address):
        raise ValueError(f"must be an e-mail address like 'treasury@example.com' "
                         f"(got {value!r})")
    return value


def _kind_pattern(value: str) -> str:
    if not _KIND_PATTERN.fullmatch(value):
        raise ValueError(f"must be an alert kind like 'payment.returned' or a pattern like "
                         f"'payment.*' (got {value!r})")
    return value


def is_loopback(host: str) -> bool:
    """True for this machine's own addresses (where clear text never crosses a network)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """``url`` if Yinqi may post alerts to it, else ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an https:// URL (got {url[:60]!r})")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("must be an https:// URL; plain http is only allowed towards this "
                         f"machine (127.0.0.1, localhost), got host {parts.hostname!r}")
    if parts.username or parts.password:
        raise ValueError("must not contain a user name or password; put a URL that carries "
                         "a secret in an environment variable and name it in url_env")
    try:
        parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url


ChannelName = Annotated[str, Strict(), AfterValidator(_name)]
EnvName = Annotated[str, Strict(), AfterValidator(_env_name)]
Address = Annotated[str, Strict(), AfterValidator(_address)]
KindPattern = Annotated[str, Strict(), AfterValidator(_kind_pattern)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Share = Annotated[float, Field(ge=0, le=1)]


class Channel(ConfigModel):
    """What every channel has: a name, on or off, and which alerts it takes."""

    name: ChannelName
    enabled: Flag = True
    min_severity: Severity = "warning"
    # Alert kinds or shell-style patterns ("payment.*"); empty: every kind.
    kinds: tuple[KindPattern, ...] = ()
    timeout_seconds: Seconds = 20.0
    # A private CA to trust instead of the system's (PEM).
    ca_file: FilePath | None = None


class EmailChannel(Channel):
    host: Text
    port: Port = 587
    security: SmtpSecurity = "starttls"
    from_: Address = Field(alias="from")
    to: Annotated[tuple[Address, ...], Field(min_length=1)]
    username: Text | None = None
    password_env: EnvName | None = None

    @property
    def target(self) -> str:
        return f"smtp://{self.host}:{self.port} to {', '.join(self.to)}"


class WebhookChannel(Channel):
    format: WebhookFormat = "generic"
    # One of the two: the URL itself, or the environment variable holding it (WeCom's `key`
    # and DingTalk's `access_token` are secrets that travel in the URL).
    url: Annotated[str, Strict(), AfterValidator(check_webhook_url)] | None = None
    url_env: EnvName | None = None
    # DingTalk: the robot's signing secret (加签, SEC...); generic: the key of the
    # X-Yinqi-Signature HMAC header.
    secret_env: EnvName | None = None


class Retry(ConfigModel):
    max_attempts: Count = 6
    backoff_base_seconds: Seconds = 60.0
    backoff_max_seconds: Seconds = 3600.0
    jitter: Share = 0.2


class Delivery(ConfigModel):
    lease_seconds: Seconds = 300.0
    route_within_hours: Count = 72


class AlertsConfig(ConfigModel):
    retry: Retry = Retry()
    delivery: Delivery = Delivery()
    email: tuple[EmailChannel, ...] = ()
    webhooks: tuple[WebhookChannel, ...] = ()

    @property
    def channels(self) -> tuple[EmailChannel | WebhookChannel, ...]:
        """Every channel, enabled or not, e-mail first, in file order."""
        return (*self.email, *self.webhooks)

    def channel(self, name: str) -> EmailChannel | WebhookChannel | None:
        return next((c for c in self.channels if c.name == name), None)


def alerts_problems(config: AlertsConfig) -> Iterator[Problem]:
    seen: dict[str, tuple[str, int]] = {}
    entries = [("email", n, c) for n, c in enumerate(config.email)]
    entries += [("webhooks", n, c) for n, c in enumerate(config.webhooks)]
    for table, n, channel in entries:
        if channel.name in seen:
            first = "{}[{}]".format(*seen[channel.name])
            yield Problem((table, n, "name"),
                          f"channel name {channel.name!r} is already used by {first}")
        seen.setdefault(channel.name, (table, n))
        if channel.timeout_seconds * 2 > config.delivery.lease_seconds:
            yield Problem((table, n, "timeout_seconds"),
                          f"{channel.timeout_seconds:g} s is more than half of "
                          f"delivery.lease_seconds ({config.delivery.lease_seconds:g} s): a "
                          "slow send could outlive its claim and be sent twice")
    for n, mail in enumerate(config.email):
        yield from _email_problems(n, mail)
    for n, hook in enumerate(config.webhooks):
        yield from _webhook_problems(n, hook)
    if config.retry.backoff_max_seconds < config.retry.backoff_base_seconds:
        yield Problem(("retry", "backoff_max_seconds"),
                      f"{config.retry.backoff_max_seconds:g} s is below backoff_base_seconds "
                      f"({config.retry.backoff_base_seconds:g} s)")


def _email_problems(n: int, mail: EmailChannel) -> Iterator[Problem]:
    where = ("email", n)
    if (mail.username is None) != (mail.password_env is None):
        missing = "password_env" if mail.password_env is None else "username"
        yield Problem((*where, missing),
                      "username and password_env go together: give both or neither")
    if mail.security == "none" and mail.username is not None and not is_loopback(mail.host):
        yield Problem((*where, "security"),
                      f'"none" would send the password to {mail.host} in clear text; use '
                      '"starttls" or "tls"')


def _webhook_problems(n: int, hook: WebhookChannel) -> Iterator[Problem]:
    where = ("webhooks", n)
    if (hook.url is None) == (hook.url_env is None):
        yield Problem((*where, "url"), "give exactly one of url and url_env")
    if hook.secret_env is not None and hook.format == "wecom":
        yield Problem((*where, "secret_env"),
                      "WeCom robots do not sign requests (the key is in the URL); remove "
                      "secret_env and put the URL in url_env")
