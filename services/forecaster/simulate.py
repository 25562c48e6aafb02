"""Sample paths of future daily spend from a cheap, vectorised model. Pure: numpy only, no I/O.

The full model ("dow-bootstrap") for a scope with at least ``MIN_FULL_DAYS`` closed days:

- the history is cut into 7-day blocks ending at the last closed day, so every block holds each
  weekday once, at the same position as in the future blocks that start the next day;
- a local-level model runs on the log of the block means: the level noise and the week-to-week
  level variance come from the moments of the block-to-block differences (a local level plus
  noise makes those differences an MA(1): lag-1 autocovariance = -noise variance), and a scalar
  Kalman filter gives the current level and how sure it is; when the last days sit far from it
  (a burst, or a step the half-week-old block level has not seen yet) the level moves halfway
  toward them and the gap widens its uncertainty, so the paths cover both readings;
- within-week shape (weekday/weekend, bursts and all) is bootstrapped: each future week copies the
  ratios day/block-mean of one recent historical block, drawn at random per path;
- each path: level error + daily random walk of the level, a per-week noise factor, times the
  bootstrapped shape. Non-negative by construction.

The fallback ("dow-prior") for fewer closed days (a new team, a new key): weekday factors from
elsewhere (``prior_dow``: the organisation's pooled shape from earlier months, else a stated
default), the level from the few days seen, and deliberately wide level and daily noise. It is
never a straight line: the P50 path keeps the weekday shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

MIN_FULL_DAYS = 21
"""Closed days needed for the full model (three whole weeks); fewer uses the fallback."""
SHAPE_BLOCKS = 8
"""Recent weeks whose within-week shape the bootstrap draws from."""
LEVEL_BLOCKS = 26
"""Weeks the level model sees (about six months)."""
CHANGE_Z = 3.0
"""Standard errors the last days must sit from the level before the level hedges toward them."""
DEFAULT_DOW = np.array([1.26, 1.26, 1.26, 1.26, 1.26, 0.35, 0.35])
"""Monday..Sunday shape used when neither the scope nor the organisation has history: a working week."""
PRIOR_DAILY_SIGMA = 0.5
PRIOR_LEVEL_SIGMA = 0.6
PRIOR_WALK_SIGMA = 0.03
_PRIOR_SHRINK_DAYS = 7.0
"""The fallback's level uncertainty halves after about three weeks of its own days."""


@dataclass(frozen=True, slots=True)
class Fit:
    """What the cheap model learned; kept with every forecast as its inputs summary."""

    kind: str
    level_per_day: float
    level_sigma: float
    walk_sigma_per_day: float
    week_sigma: float
    blocks: int


def _block_means(closed: FloatArray, blocks: int) -> FloatArray:
    """Means of the last ``blocks`` whole 7-day blocks, oldest first."""
    tail = closed[len(closed) - 7 * blocks:]
    return np.asarray(tail.reshape(blocks, 7).mean(axis=1), dtype=np.float64)


def _level_moments(diffs: FloatArray) -> tuple[float, float]:
    """(noise variance, level variance per week) of a local level from its block-mean differences."""
    if len(diffs) < 2:
        return 0.05, 0.01
    var = float(np.var(diffs))
    acov = float(np.mean((diffs[1:] - diffs.mean()) * (diffs[:-1] - diffs.mean()))) if len(diffs) > 2 else 0.0
    noise = min(max(-acov, 0.0), var / 2)
    level = var - 2 * noise
    # With few weeks the split is noisy: shrink it toward half-and-half.
    w = len(diffs) / (len(diffs) + 6.0)
    noise = w * noise + (1 - w) * var / 4
    level = w * level + (1 - w) * var / 2
    return max(noise, 1e-4), max(level, 1e-5)


def _kalman_level(log_means: FloatArray, noise: float, level_var: float) -> tuple[float, float]:
    """Filtered level (log) at the last block and its variance."""
    a, p = float(log_means[0]), noise + level_var
    for y in log_means[1:]:
        p += level_var
        gain = p / (p + noise)
        a += gain * (float(y) - a)
        p *= 1 - gain
    return a, p


def _recent_change(last_week: FloatArray, shapes: FloatArray, level: float, level_p: float) -> tuple[float, float]:
    """Hedge between noise and a level change when the last days sit far from the level.

    The block level is centred half a week back, so a step in the last few days barely moves it.
    When the weekday-adjusted mean of the last ``k`` days (k = 2..7, the most significant) is more
    than ``CHANGE_Z`` standard errors away, the new level is taken halfway, with the gap added to
    its uncertainty: the paths then span both "a burst that will pass" and "a new level".
    """
    usual = shapes.mean(axis=0)
    valid = usual >= 0.3
    if shapes.shape[0] < 3 or valid.sum() < 3:
        return level, level_p
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.log(np.where(shapes > 0, shapes, np.nan) / usual)[:, valid]
    sigma = 1.4826 * float(np.nanmedian(np.abs(resid - np.nanmedian(resid))))
    if not np.isfinite(sigma) or sigma <= 0:
        return level, level_p
    best_t, best_m = 0.0, level
    for k in range(2, 8):
        days = np.flatnonzero(valid[7 - k:]) + 7 - k
        obs = last_week[days]
        if len(days) < 2 or np.any(obs <= 0):
            continue
        m = float(np.mean(np.log(obs / usual[days])))
        t = (m - level) / np.sqrt(sigma**2 / len(days) + level_p)
        if abs(t) > abs(best_t):
            best_t, best_m = t, m
    if abs(best_t) < CHANGE_Z:
        return level, level_p
    gap = (best_m - level) / 2
    return level + gap, level_p + gap**2


def fit_full(closed: FloatArray) -> tuple[Fit, FloatArray]:
    """Fit the full model; returns the fit and the shape blocks (blocks × 7 ratios to the block mean)."""
    n_blocks = min(len(closed) // 7, LEVEL_BLOCKS)
    means = _block_means(closed, n_blocks)
    floor = max(float(means.mean()) * 0.01, 1e-9)
    log_means = np.log(np.maximum(means, floor))
    noise, level_var = _level_moments(np.diff(log_means))
    level, level_p = _kalman_level(log_means, noise, level_var)
    k = min(n_blocks, SHAPE_BLOCKS)
    tail = closed[len(closed) - 7 * k:].reshape(k, 7)
    block_mean = tail.mean(axis=1, keepdims=True)
    shapes = np.where(block_mean > 0, tail / np.where(block_mean > 0, block_mean, 1.0), 1.0)
    level, level_p = _recent_change(closed[-7:], shapes, level, level_p)
    fit = Fit("dow-bootstrap", float(np.exp(level)), float(np.sqrt(level_p)),
              float(np.sqrt(level_var / 7)), float(np.sqrt(noise)), n_blocks)
    return fit, shapes


def simulate_full(fit: Fit, shapes: FloatArray, horizon: int, paths: int, rng: np.random.Generator) -> FloatArray:
    """Daily spend paths (paths × horizon) for the days after the last closed day."""
    weeks = -(-horizon // 7)
    level0 = fit.level_sigma * rng.standard_normal((paths, 1))
    walk = np.cumsum(fit.walk_sigma_per_day * rng.standard_normal((paths, horizon)), axis=1)
    week_noise = fit.week_sigma * rng.standard_normal((paths, weeks))
    drawn = rng.integers(0, shapes.shape[0], size=(paths, weeks))
    day = np.arange(horizon)
    shape = shapes[drawn[:, day // 7], day % 7]
    log_level = np.log(max(fit.level_per_day, 1e-12)) + level0 + walk + week_noise[:, day // 7]
    # The level model is on logs: centre it so the mean, not the median, of a day is the level.
    log_level -= 0.5 * (fit.level_sigma**2 + fit.week_sigma**2)
    return np.asarray(np.exp(log_level) * shape, dtype=np.float64)


def fit_prior(closed: FloatArray, closed_dows: NDArray[np.int64], prior_dow: FloatArray | None,
              partial: float, partial_weight: float, partial_dow: int) -> tuple[Fit, FloatArray] | None:
    """Fallback fit: weekday factors from elsewhere, level from the few days seen; None if none seen."""
    factors = DEFAULT_DOW if prior_dow is None else prior_dow / max(float(prior_dow.mean()), 1e-12)
    weight = float(factors[closed_dows].sum()) + partial_weight * float(factors[partial_dow])
    if weight <= 0 or float(closed.sum()) + partial <= 0:
        return None
    level = (float(closed.sum()) + partial) / weight
    days_seen = len(closed) + partial_weight
    level_sigma = PRIOR_LEVEL_SIGMA / np.sqrt(1 + days_seen / _PRIOR_SHRINK_DAYS)
    fit = Fit("dow-prior", level, float(level_sigma), PRIOR_WALK_SIGMA, PRIOR_DAILY_SIGMA, 0)
    return fit, factors


def simulate_prior(fit: Fit, factors: FloatArray, future_dows: NDArray[np.int64], paths: int,
                   rng: np.random.Generator) -> FloatArray:
    """Daily spend paths for the fallback: level × weekday factor × wide log-normal daily noise."""
    horizon = len(future_dows)
    level0 = fit.level_sigma * rng.standard_normal((paths, 1))
    walk = np.cumsum(fit.walk_sigma_per_day * rng.standard_normal((paths, horizon)), axis=1)
    daily = fit.week_sigma * rng.standard_normal((paths, horizon))
    centre = 0.5 * (fit.level_sigma**2 + fit.week_sigma**2)
    log_level = np.log(max(fit.level_per_day, 1e-12)) + level0 + walk + daily - centre
    return np.asarray(np.exp(log_level) * factors[future_dows][None, :], dtype=np.float64)
