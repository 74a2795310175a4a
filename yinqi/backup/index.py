"""What a backup chain holds, row by row and file by file, so the next backup holds only what
changed.

Every backup carries an index part per table: the primary key and a 64-bit digest of each row
line it holds, and (for an incremental) the keys of rows deleted since the previous backup. A
full backup's index plus its incrementals' indexes, applied in order, is the chain's picture of
the database: an incremental compares each current row's digest with it and keeps only new and
changed rows. Lookups are vectorised (a pandas index over the chain's keys), so a chain of
millions of rows is compared chunk by chunk, not row by row.

Files get the same treatment keyed by path, with size and modification time as the change
signal (receipts and archived bank files are written once; configuration is edited in place).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from yinqi.backup.errors import BackupError


def row_digest(line: bytes) -> int:
    """A signed 64-bit digest of one encoded row line (collisions: 2**-64 per changed row)."""
    return int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big", signed=True)


def key_of(values: list[Any], pk_positions: list[int]) -> int | str:
    """A row's key: the integer itself for a single integer primary key, else its JSON."""
    if len(pk_positions) == 1 and isinstance(values[pk_positions[0]], int):
        return int(values[pk_positions[0]])
    return json.dumps([values[i] for i in pk_positions], separators=(",", ":"))


def _keys_array(keys: list[int | str] | np.ndarray) -> np.ndarray:
    if isinstance(keys, np.ndarray):
        return keys
    if keys and all(isinstance(k, int) for k in keys):
        return np.asarray(keys, dtype=np.int64)
    return np.asarray([str(k) for k in keys], dtype=np.str_)


@dataclass
class TableIndex:
    """Keys and digests of one table's rows, as the chain last saw them."""

    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    digests: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self) -> pd.Index:
        return pd.Index(self.keys)

    def apply(self, delta: TableDelta) -> TableIndex:
        """This picture after an incremental: deleted keys gone, changed rows' digests new."""
        keys, digests = self.keys, self.digests
        drop = [a for a in (delta.deleted, delta.keys) if len(a)]
        if len(keys) and drop:
            keep = ~pd.Index(keys).isin(np.concatenate(drop))
            keys, digests = keys[keep], digests[keep]
        if not len(keys):
            return TableIndex(delta.keys, delta.digests)
        if len(delta.keys):
            keys = np.concatenate([keys, delta.keys])
            digests = np.concatenate([digests, delta.digests])
        return TableIndex(keys, digests)


@dataclass
class TableDelta:
    """One backup's index part for one table: the rows it holds, the keys it deleted."""

    keys: np.ndarray
    digests: np.ndarray
    deleted: np.ndarray

    def pack(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, keys=self.keys, digests=self.digests, deleted=self.deleted)
        return buffer.getvalue()

    @classmethod
    def unpack(cls, data: bytes, part: str) -> TableDelta:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                delta = cls(arrays["keys"], arrays["digests"], arrays["deleted"])
        except (ValueError, KeyError, OSError) as exc:
            raise BackupError(f"backup part {part} is not a readable row index ({exc})") \
                from None
        if len(delta.keys) != len(delta.digests) or delta.digests.dtype != np.int64:
            raise BackupError(f"backup part {part} is not a consistent row index")
        return delta


class DeltaBuilder:
    """Collects, chunk by chunk, the rows of a table that differ from the chain's picture."""

    def __init__(self, previous: TableIndex | None) -> None:
        self.previous = previous
        self._lookup = previous.lookup() if previous is not None else None
        self._seen = np.zeros(len(previous) if previous is not None else 0, dtype=bool)
        self._keys: list[np.ndarray] = []
        self._digests: list[np.ndarray] = []
        self.rows = 0

    def changed(self, keys: list[int | str], digests: list[int]) -> np.ndarray:
        """A mask over this chunk: True for rows to write (new, or changed since the chain)."""
        self.rows += len(keys)
        key_array = _keys_array(keys)
        digest_array = np.asarray(digests, dtype=np.int64)
        if self._lookup is None or self.previous is None or not len(self.previous):
            mask = np.ones(len(keys), dtype=bool)
        else:
            positions = self._lookup.get_indexer(key_array)
            found = positions >= 0
            self._seen[positions[found]] = True
            mask = ~found
            mask[found] = self.previous.digests[positions[found]] != digest_array[found]
        self._keys.append(key_array[mask])
        self._digests.append(digest_array[mask])
        return mask

    def delta(self) -> TableDelta:
        keys = np.concatenate(self._keys) if self._keys else np.empty(0, dtype=np.int64)
        digests = np.concatenate(self._digests) if self._digests else np.empty(0, np.int64)
        if self.previous is None:
            deleted = keys[:0]
        else:
            deleted = self.previous.keys[~self._seen]
        return TableDelta(keys, digests, deleted)


# --- files -------------------------------------------------------------------------------

FileState = dict[str, dict[str, tuple[int, int]]]  # area -> path -> (size, mtime_ns)


def files_delta(previous: FileState | None, current: FileState) -> dict[str, Any]:
    """Per area, the files new or changed since the chain's picture, and the ones removed."""
    out: dict[str, Any] = {}
    for area, now in current.items():
        before = (previous or {}).get(area, {})
        out[area] = {
            "files": {p: list(sig) for p, sig in now.items() if before.get(p) != sig},
            "removed": sorted(set(before) - set(now)),
        }
    for area, before in (previous or {}).items():
        if area not in current:
            out[area] = {"files": {}, "removed": sorted(before)}
    return out


def apply_files(state: FileState, delta: dict[str, Any]) -> FileState:
    result = {area: dict(paths) for area, paths in state.items()}
    for area, change in delta.items():
        paths = result.setdefault(area, {})
        for path in change["removed"]:
            paths.pop(path, None)
        for path, (size, mtime) in change["files"].items():
            paths[path] = (int(size), int(mtime))
    return result
