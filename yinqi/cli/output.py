"""Console output shared by the commands."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail_line(message: str) -> None:
    # One line, even if a message from below carries a newline: operators grep these. A
    # message from below may quote a bank's text or a file's cell: account numbers masked.
    from yinqi.security.masking import redact

    err_console.print(f"yinqi: error: {redact(' '.join(message.split()))}", markup=False,
                      soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
