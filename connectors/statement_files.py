"""Statement files by content: camt.052/053/054 (XML) or MT940/MT942 (SWIFT text)."""

from __future__ import annotations

from pathlib import Path

from yinqi.bankdata import Statement
from yinqi.errors import InvalidValue


def parse_file(path: Path) -> list[Statement]:
    """camt.052/053/054 (XML) or MT940/MT942 (text), recognised by content, not by name."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidValue(f"{path}: cannot read ({exc.strerror})") from None
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        from connectors.iso20022.camt import parse_camt

        return parse_camt(data, source=str(path))
    from connectors.mt940 import parse_mt940

    return parse_mt940(data, source=str(path))
