"""Alerts raised for operators (risk rules, failed checks, escalations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    severity: Severity
    subject: str
    message: str
    details: dict[str, str] = field(default_factory=dict)
