"""Day and month periods in a scope's timezone: midnight, month ends, DST transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind, period_containing


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_midnight_belongs_to_the_new_day() -> None:
    """An event at exactly local midnight opens the next day's period."""
    before = period_containing(PeriodKind.DAY, at("2026-03-09T22:59:59.999999"), "Europe/Berlin")
    after = period_containing(PeriodKind.DAY, at("2026-03-09T23:00:00"), "Europe/Berlin")
    assert before.start == date(2026, 3, 9) and after.start == date(2026, 3, 10)
    assert before.ends_at == after.starts_at == at("2026-03-09T23:00:00")


def test_month_end_31st_to_1st() -> None:
    """The 31st's last second is in the old month; local midnight of the 1st opens the new one."""
    p = period_containing(PeriodKind.MONTH, at("2026-12-31T23:59:59"), "UTC")
    assert p.start == date(2026, 12, 1) and p.ends_at == at("2027-01-01T00:00:00")
    ny = period_containing(PeriodKind.MONTH, at("2026-02-01T03:00:00"), "America/New_York")
    assert ny.start == date(2026, 1, 1)  # still 31 Jan, 22:00 in New York
    assert ny.ends_at == at("2026-02-01T05:00:00")


@pytest.mark.parametrize(("tz", "day", "hours"), [
    ("Europe/Berlin", "2026-03-29", 23), ("Europe/Berlin", "2026-10-25", 25),
    ("America/New_York", "2026-03-08", 23), ("America/New_York", "2026-11-01", 25),
    ("UTC", "2026-03-29", 24),
])
def test_dst_days_have_their_real_length(tz: str, day: str, hours: int) -> None:
    """A DST transition day lasts 23 or 25 hours, bounded by local midnights."""
    noon = datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC)
    p = period_containing(PeriodKind.DAY, noon, tz)
    assert p.ends_at - p.starts_at == timedelta(hours=hours)


def test_midnight_inside_a_dst_gap() -> None:
    """Where local midnight does not exist (Santiago skips 00:00), the day starts at the transition."""
    p = period_containing(PeriodKind.DAY, at("2026-09-06T12:00:00"), "America/Santiago")
    assert p.start == date(2026, 9, 6)
    assert p.starts_at == at("2026-09-06T04:00:00")


def test_unknown_timezone_is_a_config_error() -> None:
    """A misspelt timezone names itself in the error."""
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        period_containing(PeriodKind.DAY, at("2026-01-01T00:00:00"), "Mars/Olympus")
