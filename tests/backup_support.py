"""What backup tests compare: every row of every table, as the backup encodes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from yinqi.backup.codec import row_encoder
from yinqi.backup.create import table_spec
from yinqi.store.models import Base


def encoded_rows(engine: Any) -> dict[str, list[list[object]]]:
    """Equal across backends exactly when the values are equal (timestamps, booleans, JSON,
    bytes, integers)."""
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            spec = table_spec(table)
            encode = row_encoder(table.name, [tuple(c) for c in spec["columns"]],
                                 conn.dialect.name)
            cols = ", ".join(f'"{c}"' for c, _ in spec["columns"])
            order = ", ".join(f'"{c}"' for c in spec["primary_key"])
            out[table.name] = [encode(r) for r in conn.execute(
                text(f'SELECT {cols} FROM "{table.name}" ORDER BY {order}'))]
    return out


def assert_nothing_restored(url: str, home: Path) -> None:
    """A refused restore left no tables in the (SQLite) database and no home."""
    from sqlalchemy import inspect

    from yinqi.store import make_engine

    if Path(url.removeprefix("sqlite:///")).exists():
        engine = make_engine(url)
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
        engine.dispose()
    assert not home.exists()
