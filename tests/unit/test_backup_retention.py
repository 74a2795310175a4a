"""Retention: "keep N daily, M weekly" over the treasury's local days and ISO weeks, with every
kept incremental keeping its chain back to its full backup and broken chains reported."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yinqi.backup.errors import BackupError
from yinqi.backup.retention import Entry, RetentionPlan, plan_retention
from yinqi.errors import YinqiError

SHANGHAI = "Asia/Shanghai"


def at(stamp: str) -> datetime:
    """A UTC time from ``2026-11-25T02:00``."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def _name(when: datetime, kind: str) -> str:
    return f"{when.strftime('%Y%m%dT%H%M%S')}Z-{kind}"


def full(stamp: str) -> Entry:
    when = at(stamp)
    return Entry(_name(when, "full"), "full", when, None)


def incr(stamp: str, previous: Entry | str) -> Entry:
    when = at(stamp)
    prev = previous if isinstance(previous, str) else previous.name
    return Entry(_name(when, "incr"), "incremental", when, prev)


def plan(entries: list[Entry], daily: int = 7, weekly: int = 4,
         tz: str = SHANGHAI) -> RetentionPlan:
    return plan_retention(entries, keep_daily=daily, keep_weekly=weekly, tz=tz)


def daily_fulls(first: str, days: int) -> list[Entry]:
    start = at(first)
    return [full((start + timedelta(days=i)).isoformat()[:16]) for i in range(days)]


# --- arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize(("daily", "weekly", "bad"), [
    (0, 4, "keep_daily"), (7, 0, "keep_weekly"), (-1, 4, "keep_daily"),
    (7, -3, "keep_weekly"), (True, 4, "keep_daily"), (7, 2.5, "keep_weekly"),
])
def test_counts_below_one_are_refused(daily: int, weekly: int, bad: str) -> None:
    with pytest.raises(BackupError, match=bad) as info:
        plan([full("2026-11-25T02:00")], daily, weekly)
    assert isinstance(info.value, YinqiError) and "1 or more" in str(info.value)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(BackupError, match="Asia/Shanghia"):
        plan([full("2026-11-25T02:00")], tz="Asia/Shanghia")


def test_a_creation_time_without_a_zone_is_refused() -> None:
    with pytest.raises(BackupError, match="20261125T020000Z-full.*time zone"):
        Entry("20261125T020000Z-full", "full", datetime(2026, 11, 25, 2, 0), None)


def test_a_backup_listed_twice_is_refused() -> None:
    f = full("2026-11-25T02:00")
    with pytest.raises(BackupError, match="listed twice"):
        plan([f, f])


def test_no_backups_give_an_empty_plan() -> None:
    assert plan([]) == RetentionPlan(keep=[], delete=[], reasons={})


def test_a_tzinfo_object_is_accepted_like_a_name() -> None:
    entries = daily_fulls("2026-11-01T20:00", 10)
    by_name = plan_retention(entries, keep_daily=3, keep_weekly=2, tz="Etc/GMT-8")
    by_object = plan_retention(entries, keep_daily=3, keep_weekly=2,
                               tz=timezone(timedelta(hours=8)))
    assert by_name == by_object == plan(entries, 3, 2)


# --- full backups only ---------------------------------------------------------------------

def test_fulls_only_keep_n_days_and_m_weeks() -> None:
    # One full a day at 10:00 Shanghai, Sunday 2026-11-01 (W44) to Friday 2026-11-20 (W47).
    entries = daily_fulls("2026-11-01T02:00", 20)
    result = plan(entries, daily=7, weekly=4)
    days = ["01", "08", "14", "15", "16", "17", "18", "19", "20"]
    assert result.keep == [f"202611{d}T020000Z-full" for d in days]
    assert result.delete == [e.name for e in reversed(entries) if e.name not in result.keep]
    assert len(result.keep) + len(result.delete) == 20
    assert result.reasons == {
        "20261120T020000Z-full": "newest; daily 2026-11-20; weekly 2026-W47",
        "20261119T020000Z-full": "daily 2026-11-19",
        "20261118T020000Z-full": "daily 2026-11-18",
        "20261117T020000Z-full": "daily 2026-11-17",
        "20261116T020000Z-full": "daily 2026-11-16",
        "20261115T020000Z-full": "daily 2026-11-15; weekly 2026-W46",
        "20261114T020000Z-full": "daily 2026-11-14",
        "20261108T020000Z-full": "weekly 2026-W45",
        "20261101T020000Z-full": "weekly 2026-W44",
    }
    assert result.broken == [] and result.broken_reasons == {}


def test_only_the_newest_backup_of_a_day_counts() -> None:
    morning, noon, evening = full("2026-11-25T01:00"), full("2026-11-25T04:00"), \
        full("2026-11-25T10:00")
    yesterday = full("2026-11-24T10:00")
    result = plan([morning, yesterday, evening, noon], daily=2, weekly=1)
    assert result.keep == [yesterday.name, evening.name]
    assert result.delete == [noon.name, morning.name]          # newest first
    assert result.reasons[yesterday.name] == "daily 2026-11-24"


def test_days_without_a_backup_do_not_count() -> None:
    # Three backups spread over a month: keeping 3 days keeps all three.
    entries = [full("2026-10-20T02:00"), full("2026-11-05T02:00"), full("2026-11-25T02:00")]
    result = plan(entries, daily=3, weekly=1)
    assert result.keep == [e.name for e in entries] and result.delete == []


def test_counts_larger_than_the_history_keep_everything_chosen_once() -> None:
    entries = daily_fulls("2026-11-20T02:00", 3) + [full("2026-11-22T05:00")]
    result = plan(entries, daily=30, weekly=52)
    assert result.delete == ["20261122T020000Z-full"]    # not the newest of its day
    assert result.keep == ["20261120T020000Z-full", "20261121T020000Z-full",
                           "20261122T050000Z-full"]
    assert result.reasons["20261122T050000Z-full"] == \
        "newest; daily 2026-11-22; weekly 2026-W47"
    assert result.reasons["20261120T020000Z-full"] == "daily 2026-11-20"


def test_the_newest_backup_is_always_kept_and_said_so() -> None:
    entries = daily_fulls("2026-11-01T02:00", 5)
    result = plan(entries, daily=1, weekly=1)
    assert result.keep == ["20261105T020000Z-full"]
    assert result.reasons["20261105T020000Z-full"].startswith("newest; ")


def test_equal_times_are_ordered_by_name() -> None:
    when = at("2026-11-25T02:00")
    first = Entry("20261125T020000Z-full", "full", when, None)
    second = Entry("20261125T020000Z-full-2", "full", when, None)
    result = plan([second, first], daily=1, weekly=1)
    assert result.keep == [second.name] and result.delete == [first.name]


# --- the treasury's local days and weeks ---------------------------------------------------

def test_17_utc_is_already_the_next_day_in_shanghai() -> None:
    late_24 = full("2026-11-24T15:30")     # 23:30 on the 24th in Shanghai
    early_25 = full("2026-11-24T16:30")    # 00:30 on the 25th
    later_25 = full("2026-11-24T17:00")    # 01:00 on the 25th
    entries = [late_24, early_25, later_25]
    shanghai = plan(entries, daily=2, weekly=1)
    assert shanghai.keep == [late_24.name, later_25.name]
    assert shanghai.delete == [early_25.name]
    assert shanghai.reasons[later_25.name] == "newest; daily 2026-11-25; weekly 2026-W48"
    assert shanghai.reasons[late_24.name] == "daily 2026-11-24"
    # Read as UTC days, all three fall on the 24th: one is kept.
    utc = plan(entries, daily=2, weekly=1, tz="UTC")
    assert utc.keep == [later_25.name]
    assert utc.reasons[later_25.name] == "newest; daily 2026-11-24; weekly 2026-W48"


def test_weeks_are_iso_weeks_of_the_local_day() -> None:
    # Sunday 2026-11-29 17:00 UTC is Monday 01:00 in Shanghai: the first backup of W49 there.
    sunday = full("2026-11-29T12:00")     # Sunday 20:00 Shanghai, W48
    monday = full("2026-11-29T17:00")     # Monday 01:00 Shanghai, W49
    result = plan([sunday, monday], daily=1, weekly=2)
    assert result.keep == [sunday.name, monday.name]
    assert result.reasons[sunday.name] == "weekly 2026-W48"
    utc = plan([sunday, monday], daily=1, weekly=2, tz="UTC")
    assert utc.keep == [monday.name] and utc.delete == [sunday.name]


def test_the_iso_year_can_differ_from_the_calendar_year() -> None:
    new_year = full("2027-01-01T02:00")   # Friday: still 2026-W53
    monday = full("2027-01-04T02:00")     # 2027-W01
    december = full("2026-12-20T02:00")   # Sunday: 2026-W51
    result = plan([december, new_year, monday], daily=1, weekly=3)
    assert result.reasons[new_year.name] == "weekly 2026-W53"
    assert result.reasons[monday.name] == "newest; daily 2027-01-04; weekly 2027-W01"
    assert result.reasons[december.name] == "weekly 2026-W51"


# --- chains --------------------------------------------------------------------------------

def _week_of_chain(monday: str) -> list[Entry]:
    """A full on the Monday at 10:00 Shanghai, then an incremental each following day."""
    start = at(f"{monday}T02:00")
    chain = [full(start.isoformat()[:16])]
    for day in range(1, 7):
        chain.append(incr((start + timedelta(days=day)).isoformat()[:16], chain[-1]))
    return chain


def test_a_kept_incremental_keeps_its_whole_chain() -> None:
    week = _week_of_chain("2026-11-23")
    result = plan(week, daily=1, weekly=1)
    assert result.keep == [e.name for e in week] and result.delete == []
    newest = week[-1].name
    assert result.reasons[newest] == "newest; daily 2026-11-29; weekly 2026-W48"
    assert all(result.reasons[e.name] == f"chain of {newest}" for e in week[:-1])


def test_chains_across_days_and_weeks() -> None:
    w47, w48 = _week_of_chain("2026-11-16"), _week_of_chain("2026-11-23")
    entries = w47 + w48
    # This week's chain is kept whole; last week's goes entirely.
    one_week = plan(entries, daily=3, weekly=1)
    assert one_week.keep == [e.name for e in w48]
    assert one_week.delete == [e.name for e in reversed(w47)]
    # Keeping two weeks keeps last week's newest incremental, hence its whole chain.
    two_weeks = plan(entries, daily=3, weekly=2)
    assert two_weeks.keep == [e.name for e in entries] and two_weeks.delete == []
    assert two_weeks.reasons[w47[-1].name] == "weekly 2026-W47"
    assert two_weeks.reasons[w47[0].name] == f"chain of {w47[-1].name}"
    assert two_weeks.reasons[w48[4].name] == f"daily 2026-11-27; chain of {w48[-1].name}"


def test_a_chain_stays_whole_or_goes_whole() -> None:
    base = full("2026-11-20T02:00")
    a = incr("2026-11-21T02:00", base)
    b = incr("2026-11-21T08:00", a)       # newest of the 21st
    c = incr("2026-11-22T02:00", b)
    fresh = full("2026-11-23T02:00")      # Monday: a new chain, a new week
    result = plan([base, a, b, c, fresh], daily=1, weekly=2)
    # W47's newest is c: it keeps b, a and base; the 21st's a is kept only as c's chain.
    assert result.keep == [base.name, a.name, b.name, c.name, fresh.name]
    assert result.reasons[a.name] == f"chain of {c.name}"
    one = plan([base, a, b, c, fresh], daily=2, weekly=1)
    # Daily picks the 23rd and the 22nd (c); c keeps its chain whole.
    assert one.keep == [base.name, a.name, b.name, c.name, fresh.name]
    only = plan([base, a, b, c, fresh], daily=1, weekly=1)
    assert only.keep == [fresh.name]
    assert only.delete == [c.name, b.name, a.name, base.name]   # children before parents


def test_a_chain_straddling_a_week_boundary_is_kept_whole() -> None:
    base = full("2026-11-21T02:00")       # Saturday, W47
    sunday = incr("2026-11-22T02:00", base)
    monday = incr("2026-11-23T02:00", sunday)   # W48
    tuesday = incr("2026-11-24T02:00", monday)
    entries = [base, sunday, monday, tuesday]
    result = plan(entries, daily=1, weekly=1)
    assert result.keep == [e.name for e in entries]
    assert result.reasons[sunday.name] == f"chain of {tuesday.name}"
    weekly = plan(entries, daily=1, weekly=2)
    assert weekly.reasons[sunday.name] == f"weekly 2026-W47; chain of {tuesday.name}"
    assert weekly.reasons[base.name] == f"chain of {tuesday.name}"


def test_the_chain_reason_names_the_newest_kept_descendant() -> None:
    base = full("2026-11-23T02:00")
    i1 = incr("2026-11-24T02:00", base)
    i2 = incr("2026-11-25T02:00", i1)
    result = plan([base, i1, i2], daily=3, weekly=1)
    assert result.reasons[base.name] == f"daily 2026-11-23; chain of {i2.name}"
    assert result.reasons[i1.name] == f"daily 2026-11-24; chain of {i2.name}"


# --- broken chains -------------------------------------------------------------------------

def test_a_broken_chain_is_reported_kept_and_keeps_nothing_else() -> None:
    old = full("2026-11-20T02:00")
    orphan = incr("2026-11-24T02:00", "20261123T020000Z-full")   # that full is gone
    child = incr("2026-11-25T02:00", orphan)
    result = plan([old, orphan, child], daily=1, weekly=1)
    # Nothing restorable is newer than the old full, so it is the newest worth keeping; the
    # broken backups are never deleted by the rules, only reported.
    assert result.keep == [old.name, orphan.name, child.name] and result.delete == []
    assert result.reasons[old.name].startswith("newest; daily")
    assert result.broken == [orphan.name, child.name]
    reason = f"{orphan.name} follows 20261123T020000Z-full, which is missing or unreadable"
    assert result.broken_reasons == {orphan.name: reason, child.name: reason}
    assert "broken chain" in result.reasons[child.name]


def test_a_broken_backup_is_never_chosen_over_a_restorable_one() -> None:
    good = full("2026-11-25T01:00")
    orphan = incr("2026-11-25T02:00", "20261101T020000Z-full")   # newest of the day
    older = full("2026-11-24T02:00")
    result = plan([older, good, orphan], daily=1, weekly=1)
    assert "daily 2026-11-25" in result.reasons[good.name]
    assert result.delete == [older.name]
    assert result.broken == [orphan.name] and orphan.name in result.keep


def test_a_broken_chain_beside_a_whole_one() -> None:
    week = _week_of_chain("2026-11-23")
    stray = incr("2026-11-25T01:00", "20261124T999999Z-incr")
    result = plan([*week, stray], daily=7, weekly=1)
    assert result.broken == [stray.name]
    assert result.keep == sorted([*(e.name for e in week), stray.name])
    assert result.delete == []


def test_an_incremental_without_a_previous_is_broken() -> None:
    lost = Entry("20261125T020000Z-incr", "incremental", at("2026-11-25T02:00"), None)
    result = plan([lost], daily=1, weekly=1)
    assert result.keep == [lost.name]
    assert result.broken_reasons == {
        lost.name: f"{lost.name} is not a full backup yet names no previous backup"}


def test_a_chain_that_loops_is_broken() -> None:
    a = Entry("20261124T020000Z-incr", "incremental", at("2026-11-24T02:00"),
              "20261125T020000Z-incr")
    b = Entry("20261125T020000Z-incr", "incremental", at("2026-11-25T02:00"), a.name)
    c = incr("2026-11-26T02:00", b)
    result = plan([a, b, c], daily=1, weekly=1)
    assert result.keep == [a.name, b.name, c.name] and result.delete == []
    assert result.broken == [a.name, b.name, c.name]
    assert all("loops" in r for r in result.broken_reasons.values())


# --- properties over random histories ------------------------------------------------------

@st.composite
def histories(draw: st.DrawFn) -> list[Entry]:
    """Backups every few hours over up to ~10 weeks: fulls, incrementals on the previous
    backup, and now and then an incremental whose parent is missing."""
    count = draw(st.integers(min_value=1, max_value=40))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=60), min_size=count,
                         max_size=count))
    when = datetime(2026, 10, 1, tzinfo=UTC)
    entries: list[Entry] = []
    for i, gap in enumerate(gaps):
        when += timedelta(hours=gap)
        shape = draw(st.sampled_from(["full", "incr", "incr", "orphan"]))
        if shape == "full" or not entries:
            entries.append(Entry(f"{i:03d}-full", "full", when, None))
        elif shape == "incr":
            entries.append(Entry(f"{i:03d}-incr", "incremental", when, entries[-1].name))
        else:
            entries.append(Entry(f"{i:03d}-incr", "incremental", when, f"gone-{i}"))
    return entries


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(min_value=1, max_value=10),
       st.integers(min_value=1, max_value=6), st.sampled_from([SHANGHAI, "UTC",
                                                               "America/New_York"]))
def test_plans_keep_whole_chains_and_each_chosen_period(
        entries: list[Entry], daily: int, weekly: int, tz: str) -> None:
    from zoneinfo import ZoneInfo

    result = plan(entries, daily, weekly, tz)
    by_name = {e.name: e for e in entries}
    kept = set(result.keep)
    assert kept.isdisjoint(result.delete) and kept | set(result.delete) == set(by_name)
    assert set(result.reasons) == kept and all(result.reasons.values())
    assert set(result.broken) <= kept  # never deleted by the rules
    whole_entries = [e for e in entries if e.name not in result.broken]
    newest = max(whole_entries or entries, key=lambda e: (e.created_at, e.name))
    assert newest.name in kept
    # Every kept backup with a whole chain has its ancestors kept.
    for name in kept - set(result.broken):
        link = by_name[name]
        while link.kind != "full":
            assert link.previous in kept
            link = by_name[link.previous]
    # A backup is broken exactly when its chain reaches a missing parent.
    for e in entries:
        link, whole = e, True
        while link.kind != "full":
            if link.previous not in by_name:
                whole = False
                break
            link = by_name[link.previous]
        assert (e.name in result.broken) is not whole
    # The newest backup of each of the N most recent local days is kept, and no more are
    # chosen than N + M (+ newest) periods allow.
    zone = ZoneInfo(tz)
    days: dict[date, Entry] = {}
    for e in sorted(whole_entries, key=lambda e: (e.created_at, e.name)):
        days[e.created_at.astimezone(zone).date()] = e
    for day in sorted(days, reverse=True)[:daily]:
        assert days[day].name in kept
    chosen = [n for n, r in result.reasons.items()
              if not r.startswith(("chain of", "broken chain"))]
    assert len(chosen) <= daily + weekly + 1
    # Deleting in the planned order never removes a parent before a child still listed.
    position = {n: i for i, n in enumerate(result.delete)}
    for e in entries:
        if e.name in position and e.previous in position:
            assert position[e.name] < position[e.previous]
