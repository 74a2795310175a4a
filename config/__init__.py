"""Yinqi's configuration: ``YINQI_*`` settings and the TOML files that describe banks, the
company's accounts, the approval policy and the risk rules.

Every fault surfaces as a one-line :class:`yinqi.errors.ConfigError` naming the file (or
environment variable), the key and what is wrong.
"""

from config.accounts import AccountConfig, Company
from config.alerts import AlertsConfig, EmailChannel, WebhookChannel
from config.backup import BackupConfig, BackupSchedules
from config.banks import BankConfig, Dialect
from config.loader import YinqiConfig, load_config
from config.policy import PAYMENT_CATEGORIES, ROLES, ApprovalPolicy, CategoryPolicy, Tier
from config.risk import (
    AmountRule,
    BlacklistRule,
    OutOfHoursRule,
    RepeatedFailuresRule,
    RiskAction,
    RiskRule,
    RiskRules,
    SplitPaymentsRule,
    WithinDaysRule,
)
from config.settings import Settings, load_settings

__all__ = [
    "PAYMENT_CATEGORIES",
    "ROLES",
    "AccountConfig",
    "AlertsConfig",
    "BackupConfig",
    "BackupSchedules",
    "AmountRule",
    "ApprovalPolicy",
    "BankConfig",
    "BlacklistRule",
    "CategoryPolicy",
    "Company",
    "Dialect",
    "EmailChannel",
    "OutOfHoursRule",
    "RepeatedFailuresRule",
    "RiskAction",
    "RiskRule",
    "RiskRules",
    "Settings",
    "SplitPaymentsRule",
    "Tier",
    "WebhookChannel",
    "WithinDaysRule",
    "YinqiConfig",
    "load_config",
    "load_settings",
]
