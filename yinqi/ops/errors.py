"""The one error the process supervision of ``yinqi up`` raises on purpose."""

from __future__ import annotations

from yinqi.errors import YinqiError


class OpsError(YinqiError):
    """A process of ``yinqi up`` cannot start, died, or cannot be stopped; the message names
    the process, where its log is, and what to do."""
