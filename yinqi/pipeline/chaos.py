"""Kill points for the chaos test: the process dies (SIGKILL) at a seeded random point.

Off unless ``YINQI_CHAOS_KILL`` is set ("<seed>:<probability>"), which only the chaos test
does. The points sit where a crash hurts most: after the intent to send is committed, after
the bank answered but before the answer is recorded, and so on.
"""

from __future__ import annotations

import os
import random
import signal

_plan: tuple[random.Random, float] | None = None
_read = False


def point(name: str) -> None:
    global _plan, _read
    if not _read:
        _read = True
        spec = os.environ.get("YINQI_CHAOS_KILL")
        if spec:
            seed, probability = spec.split(":")
            _plan = (random.Random(f"{seed}:{os.getpid()}"), float(probability))
    if _plan is not None and _plan[0].random() < _plan[1]:
        os.kill(os.getpid(), signal.SIGKILL)
