"""The regression estimate the optimiser and the guard share (spendgate.domain.learning)."""

from __future__ import annotations

import numpy as np
import pytest

from spendgate.domain.learning import MIN_SAMPLE, Regression, TooFew, regression


def scores(mean: float, n: int, seed: int) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(mean, 0.15, n), 0.0, 1.0)


def test_a_clearly_worse_candidate_is_past_the_tolerance_with_confidence() -> None:
    r = regression(scores(0.80, 400, 1), scores(0.70, 400, 2))
    assert isinstance(r, Regression)
    assert 0.09 < r.regression < 0.16
    assert r.lower > 0.02 and r.exceeds(0.02) and not r.within(0.02)


def test_an_equally_good_candidate_is_within_a_two_percent_tolerance() -> None:
    r = regression(scores(0.80, 3_000, 3), scores(0.80, 3_000, 4))
    assert isinstance(r, Regression)
    assert r.lower < 0 < r.upper
    assert r.within(0.02) and not r.exceeds(0.02)


def test_the_interval_narrows_with_more_turns() -> None:
    small = regression(scores(0.8, 50, 5), scores(0.8, 50, 6))
    large = regression(scores(0.8, 5_000, 5), scores(0.8, 5_000, 6))
    assert isinstance(small, Regression) and isinstance(large, Regression)
    assert large.upper - large.lower < (small.upper - small.lower) / 4


def test_too_few_turns_says_how_many_more_are_needed() -> None:
    r = regression([0.9] * 10, [0.9] * MIN_SAMPLE)
    assert isinstance(r, TooFew)
    assert r.needed == MIN_SAMPLE - 10


def test_the_estimate_is_reproducible() -> None:
    assert regression(scores(0.8, 200, 7), scores(0.75, 200, 8)) == regression(scores(0.8, 200, 7),
                                                                               scores(0.75, 200, 8))


@pytest.mark.parametrize("bad", [[1.5] * 40, [float("nan")] * 40, [-0.1] * 40])
def test_scores_outside_zero_to_one_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        regression(bad, [0.5] * 40)
