"""Who spends: teams and cost centers (derived from the virtual keys and the ledger's balances) and
the forecaster's latest month-end forecasts."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from spendgate.domain.periods import PeriodKind, period_containing


class Team(msgspec.Struct, frozen=True, kw_only=True):
    team: str
    cost_centers: list[str]
    developers: list[str]
    active_keys: int
    revoked_keys: int
    month_spent_micros: int
    """The ledger's balance of ``team:<name>`` for the current month."""


class Teams(msgspec.Struct, frozen=True, kw_only=True):
    month: date
    teams: list[Team]


async def list_teams(pool: asyncpg.Pool, *, now: datetime, tz: str) -> Teams:
    month = period_containing(PeriodKind.MONTH, now, tz).start
    rows = await pool.fetch(
        """WITH t AS (SELECT team, cost_center, developer, revoked_at FROM virtual_keys
                      UNION ALL
                      SELECT DISTINCT team, cost_center, developer, NULL::timestamptz FROM usage_events
                      WHERE occurred_at >= $1)
           SELECT t.team,
                  array_agg(DISTINCT t.cost_center ORDER BY t.cost_center) AS cost_centers,
                  array_agg(DISTINCT t.developer ORDER BY t.developer) AS developers,
                  (SELECT count(*) FROM virtual_keys k WHERE k.team = t.team AND k.revoked_at IS NULL)
                      AS active_keys,
                  (SELECT count(*) FROM virtual_keys k WHERE k.team = t.team AND k.revoked_at IS NOT NULL)
                      AS revoked_keys,
                  coalesce((SELECT b.spent_micros FROM balances b WHERE b.scope = 'team:' || t.team
                            AND b.period = 'month' AND b.period_start = $2), 0) AS spent
           FROM t GROUP BY t.team ORDER BY spent DESC, t.team""",
        period_containing(PeriodKind.MONTH, now, tz).starts_at, month,
    )
    return Teams(month=month, teams=[
        Team(team=r["team"], cost_centers=list(r["cost_centers"]), developers=list(r["developers"]),
             active_keys=r["active_keys"], revoked_keys=r["revoked_keys"], month_spent_micros=r["spent"])
        for r in rows
    ])


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    month: date
    as_of: date
    actual_micros: int
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int | None
    p10_crosses_on: date | None
    p50_crosses_on: date | None
    p90_crosses_on: date | None
    """The day each band is forecast to cross the monthly budget, if it does this month."""
    model: str
    computed_at: datetime


class Forecasts(msgspec.Struct, frozen=True, kw_only=True):
    forecasts: list[Forecast]


async def list_forecasts(pool: asyncpg.Pool, *, scope: str | None) -> Forecasts:
    """The latest forecast per scope; empty while the forecaster has written none (or has not landed)."""
    if await pool.fetchval("SELECT to_regclass('forecasts')") is None:
        return Forecasts(forecasts=[])
    rows = await pool.fetch(
        """SELECT DISTINCT ON (scope) scope, month, as_of, actual_micros, p10_micros, p50_micros, p90_micros,
                  budget_micros, p10_crosses_on, p50_crosses_on, p90_crosses_on, model, computed_at
           FROM forecasts WHERE $1::text IS NULL OR scope = $1
           ORDER BY scope, as_of DESC""", scope)
    return Forecasts(forecasts=[Forecast(**dict(r)) for r in rows])
