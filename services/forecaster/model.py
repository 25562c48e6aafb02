"""Month-end spend forecast for one scope: P10/P50/P90 and the day each band crosses the budget.

Pure: no I/O. Money comes in and goes out as integer micro-dollars; floats live only inside.

Which model runs (named in ``Forecast.model``):

- ``dow-bootstrap``: at least ``MIN_FULL_DAYS`` closed days (see ``simulate``): a local level on
  weekly blocks, bootstrapped within-week shape, a hedge after a recent change, and future level
  jumps at the rate and of the sizes found in the scope's own history (none if it never jumped);
- ``dow-prior``: fewer (a new team, the first days of a new key): weekday factors from the
  organisation's earlier months and wide bands;
- ``dow-bootstrap+uc``: the cheap model plus a statsmodels unobserved-components fit, half the
  paths each, when the history is long enough and the cheap P10-P90 band straddles the budget
  (``heavy="auto"``), i.e. where a second model can change the decision;
- ``none``: no spend seen at all; the forecast is what was spent (nothing) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from spendgate.domain.forecast import BandPoint, Forecast
from spendgate.forecaster import heavy, simulate

Heavy = Literal["never", "auto", "always"]
QUANTILES = (0.1, 0.5, 0.9)
DEFAULT_PATHS = 1000


@dataclass(frozen=True, slots=True)
class ScopeSeries:
    """A scope's daily spend in micro-dollars, one value per local day from ``start`` to ``as_of``."""

    start: date
    daily_micros: NDArray[np.int64]
    as_of: date
    day_fraction: float = 1.0
    """Elapsed share of the ``as_of`` day: 1.0 when it has closed, less for an hourly run."""
    budget_micros: int | None = None
    prior_dow: NDArray[np.float64] | None = None
    """Monday..Sunday spend factors from elsewhere (the organisation), for the little-history fallback."""


def month_bounds(day: date) -> tuple[date, date]:
    """First and last day of the month containing ``day``."""
    first = day.replace(day=1)
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def _dows(first: date, n: int) -> NDArray[np.int64]:
    return np.asarray((first.weekday() + np.arange(n)) % 7, dtype=np.int64)


def _paths(series: ScopeSeries, closed: NDArray[np.float64], partial: float, partial_weight: float,
           first_future: date, horizon: int, paths: int, rng: np.random.Generator,
           heavy_mode: Heavy) -> tuple[str, NDArray[np.float64] | None, dict[str, float | int | str]]:
    nonzero = np.flatnonzero(closed)
    seen = closed[nonzero[0]:] if len(nonzero) else closed[:0]
    if len(seen) >= simulate.MIN_FULL_DAYS:
        fit, shapes = simulate.fit_full(seen)
        sims = simulate.simulate_full(fit, shapes, horizon, paths, rng)
    else:
        first_seen = first_future - timedelta(days=len(seen))
        prior = simulate.fit_prior(seen, _dows(first_seen, len(seen)), series.prior_dow, partial,
                                   partial_weight, first_future.weekday())
        if prior is None:
            return "none", None, {"history_days": 0}
        fit, factors = prior
        sims = simulate.simulate_prior(fit, factors, _dows(first_future, horizon), paths, rng)
    inputs: dict[str, float | int | str] = {
        "history_days": len(seen), "level_usd_per_day": round(fit.level_per_day / 1e6, 6),
        "level_sigma": round(fit.level_sigma, 4), "walk_sigma_per_day": round(fit.walk_sigma_per_day, 4),
        "week_sigma": round(fit.week_sigma, 4), "blocks": fit.blocks, "paths": paths,
        "jumps_seen": len(fit.jump_sizes), "jumps_per_90_days": round(90 * fit.jump_rate_per_day, 3),
        "prior_dow": "none" if fit.kind == "dow-bootstrap" else
        ("organisation" if series.prior_dow is not None else "default"),
    }
    model = fit.kind
    if heavy_mode != "never" and len(seen) >= heavy.MIN_HEAVY_DAYS and horizon > 0:
        wanted = heavy_mode == "always" or _straddles(series, sims, partial_weight)
        uc = heavy.simulate_uc(seen, horizon, paths - paths // 2, rng) if wanted else None
        if uc is not None:
            sims = np.concatenate([sims[: paths // 2], uc])
            model = f"{fit.kind}+uc"
        elif wanted:
            inputs["uc"] = "fit failed; cheap model only"
    return model, sims, inputs


def _straddles(series: ScopeSeries, sims: NDArray[np.float64], partial_weight: float) -> bool:
    if series.budget_micros is None:
        return False
    weights = np.ones(sims.shape[1])
    if partial_weight > 0:
        weights[0] = 1 - series.day_fraction
    actual = _actual(series)
    lo, hi = np.quantile(actual + sims @ weights, [0.1, 0.9])
    return bool(lo <= series.budget_micros <= hi)


def _actual(series: ScopeSeries) -> int:
    month_start, _ = month_bounds(series.as_of)
    offset = max((month_start - series.start).days, 0)
    return int(series.daily_micros[offset:].sum())


def forecast(series: ScopeSeries, *, seed: int, paths: int = DEFAULT_PATHS, heavy_mode: Heavy = "never") -> Forecast:
    """Forecast the month containing ``series.as_of`` from the spend seen up to then."""
    rng = np.random.default_rng(seed)
    month_start, month_end = month_bounds(series.as_of)
    values = series.daily_micros.astype(np.float64)
    closed_day = series.day_fraction >= 1.0
    closed = values if closed_day else values[:-1]
    partial = 0.0 if closed_day else float(values[-1])
    partial_weight = 0.0 if closed_day else max(series.day_fraction, 0.0)
    first_future = series.as_of + timedelta(days=1) if closed_day else series.as_of
    horizon = max((month_end - first_future).days + 1, 0)
    actual = _actual(series)
    model, sims, inputs = _paths(series, closed, partial, partial_weight, first_future, horizon, paths, rng,
                                 heavy_mode)
    if sims is None or horizon == 0:
        sims = np.zeros((1, horizon))
        model = model if horizon else "final"
    weights = np.ones(horizon)
    if horizon and not closed_day:
        weights[0] = 1 - series.day_fraction
    cum = actual + np.cumsum(sims * weights, axis=1)
    bands = np.quantile(cum, QUANTILES, axis=0) if horizon else np.full((3, 0), float(actual))
    ends = bands[:, -1] if horizon else np.full(3, float(actual))
    days = [first_future + timedelta(days=i) for i in range(horizon)]
    crosses = _crossings(series, bands, days)
    band = tuple(BandPoint(d, *(round(float(v)) for v in bands[:, i])) for i, d in enumerate(days))
    p10, p50, p90 = (round(float(v)) for v in ends)
    return Forecast(month_start, series.as_of, actual, p10, max(p50, p10), max(p90, p50), series.budget_micros,
                    p10_crosses_on=crosses[0], p50_crosses_on=crosses[1], p90_crosses_on=crosses[2],
                    model=model, band=band, inputs=inputs)


def _crossings(series: ScopeSeries, bands: NDArray[np.float64],
               days: list[date]) -> tuple[date | None, date | None, date | None]:
    budget = series.budget_micros
    if budget is None:
        return (None, None, None)
    month_start, _ = month_bounds(series.as_of)
    offset = max((month_start - series.start).days, 0)
    cum_actual = np.cumsum(series.daily_micros[offset:])
    hit = np.flatnonzero(cum_actual >= budget)
    if len(hit):
        already = max(month_start, series.start) + timedelta(days=int(hit[0]))
        return (already, already, already)
    out: list[date | None] = []
    for row in bands:
        idx = np.flatnonzero(row >= budget)
        out.append(days[int(idx[0])] if len(idx) else None)
    return out[0], out[1], out[2]
