"""The sandbox bank's clock and calendar.

Settlement, cut-offs and returns all ask the clock, so tests can drive a fake one forward
deterministically while the demo runs on the real one.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """Real time, started at a chosen moment: the demo's bank opens on a business morning
    whatever the hour or weekday the demo is run, and settles in real time from there."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the shifted clock needs a timezone-aware start")
        import time as _time

        self._monotonic = _time.monotonic
        self._start, self._t0 = start.astimezone(UTC), _time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._monotonic() - self._t0)

    def advance(self, delta: timedelta) -> datetime:
        """Jump ahead (the demo closes the business day to fetch its statement)."""
        if delta < timedelta(0):
            raise ValueError("the clock never runs backwards")
        with self._lock:
            self._start += delta
        return self.now()

    def set(self, moment: datetime) -> datetime:
        return self.advance(moment.astimezone(UTC) - self.now())


class FakeClock:
    """Time stands still until a test moves it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the fake clock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock never runs backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> datetime:
        return self.advance(moment.astimezone(UTC) - self.now())


class Calendar:
    """A bank's business days and cut-off in its own time zone."""

    def __init__(self, tz: str, cutoff: time, holidays: frozenset[date] = frozenset()) -> None:
        self.tz = ZoneInfo(tz)
        self.cutoff = cutoff
        self.holidays = holidays

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def next_business_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def execution_date(self, received: datetime, requested: date | None = None) -> date:
        """The business day a payment received at ``received`` is executed on."""
        local = self.local(received)
        day = local.date()
        if not self.is_business_day(day) or local.time() >= self.cutoff:
            day = self.next_business_day(day)
        if requested is not None and requested > day:
            day = requested if self.is_business_day(requested) else self.next_business_day(requested)
        return day

    def opening(self, day: date) -> datetime:
        """The moment a business day's processing starts (09:00 local), in UTC."""
        return datetime.combine(day, time(9, 0), self.tz).astimezone(UTC)

    def business_date(self, moment: datetime) -> date:
        return self.local(moment).date()
