"""Who spends: teams and cost centers (derived from the virtual keys and the ledger's balances) and
the forecaster's latest month-end forecasts."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.store.forecasts.store import latest_forecasts
from spendgate.store.keys.store import team_directory


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
    month = period_containing(PeriodKind.MONTH, now, tz)
    rows = await team_directory(pool, month_starts_at=month.starts_at, month_start=month.start)
    return Teams(month=month.start, teams=[
        Team(team=r.team, cost_centers=r.cost_centers, developers=r.developers, active_keys=r.active_keys,
             revoked_keys=r.revoked_keys, month_spent_micros=r.month_spent_micros)
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
    """The latest forecast per scope; empty while the forecaster has written none."""
    return Forecasts(forecasts=[
        Forecast(scope=f.scope, month=f.month, as_of=f.as_of, actual_micros=f.actual_micros, p10_micros=f.p10_micros,
                 p50_micros=f.p50_micros, p90_micros=f.p90_micros, budget_micros=f.budget_micros,
                 p10_crosses_on=f.p10_crosses_on, p50_crosses_on=f.p50_crosses_on, p90_crosses_on=f.p90_crosses_on,
                 model=f.model, computed_at=f.computed_at)
        for f in await latest_forecasts(pool, scope)
    ])
