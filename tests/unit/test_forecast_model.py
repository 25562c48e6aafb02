"""The forecast model on series built to known shapes: calibration, accuracy against a run-rate,
level jumps and the recent-change hedge, crossing dates, the little-history fallback and the
statsmodels second opinion."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import numpy as np
import pytest
from numpy.typing import NDArray

from spendgate.forecaster import simulate
from spendgate.forecaster.model import ScopeSeries, forecast, month_bounds
from spendgate.forecaster.simulate import DEFAULT_DOW

SHAPE = np.array([1.0, 1.1, 1.1, 1.05, 0.9, 0.25, 0.2])  # Monday..Sunday
START = date(2025, 10, 1)
MONTH = date(2026, 3, 1)
ORIGIN = date(2026, 3, 10)
SEEDS = 200


def shaped(kind: str, rng: np.random.Generator, start: date = START,
           end: date = date(2026, 3, 31)) -> NDArray[np.int64]:
    """Daily spend (micros) with a weekly pattern and, by ``kind``, one step change, steps that
    recur (×0.5-×2 about every three months, anywhere, the forecast month included) or bursts."""
    n = (end - start).days + 1
    dows = (start.weekday() + np.arange(n)) % 7
    level = np.full(n, 100.0)
    if kind == "step":
        level[(date(2026, 2, 12) - start).days:] *= 2.0
    if kind == "steps":
        for at in rng.integers(30, n, size=n // 90):
            level[at:] *= rng.choice([0.5, 0.7, 1.5, 2.0])
    usd = level * SHAPE[dows] * rng.lognormal(-0.045, 0.3, n)
    if kind == "burst":
        for at in np.flatnonzero(rng.random(n) < 0.04):
            usd[at:at + 2] *= rng.uniform(3, 6)
    return np.asarray(np.rint(usd * 1e6), dtype=np.int64)


@cache
def _ratios(kind: str) -> NDArray[np.float64]:
    """``_day10`` for every seed, computed once per kind for the tests that share it."""
    return np.array([_day10(kind, seed) for seed in range(SEEDS)])


def _day10(kind: str, seed: int) -> tuple[float, float, float, float]:
    """(P10, P50, P90, run-rate) made at the end of 10 March, and the truth, for one seeded series."""
    daily = shaped(kind, np.random.default_rng(seed))
    upto = (ORIGIN - START).days + 1
    fc = forecast(ScopeSeries(START, daily[:upto], ORIGIN), seed=seed, paths=400)
    month = daily[(MONTH - START).days:]
    truth = float(month.sum())
    run_rate = float(month[:10].sum()) / 10 * 31
    return fc.p10_micros / truth, fc.p50_micros / truth, fc.p90_micros / truth, run_rate / truth


# One step, seen 26 days before the origin and never repeated, is the one shape that over-covers
# (about 95 % measured): the model takes the jump it found as evidence of the scope's jump rate and
# keeps a one-in-five chance of another before month-end, which this shape never delivers. Five
# months holding one step cannot tell "a one-off" from "a step every few months"; the recurring
# shape below (and the backtest's weekly+steps series) is the one the jump rate is right for, and
# there the band holds the truth at the 70-90 %.
# On the flat weekly shape the band is a little wide (93 % measured): the level's point estimate
# leans on the history-tuned filter (see ``test_day_10_p50_error_...``), which centres P50 better,
# while the band keeps the width of the moment-based filter that a moving level needs; 88.5 %
# before that change.
@pytest.mark.parametrize(("kind", "highest"), [("weekly", 0.94), ("steps", 0.90), ("burst", 0.90),
                                               ("step", 0.96)])
def test_p10_p90_band_holds_the_truth_about_four_times_in_five(kind: str, highest: float) -> None:
    """Over many seeds the P10-P90 band made on day 10 contains the month's truth at about 80 %."""
    ratios = _ratios(kind)
    coverage = float(np.mean((ratios[:, 0] <= 1.0) & (ratios[:, 2] >= 1.0)))
    assert 0.70 <= coverage <= highest, coverage
    # The quantiles are in order and the misses fall on both sides.
    assert np.all(ratios[:, 0] <= ratios[:, 1]) and np.all(ratios[:, 1] <= ratios[:, 2])
    assert 0.0 < float(np.mean(ratios[:, 0] > 1.0)) < 0.2
    assert 0.0 < float(np.mean(ratios[:, 2] < 1.0)) < 0.2


@pytest.mark.parametrize("kind", ["weekly", "step", "steps", "burst"])
def test_p50_beats_the_linear_run_rate(kind: str) -> None:
    """The P50 made on day 10 is closer to the month's truth than spend-so-far straight-lined."""
    ratios = _ratios(kind)
    p50_error = float(np.mean(np.abs(ratios[:, 1] - 1)))
    run_rate_error = float(np.mean(np.abs(ratios[:, 3] - 1)))
    assert p50_error < run_rate_error, (p50_error, run_rate_error)


# Mean |P50 error| made on day 10 over the 200 seeds, before the level's point estimate leaned on
# the history-tuned filter: weekly 5.80 %, bursts 17.63 %; after: 4.69 %, 16.29 %.
@pytest.mark.parametrize(("kind", "bound"), [("weekly", 0.052), ("burst", 0.170)])
def test_day_10_p50_error_is_below_what_the_moment_filter_alone_gave(kind: str, bound: float) -> None:
    """The day-10 P50 on a steady and a bursty series is nearer the truth than the 5.8 % and 17.6 % before."""
    ratios = _ratios(kind)
    assert float(np.mean(np.abs(ratios[:, 1] - 1))) < bound


def test_history_tuned_level_smooths_a_flat_level_and_follows_a_moving_one() -> None:
    """The filter chosen by past forecasts averages over many weeks when the level stays put, and
    follows the last weeks when it wanders; too short a history to score on takes a smooth level."""
    rng = np.random.default_rng(3)
    noise = 0.01
    flat = np.log(100) + rng.normal(0, 0.1, 26)
    wandering = np.log(100) + np.cumsum(rng.normal(0, 0.3, 26)) + rng.normal(0, 0.1, 26)
    calm = simulate._tuned_level_var(flat, (), (), noise, noise)
    moving = simulate._tuned_level_var(wandering, (), (), noise, noise)
    assert calm < noise < moving
    assert simulate._tuned_level_var(flat[:8], (), (), noise, 0.123) == pytest.approx(
        simulate.SHORT_HISTORY_SMOOTHING * 0.123)


def _short_day10(kind: str, seeds: int) -> NDArray[np.float64]:
    """(P10, P50, P90, run-rate) / truth made at the end of 10 March from nine weeks of history."""
    short_start = ORIGIN - timedelta(days=62)
    out = []
    for seed in range(seeds):
        daily = shaped(kind, np.random.default_rng(seed), start=short_start)
        upto = (ORIGIN - short_start).days + 1
        fc = forecast(ScopeSeries(short_start, daily[:upto], ORIGIN), seed=seed, paths=400)
        month = daily[(MONTH - short_start).days:]
        truth = float(month.sum())
        out.append((fc.p10_micros / truth, fc.p50_micros / truth, fc.p90_micros / truth,
                    float(month[:10].sum()) / 10 * 31 / truth))
    return np.array(out)


@pytest.mark.parametrize("kind", ["weekly", "burst"])
def test_short_history_day_10_p50_is_nearer_than_the_moment_filter_and_the_band_still_covers(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine weeks of history (too few to tune the smoothing on): the smooth level's day-10 P50 misses
    by less than the moment filter's did, beats the run-rate, and P10-P90 still holds the truth."""
    smooth = _short_day10(kind, 160)
    monkeypatch.setattr(simulate, "SHORT_HISTORY_SMOOTHING", 1.0)  # the moments' level variance, as before
    moments = _short_day10(kind, 160)
    error = float(np.mean(np.abs(smooth[:, 1] - 1)))
    assert error < float(np.mean(np.abs(moments[:, 1] - 1)))
    assert error < float(np.mean(np.abs(smooth[:, 3] - 1)))
    assert 0.70 <= float(np.mean((smooth[:, 0] <= 1) & (smooth[:, 2] >= 1))) <= 0.95


def test_lasting_level_jumps_are_found_and_bursts_are_not() -> None:
    """A ×2 step is found with its size and sets a jump rate; calm or bursty histories rarely have one."""
    upto = (ORIGIN - START).days + 1
    for kind, rate_wanted in (("weekly", False), ("burst", False), ("step", True)):
        found = [forecast(ScopeSeries(START, shaped(kind, np.random.default_rng(seed))[:upto], ORIGIN),
                          seed=seed, paths=100).inputs for seed in range(40)]
        share = sum(int(f["jumps_seen"]) > 0 for f in found) / len(found)
        assert (share >= 0.9) if rate_wanted else (share <= 0.15), (kind, share)
    fit, _ = simulate.fit_full(shaped("step", np.random.default_rng(0))[:upto].astype(np.float64))
    assert len(fit.jump_sizes) == 1 and abs(fit.jump_sizes[0] - np.log(2.0)) < 0.15
    assert 0 < fit.jump_rate_per_day < 1 / 60


def test_a_step_seen_for_a_few_days_moves_the_band_toward_the_new_level() -> None:
    """Five days after spend doubles, P90 reaches the doubled level and P10 stays near the old one."""
    as_of = date(2026, 3, 10)
    daily = shaped("weekly", np.random.default_rng(11))[: (as_of - START).days + 1]
    stepped = daily.copy()
    stepped[-5:] *= 2
    calm = forecast(ScopeSeries(START, daily, as_of), seed=1)
    fc = forecast(ScopeSeries(START, stepped, as_of), seed=1)
    rest_calm = calm.p50_micros - calm.actual_micros
    assert fc.p90_micros - fc.actual_micros > 1.6 * rest_calm
    assert fc.p10_micros - fc.actual_micros < 1.6 * rest_calm
    assert fc.p50_micros - fc.actual_micros > 1.2 * rest_calm


def test_forecast_is_reproducible_from_its_seed() -> None:
    """The same series and seed give the same forecast; money comes out as integer micro-dollars."""
    daily = shaped("weekly", np.random.default_rng(1))[: (ORIGIN - START).days + 1]
    a = forecast(ScopeSeries(START, daily, ORIGIN), seed=5)
    b = forecast(ScopeSeries(START, daily, ORIGIN), seed=5)
    assert a == b
    assert all(isinstance(v, int) for v in (a.actual_micros, a.p10_micros, a.p50_micros, a.p90_micros))
    assert a.model == "dow-bootstrap" and a.month == MONTH
    assert [p.day for p in a.band] == [ORIGIN + timedelta(days=i) for i in range(1, 22)]


def test_crossing_dates_come_in_band_order_and_match_the_budget() -> None:
    """P90 crosses the budget first, then P50, then P10; a band that never reaches it has no date."""
    daily = shaped("weekly", np.random.default_rng(2))[: (ORIGIN - START).days + 1]
    probe = forecast(ScopeSeries(START, daily, ORIGIN), seed=1)
    budget = probe.p50_micros * 97 // 100
    fc = forecast(ScopeSeries(START, daily, ORIGIN, budget_micros=budget), seed=1)
    assert fc.p90_crosses_on is not None and fc.p50_crosses_on is not None
    assert fc.p90_crosses_on <= fc.p50_crosses_on <= (fc.p10_crosses_on or date.max)
    point = next(p for p in fc.band if p.day == fc.p50_crosses_on)
    before = [p for p in fc.band if p.day < fc.p50_crosses_on]
    assert point.p50_micros >= budget and all(p.p50_micros < budget for p in before)
    far = forecast(ScopeSeries(START, daily, ORIGIN, budget_micros=probe.p90_micros * 3), seed=1)
    assert (far.p10_crosses_on, far.p50_crosses_on, far.p90_crosses_on) == (None, None, None)


def test_spend_already_over_budget_crossed_on_the_day_it_happened() -> None:
    """When the month's actual spend already passed the budget, every band's crossing is that day."""
    daily = shaped("weekly", np.random.default_rng(3))[: (ORIGIN - START).days + 1]
    month = daily[(MONTH - START).days:]
    budget = int(month[:4].sum())  # reached at the end of 4 March
    fc = forecast(ScopeSeries(START, daily, ORIGIN, budget_micros=budget), seed=1)
    assert fc.p10_crosses_on == fc.p50_crosses_on == fc.p90_crosses_on == date(2026, 3, 4)


def test_partial_day_counts_what_is_spent_and_forecasts_the_rest_of_it() -> None:
    """An hourly run mid-day keeps today's spend in the actual and the band starts with today."""
    daily = shaped("weekly", np.random.default_rng(4))[: (ORIGIN - START).days + 1]
    daily[-1] //= 2
    fc = forecast(ScopeSeries(START, daily, ORIGIN, day_fraction=0.5), seed=1)
    assert fc.actual_micros == int(daily[(MONTH - START).days:].sum())
    assert fc.band[0].day == ORIGIN and fc.band[-1].day == date(2026, 3, 31)
    assert fc.actual_micros < fc.band[0].p50_micros < fc.p50_micros


def test_new_team_falls_back_to_weekday_factors_with_wider_bands() -> None:
    """Five weekdays of history: weekday factors from the organisation, wider bands, weekends stay low."""
    rng = np.random.default_rng(6)
    as_of = date(2026, 3, 6)  # a Friday; the team started on Monday 2 March
    org = shaped("weekly", rng, START, as_of)
    team = np.zeros((as_of - START).days + 1, dtype=np.int64)
    team[-5:] = org[-5:] // 4
    prior = np.bincount((START.weekday() + np.arange(len(org))) % 7, weights=org.astype(float), minlength=7)
    fc = forecast(ScopeSeries(START, team, as_of, prior_dow=prior / prior.mean()), seed=1)
    assert fc.model == "dow-prior" and fc.inputs["prior_dow"] == "organisation"
    assert fc.inputs["history_days"] == 5
    steps = np.diff([fc.actual_micros] + [p.p50_micros for p in fc.band])
    weekend = [s for s, p in zip(steps, fc.band, strict=True) if p.day.weekday() >= 5]
    weekday = [s for s, p in zip(steps, fc.band, strict=True) if p.day.weekday() < 5]
    assert max(weekend) < 0.5 * min(weekday)  # not a straight line
    established = forecast(ScopeSeries(START, org // 4, as_of), seed=1)
    width = (fc.p90_micros - fc.p10_micros) / fc.p50_micros
    assert width > 1.5 * (established.p90_micros - established.p10_micros) / established.p50_micros
    default = forecast(ScopeSeries(START, team, as_of), seed=1)
    assert default.inputs["prior_dow"] == "default" and default.model == "dow-prior"
    assert np.allclose(DEFAULT_DOW.mean(), 1.0)


def test_no_spend_at_all_forecasts_nothing_and_says_so() -> None:
    """A scope that never spent gets its actual (zero) as every quantile, model 'none'."""
    fc = forecast(ScopeSeries(START, np.zeros((ORIGIN - START).days + 1, dtype=np.int64), ORIGIN,
                              budget_micros=10**9), seed=1)
    assert (fc.model, fc.p10_micros, fc.p50_micros, fc.p90_micros, fc.p50_crosses_on) == ("none", 0, 0, 0, None)


def test_last_day_closed_gives_the_final_actual() -> None:
    """Forecast from the end of the month's last day is what was spent."""
    daily = shaped("weekly", np.random.default_rng(7))
    end = date(2026, 3, 31)
    fc = forecast(ScopeSeries(START, daily, end), seed=1)
    assert fc.model == "final" and fc.p10_micros == fc.p50_micros == fc.p90_micros == fc.actual_micros
    assert month_bounds(end) == (MONTH, end)


def test_statsmodels_second_opinion_only_where_the_band_straddles_the_budget() -> None:
    """heavy='auto' adds the UC fit when the budget lies inside P10-P90, not when it is far away."""
    daily = shaped("weekly", np.random.default_rng(8))[: (ORIGIN - START).days + 1]
    probe = forecast(ScopeSeries(START, daily, ORIGIN), seed=1)
    near = forecast(ScopeSeries(START, daily, ORIGIN, budget_micros=probe.p50_micros), seed=1, heavy_mode="auto")
    far = forecast(ScopeSeries(START, daily, ORIGIN, budget_micros=probe.p90_micros * 2), seed=1, heavy_mode="auto")
    assert near.model == "dow-bootstrap+uc"
    assert far.model == "dow-bootstrap"
    assert near.p10_micros < near.p50_micros < near.p90_micros
    assert abs(near.p50_micros - probe.p50_micros) < 0.1 * probe.p50_micros


def test_a_statsmodels_fit_that_does_not_converge_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the UC fit fails to converge the cheap model's paths stand alone, and the inputs say why."""
    from spendgate.forecaster import heavy

    daily = shaped("weekly", np.random.default_rng(9))[: (ORIGIN - START).days + 1]
    monkeypatch.setattr(heavy, "MAX_ITER", 1)
    fc = forecast(ScopeSeries(START, daily, ORIGIN), seed=1, heavy_mode="always")
    assert fc.model == "dow-bootstrap" and fc.inputs["uc"] == "fit failed; cheap model only"
    assert heavy.simulate_uc(daily[-30:].astype(float), 10, 100, np.random.default_rng(0)) is None
