"""Which backups to keep: "keep N daily, M weekly", chains kept whole.

Pure logic over small :class:`Entry` records (no target is read or changed here):

* **daily** — the treasury's local calendar days (in the given time zone, e.g.
  ``Asia/Shanghai``) that hold at least one backup are counted from the newest back; for each
  of the ``keep_daily`` most recent such days, that day's newest backup is kept. Days without
  a backup do not count, so a week of downtime never expires the last good backups.
* **weekly** — likewise for ISO weeks (Monday to Sunday, local time; ``2026-W48``): the newest
  backup of each of the ``keep_weekly`` most recent weeks that hold one is kept.
* **newest** — the newest backup of all is always kept.
* **chains** — an incremental backup is useless without every backup it builds on, so a kept
  backup keeps its whole chain: each ``previous`` back to its full backup.
* **broken chains** — a backup whose chain cannot be followed back to a full backup (a
  ``previous`` that is not among the entries, an incremental without a ``previous``, or a chain
  that loops) cannot be restored. The rules above never choose it (a day's newest *restorable*
  backup is that day's), it is never a reason to keep anything else, and it is never deleted
  automatically either: every such backup is kept and reported in ``broken`` with the reason,
  for a person to look at. Leave out of the entries any backup whose manifest cannot
  be read or authenticated: it is then neither kept nor deleted here, and every incremental
  built on it is reported broken.
* everything else is deleted.

"Newest" means the latest ``created_at``; equal times are ordered by name. ``keep`` lists the
kept backups oldest first; ``delete`` lists the rest newest first, so a deletion that stops
half way never leaves an incremental whose ancestors are gone while it remains.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yinqi.backup.errors import BackupError

FULL = "full"


@dataclass(frozen=True)
class Entry:
    """One finished backup as retention sees it: its folder name, kind, time and parent."""

    name: str
    kind: str
    created_at: datetime
    previous: str | None

    def __post_init__(self) -> None:
        # A naive time would silently be read as the server's local time: wrong days.
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise BackupError(f"backup {self.name} has a creation time without a time zone; "
                              "its manifest is damaged or was not made by Yinqi")


@dataclass(frozen=True)
class RetentionPlan:
    """What to keep and delete. ``reasons`` says why each kept backup stays; ``broken`` names
    the backups whose chain cannot be followed back to a full backup, ``broken_reasons`` why."""

    keep: list[str]
    delete: list[str]
    reasons: dict[str, str]
    broken: list[str] = field(default_factory=list)
    broken_reasons: dict[str, str] = field(default_factory=dict)


def plan_retention(entries: Iterable[Entry], *, keep_daily: int, keep_weekly: int,
                   tz: str | tzinfo) -> RetentionPlan:
    """Decide which of ``entries`` to keep (see the module docstring for the rules)."""
    _check_count("keep_daily", keep_daily)
    _check_count("keep_weekly", keep_weekly)
    zone = _zone(tz)
    by_name: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in by_name:
            raise BackupError(f"backup {entry.name} is listed twice; retention needs each "
                              "backup once")
        by_name[entry.name] = entry
    if not by_name:
        return RetentionPlan(keep=[], delete=[], reasons={})

    def order(e: Entry) -> tuple[datetime, str]:
        return e.created_at, e.name

    newest_first = sorted(by_name.values(), key=order, reverse=True)
    broken = _broken_chains(by_name)
    # Periods are filled with backups that can be restored; a broken one is never chosen
    # over them, and never deleted either (below).
    whole = [e for e in newest_first if e.name not in broken]
    own: dict[str, list[str]] = {(whole or newest_first)[0].name: ["newest"]}

    def choose(label: Callable[[Entry], Hashable], count: int, prefix: str,
               fmt: Callable[[Any], str]) -> None:
        seen: list[Hashable] = []
        for e in whole:  # the first backup met in each period is its newest
            period = label(e)
            if period in seen:
                continue
            if len(seen) == count:
                # Periods are met newest first, so this one and all after it are too old.
                return
            seen.append(period)
            own.setdefault(e.name, []).append(f"{prefix} {fmt(period)}")

    def local_day(e: Entry) -> date:
        return e.created_at.astimezone(zone).date()

    def iso_week(e: Entry) -> tuple[int, int]:
        year, week, _ = local_day(e).isocalendar()
        return year, week

    choose(local_day, keep_daily, "daily", lambda d: d.isoformat())
    choose(iso_week, keep_weekly, "weekly", lambda w: f"{w[0]}-W{w[1]:02d}")

    chain_of: dict[str, str] = {}
    for e in newest_first:
        if e.name not in own or e.name in broken:
            continue
        link = e
        while link.kind != FULL and link.previous is not None:
            link = by_name[link.previous]
            # Walking newest first: the first descendant to claim an ancestor is its newest.
            chain_of.setdefault(link.name, e.name)

    kept = set(own) | set(chain_of) | set(broken)
    reasons = {}
    for name in kept:
        why = list(own.get(name, []))
        if name in chain_of:
            why.append(f"chain of {chain_of[name]}")
        if name in broken:
            why.append("broken chain, kept for a person to look at")
        reasons[name] = "; ".join(why)
    oldest_first = newest_first[::-1]
    return RetentionPlan(
        keep=[e.name for e in oldest_first if e.name in kept],
        delete=[e.name for e in newest_first if e.name not in kept],
        reasons=reasons,
        broken=[e.name for e in oldest_first if e.name in broken],
        broken_reasons=broken,
    )


def _check_count(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackupError(f"{what} is {value!r}; retention keeps at least one backup per "
                          f"period, so set {what} to a whole number of 1 or more")


def _zone(tz: str | tzinfo) -> tzinfo:
    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BackupError(f"unknown time zone {tz!r} for backup retention; use an IANA name "
                          "such as Asia/Shanghai") from None


def _broken_chains(by_name: Mapping[str, Entry]) -> dict[str, str]:
    """Each backup whose chain does not lead back to a full backup, and why."""
    status: dict[str, str | None] = {}  # name -> None (whole) or the reason it is broken
    for start in by_name.values():
        path: list[Entry] = []
        on_path: set[str] = set()
        link = start
        while True:
            if link.name in status:
                reason = status[link.name]
                # Whatever broke the ancestor's chain breaks this one too, worded the same.
                break
            if link.name in on_path:
                reason = f"its chain loops back to {link.name}"
                break
            path.append(link)
            on_path.add(link.name)
            if link.kind == FULL:
                reason = None
                break
            if link.previous is None:
                reason = f"{link.name} is not a full backup yet names no previous backup"
                break
            if link.previous not in by_name:
                reason = f"{link.name} follows {link.previous}, which is missing or unreadable"
                break
            link = by_name[link.previous]
        for entry in path:
            status[entry.name] = reason
    return {name: reason for name, reason in status.items() if reason is not None}
