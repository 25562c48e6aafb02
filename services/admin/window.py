"""The reporting window (``--from`` / ``--to``) and the row filters every report shares. Pure: no I/O.

Dates are local calendar days in the reporting timezone; ``to`` is inclusive, so
``--from 2026-11-01 --to 2026-11-30`` covers November exactly and lines up with the ledger's
monthly balance for that month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from spendgate.domain.periods import PeriodKind, period_containing, period_of
from spendgate.store.usage.filters import UsageFilter

GROUPINGS: dict[str, str] = {
    "session": "session_id",
    "developer": "developer",
    "team": "team",
    "cost_center": "cost_center",
    "repo": "repo",
}
"""Report groupings and the ``usage_events`` column each groups by (a fixed allow-list, never user SQL)."""

class WindowError(ValueError):
    """A reporting window or grouping a person asked for that cannot work."""


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open UTC interval ``[starts_at, ends_at)`` plus the local dates it was asked as."""

    from_date: date
    to_date: date
    starts_at: datetime
    ends_at: datetime
    tz: str = "UTC"
    """The IANA timezone whose local days the dates are."""

    @classmethod
    def of(cls, from_date: date | None, to_date: date | None, *, tz: str, now: datetime) -> Window:
        """The window of local days ``from_date`` … ``to_date`` (inclusive); defaults to this month so far."""
        month = period_containing(PeriodKind.MONTH, now, tz)
        start = from_date or month.start
        month_last = (month.start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        end = to_date or max(month_last, start)
        if end < start:
            raise WindowError(f"--to {end} is before --from {start}")
        return cls(start, end, period_of(PeriodKind.DAY, start, tz).starts_at,
                   period_of(PeriodKind.DAY, end, tz).ends_at, tz)


@dataclass(frozen=True, slots=True)
class Filters:
    """Optional equality filters on the usage events a report reads."""

    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    session_id: str | None = None

    def usage(self, window: Window) -> UsageFilter:
        """The usage events of ``window`` these filters select, as the usage store reads them."""
        return UsageFilter(window.starts_at, window.ends_at, developer=self.developer, team=self.team,
                           cost_center=self.cost_center, repo=self.repo, session_id=self.session_id)


def group_column(by: str) -> str:
    try:
        return GROUPINGS[by]
    except KeyError:
        raise WindowError(f"cannot group by {by!r}; choose one of {', '.join(GROUPINGS)}") from None


FIRST_YEAR, LAST_YEAR = 1970, 2999


def parse_date(value: str | None, *, what: str) -> date | None:
    """A ``YYYY-MM-DD`` day between 1970 and 2999; None when not given."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise WindowError(f"{what} must be a date such as 2026-11-01, not {value!r}") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise WindowError(f"{what} must be between {FIRST_YEAR} and {LAST_YEAR}")
    return day
