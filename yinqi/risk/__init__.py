"""Payment risk rules (pure, vectorised over chunks with pandas) and the screen combining them.

The store side, which loads the history, records hits and carries out alerts, holds and
freezes, is :mod:`yinqi.store.risk`. Login rules live with the login code.

The rules need pandas; its import is deferred to the first use of a rule (every ``yinqi``
command imports this package, most never screen anything).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from yinqi.risk.stages import Stage

_LAZY = {"Hit": "rules", "frame": "rules", "normalise_account": "rules",
         "normalise_name": "rules", "Inputs": "screen", "Verdict": "screen",
         "verdicts": "screen"}

# The screen function itself: `yinqi.risk.screen.screen` (its module shares the name).
__all__ = ["Hit", "Inputs", "Stage", "Verdict", "frame", "normalise_account", "normalise_name",
           "verdicts"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"yinqi.risk.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'yinqi.risk' has no attribute {name!r}")
