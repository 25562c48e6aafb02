"""The forecast line of an alert, fresh: it reflects what the scope has spent by the time of the alert.

The latest forecast is our own copy of spendgate.forecast.v1, else the forecaster's latest stored
forecast (before the first update has reached us). A forecast is made on the forecaster's schedule, so
by the time a threshold is crossed it may predate much of the month's spend: a 114 % pause alert once
quoted "P50 $0.00" (a forecast made before any spend) with $0.0138 already spent. :func:`fresh_forecast`
therefore starts from the month's spend now:

- the forecast already includes it (its month-to-date ``actual`` is at least today's spend): quoted as is;
- it is this month's and still expected spend to come: re-based, each quantile = spend now + what the
  forecast expected after its as-of day, pro-rated to the time left in the month;
- otherwise (none yet, another month's, or one that saw no spend and so expects none): the month's pace
  so far, projected to its end (a point figure, no band).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from spendgate.core.db import Conn
from spendgate.domain.periods import Period
from spendgate.store.alerts.store import remembered_forecast
from spendgate.store.forecasts.store import latest_forecasts

MIN_PACE_ELAPSED = timedelta(hours=1)
"""The month's pace is measured over at least this long (an alert minutes into a month is not a trend)."""


@dataclass(frozen=True, slots=True)
class ForecastView:
    month: date
    as_of: date
    actual_micros: int
    """Month-to-date spend the forecast started from."""
    p10_micros: int
    p50_micros: int
    p90_micros: int
    p50_crosses_on: date | None = None


@dataclass(frozen=True, slots=True)
class FreshForecast:
    """Month-end spend as an alert states it: ``basis`` says how it was made from what was known."""

    basis: Literal["forecast", "rebased", "pace"]
    spent_micros: int
    """The month's spend at the alert."""
    p50_micros: int
    p10_micros: int | None = None
    p90_micros: int | None = None
    as_of: date | None = None
    """The as-of day of the forecast quoted or re-based."""
    p50_crosses_on: date | None = None
    """Only for a forecast quoted as is (a re-based one's crossing day is not known)."""


async def latest_forecast(conn: Conn, scope: str) -> ForecastView | None:
    f = await remembered_forecast(conn, scope)
    if f is not None:
        return ForecastView(f.month, f.as_of, f.actual_micros, f.p10_micros, f.p50_micros, f.p90_micros,
                            f.p50_crosses_on)
    stored = await latest_forecasts(conn, scope)
    if not stored:
        return None
    s = stored[0]
    return ForecastView(s.month, s.as_of, s.actual_micros, s.p10_micros, s.p50_micros, s.p90_micros,
                        s.p50_crosses_on)


def fresh_forecast(f: ForecastView | None, *, spent_micros: int, month: Period, now: datetime) -> FreshForecast:
    """Month-end spend for the month ``month`` (which contains ``now``) given ``spent_micros`` spent so far."""
    if f is not None and f.month == month.start:
        if f.actual_micros >= spent_micros:
            return FreshForecast("forecast", spent_micros, f.p50_micros, f.p10_micros, f.p90_micros, f.as_of,
                                 f.p50_crosses_on)
        if f.p90_micros > f.actual_micros:
            last_day = (month.start + timedelta(days=31)).replace(day=1) - timedelta(days=1)
            days_after = (last_day - f.as_of).days
            days_left = max(month.ends_at - now, timedelta(0)) / timedelta(days=1)
            share = min(1.0, days_left / days_after) if days_after > 0 else 0.0

            def rebased(p: int) -> int:
                return spent_micros + round(max(p - f.actual_micros, 0) * share)

            return FreshForecast("rebased", spent_micros, rebased(f.p50_micros), rebased(f.p10_micros),
                                 rebased(f.p90_micros), f.as_of)
    elapsed = max(now - month.starts_at, MIN_PACE_ELAPSED)
    left = max(month.ends_at - now, timedelta(0))
    return FreshForecast("pace", spent_micros, spent_micros + round(spent_micros * (left / elapsed)))
