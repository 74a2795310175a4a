"""What a backup promises about the database, measured the same way before and after.

Row counts, money per payment state and the audit chain's head are computed by these queries
on the source (inside the backup's snapshot) and again on the restored database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from yinqi import audit


def quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def row_count(conn: Connection, table: str) -> int:
    return int(conn.execute(text(f"SELECT COUNT(*) FROM {quote(conn, table)}")).scalar_one())


def payment_totals(conn: Connection) -> list[dict[str, Any]]:
    """Count and sum of ``amount_minor`` per (state, currency): exact integers (PostgreSQL's
    SUM of a bigint is a numeric, converted back without passing through float)."""
    rows = conn.execute(text(
        "SELECT state, currency, COUNT(*), SUM(amount_minor) FROM payments "
        "GROUP BY state, currency ORDER BY state, currency")).all()
    return [{"state": s, "currency": c, "count": int(n), "amount_minor": int(total)}
            for s, c, n, total in rows]


def audit_head(conn: Connection) -> dict[str, Any]:
    """The chain's head as the database records it: the ``audit_head`` row, else the last
    event, else the genesis hash of an empty chain."""
    row = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
    if row is None:
        row = conn.execute(text(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).first()
    if row is None:
        return {"seq": 0, "hash": audit.GENESIS_HASH}
    return {"seq": int(row[0]), "hash": str(row[1])}
