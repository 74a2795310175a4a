"""Running the ``yinqi`` command as an operator would: a real process."""

from __future__ import annotations

import subprocess
import sys


def yinqi(*args: str, env: dict[str, str], check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "yinqi", *args], env=env, text=True,
                          capture_output=True, timeout=180)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
