"""The month-end P50 made at the end of day 10, against the run-rate and a weekday-adjusted run-rate.

    .venv/bin/python benchmarks/forecast_p50.py [--realisations 8] [--days 730] [--paths 500] [--seed 7]
                                                [--families synthetic|team|all] [--history DAYS]

For every series of ``forecast_backtest.py`` (``--families synthetic``, the default), of
``team_series.py`` (``team``: a team of engineers built bottom-up, with holidays, zero days, people
joining and leaving, refactor weeks, growth and month-start spend) or both (``all``), and every whole
month after the 8-week warm-up of each of ``--realisations`` draws, one forecast at the end of day 10.
``--history 63`` lets that forecast see only the last 63 days, as a new customer with one to three
months of data has. Printed per series, as % of the month's total: the mean absolute error of P50
(APE), its mean and median signed error (bias: negative when P50 falls short), how often the P10-P90
band made that day held the month's total, the mean pinball loss of P10/P50/P90 (pinb);
the same error and bias (and pinball, its one number standing in for every quantile) for the naive
run-rate (spend so far / 10 × days in month), and the error and bias of a
weekday-adjusted run-rate (days 1-10 divided by the weekday factors of the 8 weeks before the
month, then the remaining days at that level times their factors), and the error of blends of the
model's P50 with the weekday-adjusted run-rate (w = share of the run-rate). On the ``weekly`` series,
whose true level is known, also the error of a forecaster that knows it (the floor no model can beat:
the noise of the 20 days still to come).

This measures only the day-10 P50; ``forecast_backtest.py`` scores every origin (coverage, pinball).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.forecast_backtest import SERIES, START, WEEKDAY_SHAPE, Maker, to_micros
from benchmarks.team_series import FAMILIES
from spendgate.forecaster.backtest import ORIGIN_DAY, WARMUP_DAYS, _first_whole_month, pinball, run_rate
from spendgate.forecaster.model import QUANTILES, ScopeSeries, forecast, month_bounds

BLENDS = (0.2, 0.5)


def dow_run_rate(daily: NDArray[np.float64], first: int, length: int) -> float:
    """Days 1-10 as spent, the rest at their level times the weekday factors of the 8 weeks before."""
    before = daily[first - 56:first].reshape(8, 7)
    factors = before.mean(axis=0) / max(float(before.mean()), 1e-12)
    # ``before`` starts 56 days (8 whole weeks) before the month, so day i of the month is factors[i % 7].
    month_factors = factors[np.arange(length) % 7]
    spent = float(daily[first:first + ORIGIN_DAY].sum())
    level = spent / max(float(month_factors[:ORIGIN_DAY].sum()), 1e-12)
    return spent + level * float(month_factors[ORIGIN_DAY:].sum())


def day10_rows(micros: NDArray[np.int64], paths: int, seed: int,
               true_daily: NDArray[np.float64] | None, history: int = 0) -> list[tuple[float, ...]]:
    """(truth, p10, p50, p90, run-rate, weekday run-rate, known-level) for every scored month's day 10;
    ``history`` > 0: the forecast sees only that many days before the origin (a new customer)."""
    daily = micros.astype(np.float64)
    end = START + timedelta(days=len(daily) - 1)
    month_start = _first_whole_month(START, WARMUP_DAYS)
    rows: list[tuple[float, ...]] = []
    while month_bounds(month_start)[1] <= end:
        month_end = month_bounds(month_start)[1]
        first, length = (month_start - START).days, month_end.day
        month = daily[first:first + length]
        as_of = month_start + timedelta(days=ORIGIN_DAY - 1)
        seen = max(first + ORIGIN_DAY - history, 0) if history else 0
        fc = forecast(ScopeSeries(START + timedelta(days=seen), micros[seen:first + ORIGIN_DAY], as_of),
                      seed=seed + len(rows), paths=paths)
        spent = float(month[:ORIGIN_DAY].sum())
        known = (spent + float(true_daily[first + ORIGIN_DAY:first + length].sum()) if true_daily is not None
                 else float("nan"))
        rows.append((float(month.sum()), fc.p10_micros, fc.p50_micros, fc.p90_micros,
                     run_rate(spent, ORIGIN_DAY, length), dow_run_rate(daily, first, length), known))
        month_start = month_end + timedelta(days=1)
    return rows


def _pinball(truth: NDArray[np.float64], quantiles: tuple[NDArray[np.float64], ...]) -> float:
    """Mean pinball loss at 0.1 / 0.5 / 0.9 as % of the month's total (the run-rate: one number for all three)."""
    return float(100 * np.mean([pinball(t, float(v[i]), q) / t for i, t in enumerate(truth)
                                for q, v in zip(QUANTILES, quantiles, strict=True)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realisations", type=int, default=8)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--paths", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--families", choices=["synthetic", "team", "all"], default="synthetic",
                        help="synthetic: the backtest's series; team: a team of engineers (team_series.py)")
    parser.add_argument("--history", type=int, default=0,
                        help="the forecast sees only this many days before the origin (0: all; 28-400)")
    args = parser.parse_args()
    if not 1 <= args.realisations <= 100 or not 120 <= args.days <= 3650 or not 10 <= args.paths <= 10_000:
        parser.error("--realisations 1-100, --days 120-3650, --paths 10-10000")
    if args.history and not 28 <= args.history <= 400:
        parser.error("--history 0 (all) or 28-400")
    families: dict[str, Maker] = {}
    if args.families in ("synthetic", "all"):
        families.update({name: maker for name, (maker, _) in SERIES.items()})
    if args.families in ("team", "all"):
        families.update(FAMILIES)
    seen = f"the last {args.history} days" if args.history else "all days"
    print(f"P50 at the end of day 10: {args.realisations} realisations × {args.days} days per series, "
          f"{args.paths} paths, the forecast seeing {seen}; % of the month's total")
    blends = " ".join(f"{f'w={w}':>6}" for w in BLENDS)
    header = (f"{'series':<33} {'n':>4} {'APE':>6} {'bias':>6} {'med':>6} {'cover':>6} {'pinb':>5} | {'RR APE':>6}"
              f" {'bias':>6} {'pinb':>5} | {'dowRR':>6} {'bias':>6} | {blends} | {'floor':>6}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for i, (name, maker) in enumerate(families.items()):
        rows: list[tuple[float, ...]] = []
        for r in range(args.realisations):
            usd = maker(np.random.default_rng(args.seed + r + i), args.days)
            weekly_level = (120.0 * WEEKDAY_SHAPE[(START.weekday() + np.arange(args.days)) % 7] * 1e6
                            if name == "weekly" else None)
            rows.extend(day10_rows(to_micros(usd), args.paths, args.seed + 1000 * r, weekly_level, args.history))
        truth, p10, p50, p90, rr, dow, known = np.asarray(rows).T
        err, rr_err, dow_err = (p50 - truth) / truth, (rr - truth) / truth, (dow - truth) / truth
        blended = " ".join(f"{100 * np.mean(np.abs((1 - w) * p50 + w * dow - truth) / truth):>6.2f}" for w in BLENDS)
        floor = 100 * np.mean(np.abs(known - truth) / truth)
        print(f"{name:<33} {len(rows):>4} {100 * np.mean(np.abs(err)):>6.2f} {100 * np.mean(err):>+6.2f} "
              f"{100 * np.median(err):>+6.2f} {100 * np.mean((p10 <= truth) & (truth <= p90)):>5.1f}% "
              f"{_pinball(truth, (p10, p50, p90)):>5.2f} | "
              f"{100 * np.mean(np.abs(rr_err)):>6.2f} {100 * np.mean(rr_err):>+6.2f} "
              f"{_pinball(truth, (rr,) * 3):>5.2f} | "
              f"{100 * np.mean(np.abs(dow_err)):>6.2f} {100 * np.mean(dow_err):>+6.2f} | {blended} | "
              f"{'' if np.isnan(floor) else f'{floor:.2f}':>6}", flush=True)
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
