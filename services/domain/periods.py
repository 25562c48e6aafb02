"""Budget periods (day, ISO week, month) in a scope's IANA timezone. Pure: no I/O.

A period is identified by its local start date (the day itself, the Monday of the ISO week, or the
1st of the month); its bounds are the UTC instants of local midnight at the start and at the end, so
a DST day is 23 or 25 hours long, a week with a DST change 167 or 169, and a month ends at local
midnight of the 1st. A week belongs to no month or year: the one starting Monday 2026-12-28 ends at
local midnight opening Monday 2027-01-04.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spendgate.domain.errors import ConfigError, shown


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


PERIOD_KINDS: tuple[PeriodKind, ...] = (PeriodKind.DAY, PeriodKind.WEEK, PeriodKind.MONTH)
"""Every kind, shortest first: what the fold, the decision and the budget-change crossings iterate."""


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    start: date
    """Local start date: the day, the Monday of the week, or the first of the month."""
    starts_at: datetime
    """UTC instant of local midnight that opens the period."""
    ends_at: datetime
    """UTC instant of local midnight that closes it (and opens the next one)."""


MAX_ZONE_CHARS = 64
"""Longer than any IANA name (the longest is 32 characters)."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; a clear :class:`ConfigError` for a bad one."""
    try:
        if len(name) > MAX_ZONE_CHARS:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a file name
        raise ConfigError(f"unknown timezone {shown(name)} (use an IANA name such as Europe/Berlin)") from exc


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    # fold=0 gives a wall time inside a DST gap the offset from before the gap, which maps it to the
    # transition instant itself: the first instant that exists on that local day.
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def period_start_date(kind: PeriodKind, local_day: date) -> date:
    if kind is PeriodKind.DAY:
        return local_day
    if kind is PeriodKind.WEEK:
        return local_day - timedelta(days=local_day.weekday())  # ISO week: Monday is weekday 0
    return local_day.replace(day=1)


def _period_end(kind: PeriodKind, start: date) -> date:
    if kind is PeriodKind.DAY:
        return start + timedelta(days=1)
    if kind is PeriodKind.WEEK:
        return start + timedelta(days=7)
    return _next_month(start)


@lru_cache(maxsize=65536)
def period_of(kind: PeriodKind, start: date, tz_name: str) -> Period:
    """The period of ``kind`` whose local start date is ``start``."""
    tz = zone(tz_name)
    return Period(kind, start, _local_midnight(start, tz), _local_midnight(_period_end(kind, start), tz))


def period_containing(kind: PeriodKind, instant: datetime, tz_name: str) -> Period:
    """The period of ``kind`` that contains the aware ``instant`` in zone ``tz_name``."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return period_of(kind, period_start_date(kind, local_date(instant, tz_name)), tz_name)


def local_date(instant: datetime, tz_name: str) -> date:
    return instant.astimezone(zone(tz_name)).date()
