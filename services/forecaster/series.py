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
from spendgate.domain.periods import PeriodKind, period_of

DOW_WEEKS = 8


@dataclass(frozen=True, slots=True)
class BudgetedScope:
    scope: str
    monthly_micros: int
    """The monthly budget plus any raise still active at the time asked about."""
    timezone: str


async def budgeted_scopes(conn: Conn, at: datetime, *, only: str | None = None) -> list[BudgetedScope]:
    """Every scope with a monthly budget (or just ``only``), raises active at ``at`` included."""
    rows = await conn.fetch(
        """SELECT b.scope, b.timezone, b.monthly_micros
                  + COALESCE((SELECT sum(r.amount_micros) FROM budget_raises r
                              WHERE r.scope = b.scope AND r.created_at <= $1 AND r.until > $1), 0) AS budget
           FROM budgets b
           WHERE b.monthly_micros IS NOT NULL AND ($2::text IS NULL OR b.scope = $2)
           ORDER BY b.scope""",
        at, only,
    )
    return [BudgetedScope(r["scope"], int(r["budget"]), r["timezone"]) for r in rows]


def _dense(rows: Sequence[tuple[date, int]], start: date, end: date) -> NDArray[np.int64]:
    out = np.zeros((end - start).days + 1, dtype=np.int64)
    for day, micros in rows:
        if start <= day <= end:
            out[(day - start).days] += micros
    return out


async def live_series(conn: Conn, scopes: Sequence[str], start: date, end: date) -> dict[str, NDArray[np.int64]]:
    """Day balances of ``scopes`` from ``start`` to ``end`` (local dates), zero-filled."""
    rows = await conn.fetch(
        """SELECT scope, period_start, spent_micros FROM balances
           WHERE period = 'day' AND scope = ANY($1::text[]) AND period_start BETWEEN $2 AND $3""",
        list(scopes), start, end,
    )
    grouped: dict[str, list[tuple[date, int]]] = {s: [] for s in scopes}
    for r in rows:
        grouped[r["scope"]].append((r["period_start"], int(r["spent_micros"])))
    return {s: _dense(grouped[s], start, end) for s in scopes}


def scope_condition(scope: str, param: int) -> tuple[str, list[str]]:
    """SQL condition on ``usage_events`` selecting a scope's events, and its parameter."""
    kind, _, name = scope.partition(":")
    column = {"key": "key_id", "developer": "developer", "team": "team"}.get(kind)
    if scope == "org":
        return "TRUE", []
    if column is None or not name:
        raise ValueError(f"unknown scope {scope!r}: use key:<id>, developer:<name>, team:<name> or org")
    return f"{column} = ${param}", [name]


async def series_as_of(conn: Conn, scope: str, timezone: str, start: date, as_of: date) -> NDArray[np.int64]:
    """Daily spend from ``start`` to ``as_of`` as the ledger stood at the end of ``as_of``."""
    condition, params = scope_condition(scope, 4)
    begins = period_of(PeriodKind.DAY, start, timezone).starts_at
    ends = period_of(PeriodKind.DAY, as_of, timezone).ends_at
    rows = await conn.fetch(
        f"""SELECT (occurred_at AT TIME ZONE $1)::date AS day, sum(cost_micros)::bigint AS spent
            FROM usage_events
            WHERE occurred_at >= $2 AND occurred_at < $3 AND {condition}
            GROUP BY 1""",
        timezone, begins, ends, *params,
    )
    return _dense([(r["day"], int(r["spent"])) for r in rows], start, as_of)


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
