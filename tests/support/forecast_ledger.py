"""Three and a half months of usage for the forecast report's tests: two teams with monthly budgets,
weekday-heavy spend, and bob's spend tripling in the last week."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

START = date(2025, 12, 1)
LAST = date(2026, 3, 14)
TEAMS = {"platform": ("alice", "bob"), "web": ("carol",)}
BUDGETS = {"team:platform": 2_000_000_000, "team:web": 5_000_000_000}


def event_row(at: datetime, team: str, developer: str, cost: int) -> tuple[Any, ...]:
    return (uuid.uuid4(), at, "test", f"k-{developer}", developer, team, f"cc-{team}", f"s-{developer}-{at:%m%d}",
            f"acme/{team}", "gpt-5.1", cost)


async def add_events(pool: asyncpg.Pool, rows: list[tuple[Any, ...]]) -> None:
    await pool.executemany(
        """INSERT INTO usage_events (event_id, occurred_at, proxy_instance, key_id, developer, team, cost_center,
               session_id, repo, endpoint, model_requested, model_used, route_reason, stage, status, http_status,
               input_tokens, cached_tokens, output_tokens, reasoning_tokens, usage_source, input_price_micros,
               cached_price_micros, output_price_micros, price_fallback, cost_micros, retry, latency_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '/v1/responses', $10, $10, 'requested', 'ok', 'ok', 200,
                   1000, 0, 100, 0, 'reported', 1250000, 125000, 10000000, false, $11, false, 100)""",
        rows,
    )


async def fold_balances(pool: asyncpg.Pool) -> None:
    """Stand-in for the ledger's day balances, derived from the same events (developer, team and org scopes)."""
    await pool.execute("DELETE FROM balances")
    await pool.execute(
        """INSERT INTO balances (scope, period, period_start, spent_micros, requests)
           SELECT s.scope, 'day', (e.occurred_at AT TIME ZONE 'UTC')::date, sum(e.cost_micros), count(*)
           FROM usage_events e CROSS JOIN LATERAL
                (VALUES ('developer:' || e.developer), ('team:' || e.team), ('org')) AS s(scope)
           GROUP BY 1, 3"""
    )


async def seed(pool: asyncpg.Pool) -> None:
    """The events, their day balances and the two teams' budgets."""
    rng = np.random.default_rng(3)
    rows = []
    day = START
    while day <= LAST:
        for team, developers in TEAMS.items():
            for dev in developers:
                usd = (30.0 if day.weekday() < 5 else 6.0) * rng.lognormal(0, 0.2)
                if dev == "bob" and day > LAST - timedelta(days=7):
                    usd *= 3
                at = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
                rows.append(event_row(at, team, dev, round(float(usd) * 1e6)))
        day += timedelta(days=1)
    await add_events(pool, rows)
    await fold_balances(pool)
    await pool.executemany("INSERT INTO budgets (scope, monthly_micros) VALUES ($1, $2)", list(BUDGETS.items()))
