"""What the self-improving policy measures: quality regressions with their uncertainty. Pure: no I/O.

Shared by ``policy suggest`` (is a cheaper model harmless for a segment?) and the guard (did a live
version make a segment worse?). The question is always the same: two samples of per-turn quality scores
in [0, 1], a *baseline* (the flagship, or the segment before the version went live) and a *candidate*
(the cheaper model, or the segment since); how much worse is the candidate, and how sure are we?

The regression is relative: ``(mean(baseline) − mean(candidate)) / mean(baseline)``, so "2 %" means the
candidate's turns score 2 % lower on average; negative means better. Its uncertainty comes from the
bootstrap (Efron): both samples are resampled with replacement ``BOOTSTRAP_ROUNDS`` times with a fixed
seed, and the bounds are percentiles of the resampled regressions (``docs/policy.md``, "The statistics").
The bootstrap assumes turns are independent draws from their segment; turns of one session are not quite,
so the bounds are a little optimistic when a few sessions dominate a segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_ROUNDS = 2_000
CONFIDENCE = 0.95
"""One-sided: the upper bound is the 95th percentile of the bootstrap regressions."""
MIN_SAMPLE = 30
"""Turns each side needs before a regression is estimated at all (below it: "needs N more turns")."""
MAX_RESAMPLED = 20_000
"""Larger samples are thinned to this many (evenly, in order) before resampling: the bound barely moves
past a few thousand turns and the work stays linear in the rounds."""
_CHUNK = 200
_SEED = 20261128


@dataclass(frozen=True, slots=True)
class Regression:
    """How much worse the candidate's turns score than the baseline's, with a bootstrap interval."""

    baseline_n: int
    candidate_n: int
    baseline_mean: float
    candidate_mean: float
    regression: float
    """Relative drop of the mean score (0.004 = 0.4 % worse; negative: better)."""
    lower: float
    """The 5th percentile of the bootstrap regressions."""
    upper: float
    """The 95th percentile: with 95 % confidence the regression is at most this."""

    def within(self, tolerance: float) -> bool:
        """The candidate is harmless within ``tolerance`` (0.02 = 2 %) with 95 % confidence."""
        return self.upper <= tolerance

    def exceeds(self, tolerance: float) -> bool:
        """The candidate is worse than ``tolerance`` with 95 % confidence (the lower bound is past it)."""
        return self.lower > tolerance


@dataclass(frozen=True, slots=True)
class TooFew:
    """Not enough turns to say anything: how many each side has and how many more it needs."""

    baseline_n: int
    candidate_n: int

    @property
    def needed(self) -> int:
        """More turns needed on the short side (the total the two sides are short of)."""
        return max(0, MIN_SAMPLE - self.baseline_n) + max(0, MIN_SAMPLE - self.candidate_n)


def regression(baseline: Sequence[float] | np.ndarray, candidate: Sequence[float] | np.ndarray, *,
               rounds: int = BOOTSTRAP_ROUNDS, seed: int = _SEED) -> Regression | TooFew:
    """The candidate's relative quality regression against the baseline, or :class:`TooFew` turns."""
    b, c = _sample(baseline), _sample(candidate)
    if len(b) < MIN_SAMPLE or len(c) < MIN_SAMPLE:
        return TooFew(len(b), len(c))
    rng = np.random.default_rng(seed)
    mb, mc = float(b.mean()), float(c.mean())
    resampled = np.concatenate([_relative(_means(b, n, rng), _means(c, n, rng))
                                for n in _chunks(rounds)])
    low, high = np.quantile(resampled, [1.0 - CONFIDENCE, CONFIDENCE])
    return Regression(len(b), len(c), mb, mc, _relative(np.array([mb]), np.array([mc]))[0].item(),
                      float(low), float(high))


def _sample(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1 or (a.size and (not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0)):
        raise ValueError("quality scores are finite numbers in [0, 1]")
    if a.size > MAX_RESAMPLED:
        a = a[np.linspace(0, a.size - 1, MAX_RESAMPLED).astype(np.int64)]
    return a


def _chunks(rounds: int) -> list[int]:
    return [min(_CHUNK, rounds - i) for i in range(0, rounds, _CHUNK)]


def _means(sample: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, sample.size, size=(rounds, sample.size))
    means: np.ndarray = sample[picks].mean(axis=1)
    return means


def _relative(baseline_means: np.ndarray, candidate_means: np.ndarray) -> np.ndarray:
    """``(b − c) / b``; a baseline that scores 0 makes any drop total (and no drop none)."""
    safe = np.where(baseline_means > 0, baseline_means, 1.0)
    return np.where(baseline_means > 0, (baseline_means - candidate_means) / safe, 0.0)
