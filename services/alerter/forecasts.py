"""The latest forecast for a scope: our own copy of spendgate.forecast.v1, else the forecaster's latest
stored forecast (before the first update has reached us)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from spendgate.core.db import Conn
from spendgate.store.alerts.store import remembered_forecast
from spendgate.store.forecasts.store import latest_forecasts


@dataclass(frozen=True, slots=True)
class ForecastView:
    as_of: date
    p10_micros: int
    p50_micros: int
    p90_micros: int
    p50_crosses_on: date | None = None


async def latest_forecast(conn: Conn, scope: str) -> ForecastView | None:
    f = await remembered_forecast(conn, scope)
    if f is not None:
        return ForecastView(f.as_of, f.p10_micros, f.p50_micros, f.p90_micros, f.p50_crosses_on)
    stored = await latest_forecasts(conn, scope)
    if not stored:
        return None
    s = stored[0]
    return ForecastView(s.as_of, s.p10_micros, s.p50_micros, s.p90_micros, s.p50_crosses_on)
