"""Sample paths of future daily spend from a cheap, vectorised model. Pure: numpy only, no I/O.

The full model ("dow-bootstrap") for a scope with at least ``MIN_FULL_DAYS`` closed days:

- the history is cut into 7-day blocks ending at the last closed day, so every block holds each
  weekday once, at the same position as in the future blocks that start the next day;
- lasting level jumps in the history are found first (``_level_jumps``: a robust per-block level,
  the median of the three blocks after against the three before, so a burst that falls back does
  not count); their rate per day and their sizes are kept;
- a local-level model runs on the log of the block means: the level noise and the week-to-week
  level variance come from the moments of the block-to-block differences (a local level plus
  noise makes those differences an MA(1): lag-1 autocovariance = -noise variance), leaving out the
  differences a found jump straddles (jumps are modelled on their own, below); a scalar Kalman
  filter gives the current level and how sure it is, taking each found jump as a known
  intervention so the level moves to it at once; the level's point estimate is half that filter's
  and half a second filter's whose smoothing is the one that, run over the scope's own history,
  best predicted the following three weeks (``_tuned_level_var``): the moments over-state how much
  a steady level moves, which made the point estimate chase the last week's noise; with under
  eleven weeks (one to three months of history, too few to score smoothings on) the second filter
  is a smooth one, a tenth of the moments' level variance (``SHORT_HISTORY_SMOOTHING``), which took
  0.15-2.3 points off the day-10 P50 error of a short history on every series shape but recurring
  steps (``benchmarks/forecast_p50.py --history 63``; docs/forecaster.md "Short histories"); the
  level's uncertainty is the moment filter's plus the two readings' disagreement (a two-point
  mixture's variance), so where they part (a step the smooth one lags) the band widens;
- when the last days (up to ``CHANGE_DAYS``) sit far from the level as it stood before them (a
  burst, or a step the half-week-old block level has not seen yet) the level becomes a mixture of
  "burst" and "new level", weighted by how many days the change has lasted, and the gap between
  the two widens its uncertainty, so the paths cover both readings;
- within-week shape (weekday/weekend, bursts and all) is bootstrapped: each future week copies the
  ratios day/block-mean of one recent historical block, drawn at random per path;
- each path: level error + daily random walk of the level, a per-week noise factor, times the
  bootstrapped shape; and, when the history had jumps, a future jump at the rate seen there
  (the clock starting ``UNSEEN_JUMP_DAYS`` back, for a jump too recent to be seen yet) of a size
  drawn from the ones seen, either way. A scope that never jumped gets no jumps. Non-negative by
  construction.

Why the jumps: a level that steps ×0.5-×2 every few months is not a random walk. Fitted as one,
the walk's variance is inflated everywhere and still misses the step itself: on a backtest
series with such steps the P10-P90 band held the month's total 66 % of the time, 33 % in the
forecasts whose remaining month held a step and 12-40 % in the first days after one. A jump
process learnt from the scope's own history puts the tails where the steps are.

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
POINT_AHEAD_BLOCKS = 3
"""The level's point estimate is tuned to predict the mean of this many weeks ahead (a month's rest)."""
POINT_SHARE = 0.5
"""Share of the point level taken from the history-tuned filter; the rest from the moment-based one."""
SHORT_HISTORY_SMOOTHING = 0.1
"""With too few weeks to tune the smoothing on (under eleven), the tuned filter's level variance is this
share of the moments' one: a steady level is the likelier reading of one to three months."""
_SMOOTHING_GRID = np.logspace(-2.5, 1, 15)
"""Level variance per week, in units of the week-noise variance, the history-tuned filter chooses from."""
CHANGE_Z = 3.0
"""Standard errors the last days must sit from the level before the level hedges toward them."""
CHANGE_DAYS = 14
"""How far back the recent-change hedge looks for the start of a new level."""
JUMP_Z = 3.0
"""Noise multiples a lasting change in the block level must exceed to count as a jump."""
MIN_JUMP = 0.2
"""...and at least this (log), about a fifth up or down."""
UNSEEN_JUMP_DAYS = 4
"""A jump in the last days is not yet visible (the recent-change hedge needs a few days to see
one), so the jump clock starts this many days before the first forecast day."""
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
    jump_rate_per_day: float = 0.0
    """Rate of lasting level jumps seen in the scope's own history (0 when none was seen)."""
    jump_sizes: tuple[float, ...] = ()
    """Their sizes (log of the new level over the old); a future jump draws one, either sign."""


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


def _kalman_level(log_means: FloatArray, noise: float, level_var: float,
                  shocks: dict[int, float] | None = None) -> tuple[float, float]:
    """Filtered level (log) at the last block and its variance.

    ``shocks`` (block -> variance) are known interventions: a detected jump opens the level up at
    the block it straddles and the next, so the filter moves to the new level at once.
    """
    a, p = float(log_means[0]), noise + level_var
    for i, y in enumerate(log_means[1:], start=1):
        p += level_var + (shocks or {}).get(i, 0.0)
        gain = p / (p + noise)
        a += gain * (float(y) - a)
        p *= 1 - gain
    return a, p


def _recent_change(recent: FloatArray, shapes: FloatArray, level: float, level_p: float,
                   ref: float, ref_p: float) -> tuple[float, float]:
    """Hedge between noise and a level change when the last days sit far from the level.

    The block level is centred half a week back, so a step in the last days barely moves it. The
    last ``k`` days (k = 1..``CHANGE_DAYS``, the most significant), weekday-adjusted, are compared
    with the level as it stood before them (``ref``: filtered up to the blocks those days do not
    touch). When they sit more than ``CHANGE_Z`` standard errors away, the level becomes a mixture
    of "a burst that will pass" (weight 1/(n+1)) and "a new level" (weight n/(n+1)), n the days
    seen since the change: one day is an even bet, a week is nearly sure. The mixture's mean is
    the level and its variance (spread of the two readings plus each one's own) its uncertainty,
    so the paths span both readings while the evidence is thin.
    """
    usual = shapes.mean(axis=0)
    k_days = len(recent)
    dows = np.arange(7 - k_days % 7, 7 - k_days % 7 + k_days) % 7
    valid = usual[dows] >= 0.3
    if shapes.shape[0] < 3 or valid.sum() < 3:
        return level, level_p
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.log(np.where(shapes > 0, shapes, np.nan) / usual)[:, usual >= 0.3]
    bias = float(np.nanmean(resid))
    sigma = 1.4826 * float(np.nanmedian(np.abs(resid - np.nanmedian(resid))))
    if not np.isfinite(sigma) or sigma <= 0 or not np.isfinite(bias):
        return level, level_p
    best_t, best_m, best_n = 0.0, ref, 0
    for k in range(1, k_days + 1):
        days = np.flatnonzero(valid[k_days - k:]) + k_days - k
        obs = recent[days]
        if len(days) < 1 or np.any(obs <= 0):
            continue
        m = float(np.mean(np.log(obs / usual[dows[days]]))) - bias
        t = (m - ref) / np.sqrt(sigma**2 / len(days) + ref_p)
        if abs(t) > abs(best_t):
            best_t, best_m, best_n = t, m, len(days)
    if abs(best_t) < CHANGE_Z:
        return level, level_p
    w = best_n / (best_n + 1.0)
    gap = best_m - ref
    return ref + w * gap, w * sigma**2 / best_n + (1 - w) * ref_p + w * (1 - w) * gap**2


def _level_jumps(closed: FloatArray, n_blocks: int) -> tuple[tuple[float, ...], tuple[int, ...], int]:
    """Lasting level jumps in the history: sizes (log new/old), the blocks they straddle, blocks searched.

    Each 7-day block gets a robust level: the median of its days' logs after dividing out the
    weekday shape, so a burst of a day or three barely moves it. At each block the median level of
    the three blocks after it is compared with the median of the three before it (the block
    itself, which may straddle the change, is left out). A change counts when it is more than
    ``JUMP_Z`` times the noise of that comparison (from the robust spread of the block-to-block
    differences) and at least ``MIN_JUMP``; a burst falls back, so the medians on either side agree
    and it does not count. Changes closer than three blocks are one jump (the biggest).
    """
    if n_blocks < 7:
        return (), (), 0
    tail = closed[len(closed) - 7 * n_blocks:].reshape(n_blocks, 7)
    means = tail.mean(axis=1, keepdims=True)
    usual = np.where(means > 0, tail / np.where(means > 0, means, 1.0), np.nan)
    usual_dow = np.nanmean(usual, axis=0) if np.any(np.isfinite(usual)) else np.ones(7)
    valid = np.isfinite(usual_dow) & (usual_dow >= 0.3)
    if valid.sum() < 3:
        return (), (), 0
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = np.log(np.where(tail > 0, tail, np.nan)[:, valid] / usual_dow[valid])
    if np.any(np.all(np.isnan(adjusted), axis=1)):
        return (), (), 0
    levels = np.nanmedian(adjusted, axis=1)
    diffs = np.diff(levels)
    spread = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs))))
    threshold = max(JUMP_Z * 0.7 * spread, MIN_JUMP)
    medians = np.median(np.lib.stride_tricks.sliding_window_view(levels, 3), axis=1)
    change = medians[4:] - medians[:-4]  # blocks j+1..j+3 against j-3..j-1, for j = 3..n-4
    taken: list[int] = []
    for i in np.argsort(-np.abs(change)):
        if abs(change[i]) <= threshold:
            break
        if all(abs(int(i) - t) >= 3 for t in taken):
            taken.append(int(i))
    taken.sort()
    return tuple(float(change[i]) for i in taken), tuple(i + 3 for i in taken), len(change)


def fit_full(closed: FloatArray) -> tuple[Fit, FloatArray]:
    """Fit the full model; returns the fit and the shape blocks (blocks × 7 ratios to the block mean)."""
    n_blocks = min(len(closed) // 7, LEVEL_BLOCKS)
    means = _block_means(closed, n_blocks)
    floor = max(float(means.mean()) * 0.01, 1e-9)
    log_means = np.log(np.maximum(means, floor))
    jumps, at, searched = _level_jumps(closed, n_blocks)
    # The jumps are modelled on their own (below), so the two differences each one straddles are
    # left out of the level's moments, and the filter takes each as a known intervention.
    diffs = np.diff(log_means)
    keep = np.ones(len(diffs), dtype=bool)
    for j in at:
        keep[j - 1:j + 1] = False
    noise, level_var = _level_moments(diffs[keep])
    shocks = {j + d: size**2 for j, size in zip(at, jumps, strict=True) for d in (0, 1)}
    tuned_var = _tuned_level_var(log_means, at, jumps, noise, level_var)
    level, level_p = _point_level(log_means, noise, level_var, tuned_var, shocks)
    k = min(n_blocks, SHAPE_BLOCKS)
    tail = closed[len(closed) - 7 * k:].reshape(k, 7)
    block_mean = tail.mean(axis=1, keepdims=True)
    shapes = np.where(block_mean > 0, tail / np.where(block_mean > 0, block_mean, 1.0), 1.0)
    recent = closed[-min(CHANGE_DAYS, 7 * (n_blocks - 2)):]
    blocks_before = (len(recent) + 6) // 7
    ref, ref_p = _point_level(log_means[:-blocks_before], noise, level_var, tuned_var, shocks)
    level, level_p = _recent_change(recent, shapes, level, level_p, ref, ref_p + blocks_before * level_var)
    fit = Fit("dow-bootstrap", float(np.exp(level)), float(np.sqrt(level_p)),
              float(np.sqrt(level_var / 7)), float(np.sqrt(noise)), n_blocks,
              len(jumps) / (7.0 * searched) if jumps else 0.0, jumps)
    return fit, shapes


def _tuned_level_var(log_means: FloatArray, at: tuple[int, ...], jumps: tuple[float, ...],
                     noise: float, level_var: float, warm: int = 4) -> float:
    """The level variance whose filter, run over the scope's own history, best predicted what came next.

    At every past block (after ``warm``) each candidate filter's level is compared with the mean of
    the next ``POINT_AHEAD_BLOCKS`` blocks, as a forecast made then would have been; the candidate
    with the least absolute error wins. Found jumps are taken out first (they are modelled on their
    own). Too short a history to score on takes ``SHORT_HISTORY_SMOOTHING`` of ``level_var``: with two
    months of weeks the moments credit the level with about as much movement as the noise, and a level
    that chases the last weeks is what made the day-10 P50 of a short history miss most.
    """
    y = log_means.copy()
    for j, size in zip(at, jumps, strict=True):
        y[j + 1:] -= size
        y[j] -= size / 2
    targets = np.convolve(y, np.ones(POINT_AHEAD_BLOCKS) / POINT_AHEAD_BLOCKS, mode="valid")
    if len(y) < warm + POINT_AHEAD_BLOCKS + 4:
        return SHORT_HISTORY_SMOOTHING * level_var
    q = _SMOOTHING_GRID * noise
    a = np.full(len(q), float(y[0]))
    p = np.full(len(q), noise + level_var)
    loss = np.zeros(len(q))
    for t in range(1, len(y)):
        p = p + q
        gain = p / (p + noise)
        a = a + gain * (float(y[t]) - a)
        p = p * (1 - gain)
        if t >= warm and t + 1 < len(targets):
            loss += np.abs(targets[t + 1] - a)  # targets[t + 1]: the mean of blocks t+1 .. t+ahead
    return float(q[int(np.argmin(loss))])


def _point_level(log_means: FloatArray, noise: float, level_var: float, tuned_var: float,
                 shocks: dict[int, float]) -> tuple[float, float]:
    """The level: half from the history-tuned filter, half from the moment-based one; the moment-based
    filter's variance, so the bands keep their width."""
    tuned, _ = _kalman_level(log_means, noise, tuned_var, shocks)
    moments, variance = _kalman_level(log_means, noise, level_var, shocks)
    spread = POINT_SHARE * (1 - POINT_SHARE) * (tuned - moments) ** 2  # the two readings' disagreement
    return POINT_SHARE * tuned + (1 - POINT_SHARE) * moments, variance + spread


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
    if fit.jump_sizes and horizon:
        # A lasting jump, at the rate and of the sizes seen in the scope's history, either way.
        jumps = np.asarray(fit.jump_sizes)
        when = rng.exponential(1.0 / fit.jump_rate_per_day, size=(paths, 1)) - UNSEEN_JUMP_DAYS
        size = np.abs(jumps[rng.integers(0, len(jumps), size=(paths, 1))]) * rng.choice([-1.0, 1.0], size=(paths, 1))
        log_level += np.where(day[None, :] >= when, size, 0.0)
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
