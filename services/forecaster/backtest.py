"""Rolling-origin backtest of the month-end forecast against a naive linear run-rate. Pure: no I/O.

For every whole month after a warm-up, a forecast is made at the end of each day of the month
(the origin) from the history up to that day, and compared with what the month really came to.
Reported: how often the truth fell inside P10-P90 (target 80 %), the pinball loss at 0.1, 0.5 and
0.9 as a share of the month's total, and the absolute % error of P50 made at the end of day 10 and its
signed mean (the bias: below zero when P50 falls short of the month's total on average);
the run-rate (spend so far / days so far × days in month) is scored the same way, its single
number standing in for every quantile.

Warm-up: a long series is scored on the whole months that begin after ``WARMUP_DAYS`` (8 weeks). A
short one, as a new customer has (one or two months), has no such month; it is scored on every whole
month it holds, at each origin with at least ``MIN_WARMUP_DAYS`` (four weeks) of history before it.
``Metrics.warmup_days`` and ``Metrics.warmup`` say which was used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray

from spendgate.forecaster.model import QUANTILES, Heavy, ScopeSeries, forecast, month_bounds

WARMUP_DAYS = 56
MIN_WARMUP_DAYS = 28
ORIGIN_DAY = 10


@dataclass(frozen=True, slots=True)
class Metrics:
    months: int
    origins: int
    coverage_pct: float
    pinball_pct: tuple[float, float, float]
    pinball_mean_pct: float
    ape_day10_pct: float
    runrate_pinball_pct: tuple[float, float, float]
    runrate_pinball_mean_pct: float
    runrate_ape_day10_pct: float
    models: dict[str, int]
    warmup_days: int = WARMUP_DAYS
    warmup: str = "months after the warm-up"
    """``months after the warm-up`` (long series) or ``origins after the warm-up`` (short series)."""
    bias_day10_pct: float = float("nan")
    """Mean signed error of P50 made at the end of day 10, % of the month's total (negative: too low)."""
    runrate_bias_day10_pct: float = float("nan")

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def pinball(truth: float, predicted: float, q: float) -> float:
    diff = truth - predicted
    return max(q * diff, (q - 1) * diff)


def run_rate(spent: float, days_elapsed: int, days_in_month: int) -> float:
    """The classic mistake: spend so far, straight-lined to the end of the month."""
    return spent / days_elapsed * days_in_month


def _first_whole_month(start: date, after_days: int) -> date:
    month_start, _ = month_bounds(start + timedelta(days=after_days))
    if month_start < start + timedelta(days=after_days):
        month_start = month_bounds(month_start + timedelta(days=31))[0]
    return month_start


def backtest(start: date, daily_micros: NDArray[np.int64], *, warmup_days: int | None = None,
             paths: int = 500, heavy_mode: Heavy = "never", seed: int = 0,
             every_nth_origin: int = 1) -> Metrics:
    """Score the forecaster on the whole months of ``daily_micros`` after the warm-up (see the module);
    ``warmup_days`` given, only months that begin after it."""
    covered = origins = months = 0
    loss = np.zeros(3)
    rr_loss = np.zeros(3)
    ape: list[float] = []
    rr_ape: list[float] = []
    bias: list[float] = []
    rr_bias: list[float] = []
    models: dict[str, int] = {}
    end = start + timedelta(days=len(daily_micros) - 1)
    warmup, rule = warmup_days or WARMUP_DAYS, "months after the warm-up"
    month_start = _first_whole_month(start, warmup)
    if warmup_days is None and month_bounds(month_start)[1] > end:
        warmup, rule = MIN_WARMUP_DAYS, "origins after the warm-up"
        month_start = _first_whole_month(start, 0)
    while True:
        _, month_end = month_bounds(month_start)
        if month_end > end:
            break
        first = (month_start - start).days
        length = month_end.day
        month = daily_micros[first:first + length].astype(np.float64)
        truth = float(month.sum())
        counted = False
        for day in range(1, length, every_nth_origin):
            if first + day < warmup:
                continue  # fewer than four weeks of history before this origin
            counted = True
            as_of = month_start + timedelta(days=day - 1)
            series = ScopeSeries(start, daily_micros[:first + day], as_of)
            fc = forecast(series, seed=seed + origins, paths=paths, heavy_mode=heavy_mode)
            models[fc.model] = models.get(fc.model, 0) + 1
            quantiles = (fc.p10_micros, fc.p50_micros, fc.p90_micros)
            rr = run_rate(float(month[:day].sum()), day, length)
            scale = truth if truth > 0 else 1.0
            origins += 1
            covered += fc.p10_micros <= truth <= fc.p90_micros
            for i, q in enumerate(QUANTILES):
                loss[i] += pinball(truth, quantiles[i], q) / scale
                rr_loss[i] += pinball(truth, rr, q) / scale
            if day == ORIGIN_DAY:
                ape.append(abs(fc.p50_micros - truth) / scale)
                rr_ape.append(abs(rr - truth) / scale)
                bias.append((fc.p50_micros - truth) / scale)
                rr_bias.append((rr - truth) / scale)
        months += counted
        month_start = month_end + timedelta(days=1)
    n = max(origins, 1)
    pct = tuple(round(100 * float(v) / n, 3) for v in loss)
    rr_pct = tuple(round(100 * float(v) / n, 3) for v in rr_loss)
    return Metrics(
        months=months, origins=origins, coverage_pct=round(100 * covered / n, 1),
        pinball_pct=pct, pinball_mean_pct=round(sum(pct) / 3, 3),  # type: ignore[arg-type]
        ape_day10_pct=round(100 * float(np.mean(ape)), 2) if ape else float("nan"),
        runrate_pinball_pct=rr_pct,  # type: ignore[arg-type]
        runrate_pinball_mean_pct=round(sum(rr_pct) / 3, 3),
        runrate_ape_day10_pct=round(100 * float(np.mean(rr_ape)), 2) if rr_ape else float("nan"),
        models=models, warmup_days=warmup, warmup=rule,
        bias_day10_pct=_pct_mean(bias), runrate_bias_day10_pct=_pct_mean(rr_bias),
    )


def _pct_mean(values: list[float]) -> float:
    return round(100 * float(np.mean(values)), 2) if values else float("nan")
