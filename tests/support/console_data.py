"""A populated console for tests: the known month of Codex traffic folded by the real ledger, with budgets
set before the fold (so the ledger records the stage changes) and a month-end forecast for the org and
two teams, at a clock late in November 2026."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import asyncpg

from spendgate.domain.enforcement import budget_of
from spendgate.domain.events import UsageRecorded
from spendgate.domain.forecast import BandPoint, Forecast
from spendgate.store.budgets import store as budgets
from spendgate.store.forecasts.store import save_pass
from tests.support.admin_traffic import fold_through_ledger, known_month, usage
from tests.support.postgres import PostgresForTests

NOW = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
"""The console's clock: the last evening of the known month, so "this month" is November."""
QUERY = "?from=2026-11-01&to=2026-11-30"
LAST_DAY = datetime(2026, 11, 30, tzinfo=UTC)


def _spent(events: list[UsageRecorded], scope: str, before: datetime | None = None) -> int:
    def of(e: UsageRecorded) -> bool:
        return scope == "org" or scope in (f"team:{e.team}", f"developer:{e.developer}")
    return sum(e.cost_micros for e in events if of(e) and (before is None or e.occurred_at < before))


def budgets_for(events: list[UsageRecorded]) -> dict[str, int]:
    """Monthly budgets that make the month interesting: team platform crosses 80 % on the last day (today),
    payments ends far past its budget, alice near hers, the org comfortably inside its own."""
    platform_mid = (_spent(events, "team:platform", LAST_DAY) + _spent(events, "team:platform")) // 2
    return {"org": _spent(events, "org") * 3 // 2, "team:platform": platform_mid * 100 // 80,
            "team:payments": _spent(events, "team:payments") // 2, "developer:alice": _spent(events, "developer:alice")}


def month_forecast(scope: str, spent_micros: int, budget_micros: int) -> Forecast:
    """A forecast made on the 29th: the last day's band around a day's more spend."""
    as_of = date(2026, 11, 29)
    step = spent_micros // 29
    band = (BandPoint(date(2026, 11, 30), spent_micros + step // 2, spent_micros + step, spent_micros + 2 * step),)
    p10, p50, p90 = band[-1].p10_micros, band[-1].p50_micros, band[-1].p90_micros
    return Forecast(month=date(2026, 11, 1), as_of=as_of, actual_micros=spent_micros, p10_micros=p10,
                    p50_micros=p50, p90_micros=p90, budget_micros=budget_micros,
                    p10_crosses_on=None, p50_crosses_on=date(2026, 11, 30) if p50 > budget_micros else None,
                    p90_crosses_on=date(2026, 11, 30) if p90 > budget_micros else None, model="test", band=band)


def today_session() -> list[UsageRecorded]:
    """Bob's session on the last day (the console's today): three turns of a large context."""
    start = LAST_DAY + timedelta(hours=15)
    return [usage(developer="bob", session_id="sess-today-bob", turn_id=f"sess-today-bob-t{i}", repo="api",
                  at=start + timedelta(minutes=3 * i), model_requested="gpt-5.1-codex", input_tokens=120_000,
                  cached_tokens=20_000 * i, output_tokens=4_000) for i in range(3)]


async def seed_console(pool: asyncpg.Pool) -> list[UsageRecorded]:
    """Budgets, then the known month through the real ledger fold, then forecasts; returns the events."""
    events = [*known_month(), *today_session()]
    monthly = budgets_for(events)
    for scope, amount in monthly.items():
        await budgets.set_budget(pool, budget_of(scope, daily_micros=None, monthly_micros=amount), actor="test")
    await fold_through_ledger(pool, events)
    results = [(scope, month_forecast(scope, _spent(events, scope, LAST_DAY), monthly[scope]))
               for scope in ("org", "team:platform", "team:payments")]
    async with pool.acquire() as conn:
        await save_pass(conn, results, NOW - timedelta(hours=12))
    return events


@asynccontextmanager
async def seeded_console(server: PostgresForTests) -> AsyncIterator[tuple[asyncpg.Pool, list[UsageRecorded]]]:
    """A database of its own with :func:`seed_console`'s month, for a module of tests that only read it."""
    pool = await asyncpg.create_pool(await server.new_database(), min_size=1, max_size=10)
    assert pool is not None
    try:
        yield pool, await seed_console(pool)
    finally:
        await pool.close()
