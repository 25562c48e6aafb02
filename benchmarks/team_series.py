"""Daily spend of a team of engineers, built bottom-up, for the day-10 P50 benchmark.

The synthetic series of ``forecast_backtest.py`` are a level times a weekday shape times noise. A
real team's spend is made by people: each developer spends on the days they work, a heavy-tailed
amount; they take holidays and vacations (whole weeks near zero around New Year), join and leave
(lasting steps), have weeks of a big refactor (a burst that lasts days, not hours), and some teams
spend more at the start of a month. These families draw such series, one shape each, so a change to
the forecaster can be checked for robustness against shapes it was not tuned on.

Every family is a :data:`Maker` (``(rng, days) -> daily USD``), starting on ``START`` (a Monday).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray

START = date(2024, 1, 1)
Maker = Callable[[np.random.Generator, int], NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class Team:
    devs: int = 6
    """Developers at the start."""
    hires_per_year: float = 0.0
    """New developers joining (each stays); growth."""
    churn_per_year: float = 0.0
    """Developers joining and leaving (the head count wanders around ``devs``); steps."""
    refactors_per_year: float = 0.0
    """Per developer: weeks of a big refactor, spend ×3-6 on its working days; bursts."""
    month_start: float = 1.0
    """Spend multiplier on the first three working days of a month."""
    daily_sigma: float = 0.7
    """Log-normal spread of one developer's working day."""
    weekday_active: float = 0.85
    weekend_active: float = 0.06


def _holidays(days: int) -> NDArray[np.bool_]:
    """Days nearly everybody is off: New Year's week, a few public holidays, the end of December."""
    off = np.zeros(days, dtype=bool)
    for i in range(days):
        d = START + timedelta(days=i)
        if (d.month, d.day) in {(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)} or (d.month == 12 and d.day >= 24):
            off[i] = True
    return off


def team_spend(rng: np.random.Generator, days: int, team: Team) -> NDArray[np.float64]:
    """Daily USD of ``team`` over ``days`` days from ``START``."""
    dates = [START + timedelta(days=i) for i in range(days)]
    weekday = np.array([d.weekday() < 5 for d in dates])
    holiday = _holidays(days)
    # Each developer: when they are on the team, their usual working-day spend, their vacations.
    spans: list[tuple[int, int]] = [(0, days)] * team.devs
    for _ in range(rng.poisson(team.hires_per_year * days / 365)):
        spans.append((int(rng.integers(0, days)), days))
    for _ in range(rng.poisson(team.churn_per_year * days / 365)):
        at = int(rng.integers(0, days))
        if rng.random() < 0.5:
            spans.append((at, days))  # joins
        else:
            who = int(rng.integers(0, len(spans)))
            spans[who] = (spans[who][0], min(spans[who][1], at))  # leaves
    first_days = np.zeros(days, dtype=bool)
    counts: dict[tuple[int, int], int] = {}
    for i, d in enumerate(dates):
        if weekday[i] and not holiday[i]:
            n = counts.get((d.year, d.month), 0)
            if n < 3:
                first_days[i] = True
            counts[(d.year, d.month)] = n + 1
    total = np.zeros(days)
    for begin, end in spans:
        usual = rng.lognormal(np.log(40.0), 0.5)
        active_p = np.where(weekday, team.weekday_active, team.weekend_active)
        away = np.zeros(days, dtype=bool)
        for _ in range(rng.poisson(3.0 * days / 365)):  # about three vacations a year, 1-2 weeks
            at = int(rng.integers(0, days))
            away[at:at + 7 * int(rng.integers(1, 3))] = True
        boost = np.ones(days)
        for _ in range(rng.poisson(team.refactors_per_year * days / 365)):
            at = int(rng.integers(0, days))
            boost[at:at + int(rng.integers(4, 10))] *= rng.uniform(3, 6)
        works = (rng.random(days) < active_p) & ~away & ~(holiday & (rng.random(days) < 0.95))
        works[:begin] = False
        works[end:] = False
        amount = usual * rng.lognormal(-team.daily_sigma**2 / 2, team.daily_sigma, days) * boost
        total += np.where(works, amount, 0.0)
    return np.asarray(total * np.where(first_days, team.month_start, 1.0), dtype=np.float64)


def _family(team: Team) -> Maker:
    return lambda rng, days: team_spend(rng, days, team)


FAMILIES: dict[str, Maker] = {
    "team: steady, holidays": _family(Team()),
    "team: small (2), zero days": _family(Team(devs=2, daily_sigma=0.9)),
    "team: churn (steps)": _family(Team(churn_per_year=4.0)),
    "team: refactor weeks (bursts)": _family(Team(refactors_per_year=3.0)),
    "team: growing": _family(Team(devs=4, hires_per_year=4.0)),
    "team: month-start spend": _family(Team(month_start=1.8)),
    "team: all of it": _family(Team(devs=5, hires_per_year=2.0, churn_per_year=3.0, refactors_per_year=2.0,
                                    month_start=1.4)),
}
