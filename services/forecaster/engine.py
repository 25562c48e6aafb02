"""One forecasting pass: which scopes, as of when, with which series, then the model for each.

Reading is async (PostgreSQL); the model runs in a worker thread so an hourly pass over
thousands of scopes never stalls the event loop. Seeds derive from scope, as-of day and elapsed
share of the day, so the same ledger gives the same forecast in the worker, the CLI and the report.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from spendgate.core.config_services import ForecastSettings
from spendgate.core.db import Conn
from spendgate.domain.forecast import Forecast
from spendgate.domain.periods import PeriodKind, local_date, period_of
from spendgate.forecaster.model import Heavy, ScopeSeries, forecast
from spendgate.forecaster.series import ForecastScope, forecast_scopes, live_series, pooled_dow, series_as_of

ORG = "org"


@dataclass(frozen=True, slots=True)
class ScopeForecast:
    scope: ForecastScope
    series: ScopeSeries
    forecast: Forecast


def as_of_for(at: datetime, timezone: str) -> tuple[date, float]:
    """The local day a run at ``at`` forecasts from, and the elapsed share of it.

    A run at local midnight forecasts from the day that just closed (share 1.0), which is what an
    audit ``--as-of`` of that day sees too.
    """
    day = local_date(at - timedelta(microseconds=1), timezone)
    period = period_of(PeriodKind.DAY, day, timezone)
    share = (at - period.starts_at) / (period.ends_at - period.starts_at)
    return day, min(max(share, 0.0), 1.0)


def seed_for(scope: str, as_of: date, share: float) -> int:
    return zlib.crc32(f"{scope}|{as_of.isoformat()}|{share:.4f}".encode())


async def load_inputs(conn: Conn, settings: ForecastSettings, at: datetime, *, audit_day: date | None = None,
                      only: str | None = None, default_timezone: str = "UTC",
                      ) -> list[tuple[ForecastScope, ScopeSeries]]:
    """The series of every scope to forecast (:func:`forecast_scopes`, or ``only``), live at ``at`` or as of
    the end of ``audit_day``."""
    days = settings.lookback_days
    last = audit_day or as_of_for(at, default_timezone)[0]
    scopes = await forecast_scopes(conn, at, since=last - timedelta(days=days + 1),
                                   default_timezone=default_timezone, only=only)
    if not scopes:
        return []
    plans = {s.scope: ((audit_day, 1.0) if audit_day else as_of_for(at, s.timezone)) for s in scopes}
    latest = max(d for d, _ in plans.values())
    start = latest - timedelta(days=days - 1 + 2)
    if audit_day is None:
        found = await live_series(conn, list({*[s.scope for s in scopes], ORG}), start, latest)
        org = found[ORG]
    else:
        found = {s.scope: await series_as_of(conn, s.scope, s.timezone, start, audit_day) for s in scopes}
        org = await series_as_of(conn, ORG, "UTC", start, audit_day)
    prior = pooled_dow(org, start)
    out: list[tuple[ForecastScope, ScopeSeries]] = []
    for s in scopes:
        as_of, share = plans[s.scope]
        own_start = as_of - timedelta(days=days - 1)
        daily: NDArray[np.int64] = found[s.scope][(own_start - start).days:(as_of - start).days + 1]
        out.append((s, ScopeSeries(own_start, daily, as_of, share, s.monthly_micros, prior)))
    return out


def run_models(inputs: list[tuple[ForecastScope, ScopeSeries]], settings: ForecastSettings) -> list[ScopeForecast]:
    """The model for each scope; the statsmodels second opinion for at most ``max_heavy_fits`` of them."""
    heavy_left = settings.max_heavy_fits
    out: list[ScopeForecast] = []
    for scope, series in inputs:
        mode: Heavy = "auto" if heavy_left > 0 else "never"
        fc = forecast(series, seed=seed_for(scope.scope, series.as_of, series.day_fraction),
                      paths=settings.paths, heavy_mode=mode)
        if fc.model.endswith("+uc") or "uc" in fc.inputs:
            heavy_left -= 1
        out.append(ScopeForecast(scope, series, fc))
    return out


async def forecast_all(conn: Conn, settings: ForecastSettings, at: datetime, *, audit_day: date | None = None,
                       only: str | None = None, default_timezone: str = "UTC") -> list[ScopeForecast]:
    """Forecast every developer, team, cost center and the org that spent in the lookback, and every scope
    with a monthly budget (or just ``only``); ``default_timezone`` is the days of scopes without a budget."""
    inputs = await load_inputs(conn, settings, at, audit_day=audit_day, only=only, default_timezone=default_timezone)
    return await asyncio.to_thread(run_models, inputs, settings)
