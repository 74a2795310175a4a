"""The tamper-evident audit chain, as pure functions.

Each event's ``hash`` is SHA-256 over the previous event's hash and the event's canonical
JSON, so editing, deleting, inserting or reordering any event breaks every hash after it.
A plain hash chain can be recomputed by whoever can write the table, so each hash is also
sealed with an HMAC under a key derived from the master secret (which never lives in the
database): rewriting the chain needs that key. The head (last sequence number and hash) is
kept apart and sealed too, so cutting events off the end is detected as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_ids: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SealedEvent:
    event: AuditEvent
    prev_hash: str
    hash: str
    mac: str


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    mac: str


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain BROKEN at event #{self.first_bad_seq}: {self.problem}"


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(event: AuditEvent) -> bytes:
    """The exact bytes that are hashed: stable across databases and Python versions."""
    body = {
        "seq": event.seq,
        "at": _utc_iso(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_ids": list(event.subject_ids),
        "details": event.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(event)).hexdigest()


def seal(key: bytes, digest: str, *, what: str = "event") -> str:
    return hmac.new(key, f"{what}:{digest}".encode("ascii"), hashlib.sha256).hexdigest()


def head_digest(seq: int, digest: str) -> str:
    return f"{seq}:{digest}"


def link(prev_hash: str, event: AuditEvent, key: bytes) -> SealedEvent:
    digest = chain_hash(prev_hash, event)
    return SealedEvent(event, prev_hash, digest, seal(key, digest))


def make_head(seq: int, digest: str, key: bytes) -> Head:
    return Head(seq, digest, seal(key, head_digest(seq, digest), what="head"))


def _describe(event: AuditEvent) -> str:
    return f"{event.action} by {event.actor} at {_utc_iso(event.occurred_at)}"


def verify(rows: Iterable[SealedEvent], key: bytes, head: Head | None) -> Verdict:
    """Walk the chain in ``seq`` order and name the first event that does not verify."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for row in rows:
        ev = row.event
        if ev.seq != expected_seq:
            missing = (f"#{expected_seq}" if ev.seq == expected_seq + 1
                       else f"#{expected_seq}..#{ev.seq - 1}")
            return Verdict(False, checked, ev.seq if ev.seq > expected_seq else expected_seq,
                           f"event {missing} is missing before #{ev.seq} (deleted?)")
        if row.prev_hash != prev_hash:
            return Verdict(False, checked, ev.seq,
                           f"it does not follow event #{ev.seq - 1} "
                           f"(an event was deleted, inserted or reordered) [{_describe(ev)}]")
        if chain_hash(prev_hash, ev) != row.hash:
            return Verdict(False, checked, ev.seq,
                           f"its content does not match its hash (edited) [{_describe(ev)}]")
        if not hmac.compare_digest(seal(key, row.hash), row.mac):
            return Verdict(False, checked, ev.seq,
                           "its seal does not verify (chain rewritten without the audit key, "
                           f"or the wrong master secret) [{_describe(ev)}]")
        prev_hash, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
    last_seq = expected_seq - 1
    if head is None or (head.seq == 0 and head.hash == GENESIS_HASH):
        # An empty log has nothing to seal; the head only exists once the first append ran.
        if last_seq:
            return Verdict(False, checked, last_seq, "the audit head record is missing")
        return Verdict(True, 0)
    if not hmac.compare_digest(seal(key, head_digest(head.seq, head.hash), what="head"), head.mac):
        return Verdict(False, checked, head.seq, "the audit head's seal does not verify (edited)")
    if head.seq != last_seq or head.hash != prev_hash:
        if head.seq > last_seq:
            return Verdict(False, checked, last_seq + 1,
                           f"the log ends at #{last_seq} but the head records #{head.seq} "
                           "(events deleted from the end)")
        return Verdict(False, checked, head.seq,
                       f"the head records #{head.seq} but the log goes on to #{last_seq}")
    return Verdict(True, checked)


def subject_ids(values: Sequence[object]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)
