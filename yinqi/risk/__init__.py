"""Payment risk rules (pure, vectorised over chunks with pandas) and the screen combining them.

The store side, which loads the history, records hits and carries out alerts, holds and
freezes, is :mod:`yinqi.store.risk`. Login rules live with the login code.
"""

from yinqi.risk.rules import Hit, frame, normalise_account, normalise_name
from yinqi.risk.screen import Inputs, Stage, Verdict, screen, verdicts

__all__ = ["Hit", "Inputs", "Stage", "Verdict", "frame", "normalise_account", "normalise_name",
           "screen", "verdicts"]
