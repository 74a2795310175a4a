from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from connectors.sandbox.clock import Calendar, FakeClock

# Shanghai is UTC+8 all year.
CAL = Calendar("Asia/Shanghai", time(16, 30), frozenset({date(2026, 12, 31), date(2027, 1, 1)}))


def shanghai(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh - 8, mm, tzinfo=UTC) if hh >= 8 else \
        datetime(y, m, d, hh + 16, mm, tzinfo=UTC) - timedelta(days=1)


@pytest.mark.parametrize(
    ("received", "requested", "expected"),
    [
        (shanghai(2026, 11, 24, 10), None, date(2026, 11, 24)),        # Tuesday morning
        (shanghai(2026, 11, 24, 16, 29), None, date(2026, 11, 24)),    # a minute before cut-off
        (shanghai(2026, 11, 24, 16, 30), None, date(2026, 11, 25)),    # at cut-off: next day
        (shanghai(2026, 11, 27, 17), None, date(2026, 11, 30)),        # Friday evening -> Monday
        (shanghai(2026, 11, 28, 10), None, date(2026, 11, 30)),        # Saturday -> Monday
        (shanghai(2026, 12, 30, 18), None, date(2027, 1, 4)),          # over two holidays + weekend
        (shanghai(2026, 11, 24, 10), date(2026, 11, 26), date(2026, 11, 26)),  # future date kept
        (shanghai(2026, 11, 24, 10), date(2026, 11, 28), date(2026, 11, 30)),  # ... or rolled on
        (shanghai(2026, 11, 24, 10), date(2026, 11, 20), date(2026, 11, 24)),  # past date: today
    ],
)
def test_execution_date_respects_cutoff_weekends_and_holidays(received, requested, expected) -> None:  # type: ignore[no-untyped-def]
    assert CAL.execution_date(received, requested) == expected


def test_the_bank_day_is_the_local_day_not_the_utc_day() -> None:
    # 01:00 on the 25th in Shanghai is still the 24th in UTC.
    assert CAL.business_date(datetime(2026, 11, 24, 17, 0, tzinfo=UTC)) == date(2026, 11, 25)
    assert CAL.opening(date(2026, 11, 25)) == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def test_fake_clock_only_moves_forward_and_when_told() -> None:
    clock = FakeClock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))
    assert clock.now() == clock.now()
    assert clock.advance(timedelta(hours=2)) == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 11, 24))
