"""The heavier statsmodels model, fitted only where it pays (see ``model.forecast``). Pure: no I/O.

An unobserved-components model on ``log1p(spend / scale)``: a stochastic local level (level
changes) plus a fixed weekly seasonal, fitted by maximum likelihood; sample paths come from the
state-space simulation anchored at the end of the history. About 70 ms a fit here, so the
forecaster runs it on the scopes whose cheap P10-P90 band straddles the budget, where a second
opinion changes a decision, and mixes its paths half-and-half with the cheap model's.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

MIN_HEAVY_DAYS = 56
"""Eight weeks: less than that and the weekly seasonal is barely identified."""
HEAVY_WINDOW_DAYS = 182
MAX_ITER = 60


def simulate_uc(closed: NDArray[np.float64], horizon: int, paths: int,
                rng: np.random.Generator) -> NDArray[np.float64] | None:
    """Daily spend paths (paths × horizon) after the last closed day; None when the fit fails.

    A fit that does not converge (statsmodels warns) is discarded rather than trusted: the caller
    keeps the cheap model's paths alone.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    y = closed[-HEAVY_WINDOW_DAYS:]
    scale = float(y[-28:].mean())
    if len(y) < MIN_HEAVY_DAYS or scale <= 0:
        return None
    x = np.log1p(y / scale)
    with warnings.catch_warnings():
        # A fit that does not converge is an expected outcome here: it becomes an error we catch
        # and fall back from. The optimiser's other chatter (overflow in a trial step, start
        # parameters) is silenced on purpose: the result is either finite and converged or discarded.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model = UnobservedComponents(x, level="local level", seasonal=7, stochastic_seasonal=False)
            result = model.fit(disp=False, maxiter=MAX_ITER)
            sims = result.simulate(
                nsimulations=horizon, repetitions=paths, anchor="end",
                rng=rng,
            )
        except (ConvergenceWarning, np.linalg.LinAlgError, ValueError):
            return None
    out = np.expm1(np.asarray(sims, dtype=np.float64).reshape(horizon, paths).T) * scale
    if not np.all(np.isfinite(out)):
        return None
    return np.asarray(np.maximum(out, 0.0), dtype=np.float64)
