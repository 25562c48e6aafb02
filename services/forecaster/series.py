"""Daily spend series from PostgreSQL: the ledger's day balances now, or usage events as of a past day.

Live: ``balances`` rows with ``period = 'day'`` (local dates in the scope's timezone, kept by the
ledger). As of a day (audits, tests): the ledger as it stood at the end of that day, summed from
``usage_events`` whose ``occurred_at`` is before the local midnight that ends it, since balances
only hold current totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from spendgate.core.db import Conn
from spendgate.domain.enforcement.policy import effective_budget_micros
from spendgate.domain.periods import PeriodKind, period_of
from spendgate.store.balances import store as balances
from spendgate.store.budgets import store as budgets
from spendgate.store.usage import store as usage

DOW_WEEKS = 8


FORECAST_KINDS = ("org", "developer", "team", "cost_center")
"""Besides every scope with a monthly budget, these scopes are forecast whenever they spent
within the lookback, budgeted or not: the optimiser and the console need every team's and developer's
month end, not only the budgeted ones'."""


@dataclass(frozen=True, slots=True)
class ForecastScope:
    scope: str
    monthly_micros: int | None
    """The monthly budget plus any raise still active at the time asked about; None without one."""
    timezone: str


async def forecast_scopes(conn: Conn, at: datetime, *, since: date, default_timezone: str,
                          only: str | None = None) -> list[ForecastScope]:
    """Every scope with a monthly budget, and every developer, team, cost center and the org that spent
    since ``since`` without one (or just ``only``); raises active at ``at`` included.

    The budget as known at ``at`` (``as_of``): a raise created after ``at`` does not count, so a run or
    an audit set in the past sees the budget it would have seen then. An unbudgeted scope's days are in
    the default timezone (the ledger keeps its day balances there).
    """
    wanted = None if only is None else [only]
    raises = await budgets.active_raises(conn, at, wanted)
    out: dict[str, ForecastScope] = {}
    configured = await budgets.budgets_of(conn, wanted)
    for b in configured:
        monthly = effective_budget_micros(b.monthly_micros, raises, b.scope, at, as_of=True)
        if monthly is not None:
            out[b.scope] = ForecastScope(b.scope, monthly, b.timezone)
    zones = {b.scope: b.timezone for b in configured}
    spent = await balances.scopes_with_day_spend(conn, since, kinds=FORECAST_KINDS)
    for scope in spent if only is None else [s for s in spent if s == only]:
        if scope not in out:
            out[scope] = ForecastScope(scope, None, zones.get(scope, default_timezone))
    return sorted(out.values(), key=lambda s: s.scope)


def _dense(rows: Sequence[tuple[date, int]], start: date, end: date) -> NDArray[np.int64]:
    out = np.zeros((end - start).days + 1, dtype=np.int64)
    for day, micros in rows:
        if start <= day <= end:
            out[(day - start).days] += micros
    return out


async def live_series(conn: Conn, scopes: Sequence[str], start: date, end: date) -> dict[str, NDArray[np.int64]]:
    """Day balances of ``scopes`` from ``start`` to ``end`` (local dates), zero-filled."""
    grouped: dict[str, list[tuple[date, int]]] = {s: [] for s in scopes}
    for r in await balances.day_spend(conn, scopes, start, end):
        grouped[r.scope].append((r.day, r.spent_micros))
    return {s: _dense(grouped[s], start, end) for s in scopes}


async def series_as_of(conn: Conn, scope: str, timezone: str, start: date, as_of: date) -> NDArray[np.int64]:
    """Daily spend from ``start`` to ``as_of`` as the ledger stood at the end of ``as_of``."""
    begins = period_of(PeriodKind.DAY, start, timezone).starts_at
    ends = period_of(PeriodKind.DAY, as_of, timezone).ends_at
    return _dense(await usage.daily_spend(conn, scope, timezone, begins, ends), start, as_of)


def pooled_dow(daily: NDArray[np.int64], start: date, *, weeks: int = DOW_WEEKS) -> NDArray[np.float64] | None:
    """Monday..Sunday spend factors (mean 1) from the last whole weeks of a series; None if too little."""
    n = min(len(daily) // 7, weeks) * 7
    if n < 14:
        return None
    tail = daily[len(daily) - n:].astype(np.float64)
    if tail.sum() <= 0:
        return None
    first = start + timedelta(days=len(daily) - n)
    dows = (first.weekday() + np.arange(n)) % 7
    sums = np.bincount(dows, weights=tail, minlength=7)
    return np.asarray(sums / sums.mean(), dtype=np.float64)
