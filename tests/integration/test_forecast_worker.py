"""The forecaster worker on real PostgreSQL and the real Postgres bus, driven by an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from spendgate.core.bus import Consumer
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.core.config_services import ForecastSettings
from spendgate.domain import constants as c
from spendgate.domain.events import ForecastOverrun, ForecastUpdated, decode
from spendgate.forecaster.service import Forecaster, serve
from spendgate.runtime import Runtime
from tests.support.waiting import eventually

PLATFORM_BUDGET = 3_200_000_000  # $3,200 a month
QUIET_BUDGET = 50_000_000_000
MARCH = date(2026, 3, 1)
BURST_DAY = date(2026, 3, 10)


def end_of(day: date) -> datetime:
    """Local (UTC) midnight that closes ``day``: when the day-close run happens."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def usual_spend(day: date, rng: np.random.Generator) -> int:
    """$100 on weekdays, $25 at weekends, ±20 % noise, in micro-dollars."""
    usd = (100.0 if day.weekday() < 5 else 25.0) * rng.lognormal(-0.02, 0.2)
    return round(float(usd) * 1e6)


async def put_day(pool: asyncpg.Pool, scope: str, day: date, micros: int) -> None:
    """What the ledger keeps: the day's balance of a scope."""
    await pool.execute(
        """INSERT INTO balances (scope, period, period_start, spent_micros, requests) VALUES ($1, 'day', $2, $3, 1)
           ON CONFLICT (scope, period, period_start) DO UPDATE SET spent_micros = EXCLUDED.spent_micros""",
        scope, day, micros,
    )


@pytest.fixture
async def history(pool: asyncpg.Pool) -> np.random.Generator:
    """Budgets for two teams and five months of ordinary weekday/weekend spend before March."""
    await pool.executemany("INSERT INTO budgets (scope, monthly_micros, timezone) VALUES ($1, $2, 'UTC')",
                           [("team:platform", PLATFORM_BUDGET), ("team:quiet", QUIET_BUDGET)])
    rng = np.random.default_rng(11)
    day = date(2025, 10, 1)
    while day < MARCH:
        await put_day(pool, "team:platform", day, usual_spend(day, rng))
        await put_day(pool, "team:quiet", day, usual_spend(day, rng) // 10)
        day += timedelta(days=1)
    return rng


@pytest.fixture
async def bus_and_consumer(pool: asyncpg.Pool, db_url: str) -> AsyncIterator[tuple[PostgresBus, Consumer]]:
    bus = PostgresBus(pool, db_url, partitions=2)
    consumer = bus.consumer("forecast-test", [c.TOPIC_FORECAST])
    await consumer.start()
    yield bus, consumer
    await consumer.stop()


def settings_for(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path, bus="postgres",
                    forecast=ForecastSettings(paths=500))


async def test_p50_crossing_on_day_ten_raises_one_overrun_that_day(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, history: np.random.Generator,
    bus_and_consumer: tuple[PostgresBus, Consumer],
) -> None:
    """A burst on 10 March pushes P50 over the budget: one forecast_overrun as of that day, never again."""
    bus, consumer = bus_and_consumer
    settings = settings_for(db_url, tmp_path)
    worker = Forecaster(pool, bus, settings)
    overrun_days: list[date] = []
    passes = 0
    for offset in range(15):
        day = MARCH + timedelta(days=offset)
        spend = 1_500_000_000 if day == BURST_DAY else usual_spend(day, history)
        await put_day(pool, "team:platform", day, spend)
        await put_day(pool, "team:quiet", day, usual_spend(day, history) // 10)
        reruns = 2 if day == BURST_DAY else 1  # the hourly run repeats the day's forecast
        for _ in range(reruns):
            result = await worker.run_pass(at=end_of(day))
            passes += 1
            assert result.scopes == 2
            overrun_days += [day for _ in result.overruns]
        if day == BURST_DAY:
            worker = Forecaster(pool, bus, settings)  # a restarted worker remembers the overrun
    assert overrun_days == [BURST_DAY]

    records: list[bytes] = []

    async def read() -> int:
        records.extend(r.value for r in await consumer.poll(max_records=500, timeout_s=0.2))
        return len(records)

    await eventually(read, until=lambda n: n >= 2 * passes + 1, what="forecast events")
    events = [decode(v).data for v in records]
    overruns = [e for e in events if isinstance(e, ForecastOverrun)]
    updates = [e for e in events if isinstance(e, ForecastUpdated)]
    assert len(overruns) == 1 and len(updates) == 2 * passes
    o = overruns[0]
    assert (o.scope, o.month, o.as_of, o.budget_micros, o.team) == (
        "team:platform", MARCH, BURST_DAY, PLATFORM_BUDGET, "platform")
    assert o.p50_micros >= PLATFORM_BUDGET and o.p50_crosses_on is not None

    platform = {u.as_of: u for u in updates if u.scope == "team:platform"}
    assert all(platform[d].p50_micros < PLATFORM_BUDGET for d in platform if d < BURST_DAY)
    assert all(platform[d].p50_micros >= PLATFORM_BUDGET for d in platform if d >= BURST_DAY)
    assert all(u.p50_micros < QUIET_BUDGET for u in updates if u.scope == "team:quiet")
    stored = await pool.fetch("SELECT as_of, p50_micros, model, published_at FROM forecasts WHERE scope = $1",
                              "team:platform")
    assert len(stored) == 15 and all(r["published_at"] is not None for r in stored)
    assert {r["model"] for r in stored} <= {"dow-bootstrap", "dow-bootstrap+uc"}
    assert await pool.fetchval("SELECT count(*) FROM forecast_overruns") == 1


async def test_hourly_run_forecasts_today_from_the_part_already_spent(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, history: np.random.Generator,
    bus_and_consumer: tuple[PostgresBus, Consumer],
) -> None:
    """At 12:00 the as-of day is today, half elapsed; at midnight it is the day that just closed."""
    bus, _ = bus_and_consumer
    worker = Forecaster(pool, bus, settings_for(db_url, tmp_path))
    await put_day(pool, "team:platform", MARCH, 40_000_000)
    await worker.run_pass(at=datetime(2026, 3, 1, 12, tzinfo=UTC))
    row = await pool.fetchrow("SELECT * FROM forecasts WHERE scope = 'team:platform'")
    assert row is not None and row["as_of"] == MARCH and row["actual_micros"] == 40_000_000
    assert row["p50_micros"] > row["actual_micros"]
    assert worker.next_wake(datetime(2026, 3, 1, 12, 30, tzinfo=UTC)) == datetime(2026, 3, 1, 13, 30, tzinfo=UTC)
    assert worker.next_wake(datetime(2026, 3, 1, 23, 30, tzinfo=UTC)) == datetime(2026, 3, 2, tzinfo=UTC)
    await worker.run_pass(at=end_of(date(2026, 2, 28)))
    final = await pool.fetchrow("SELECT * FROM forecasts WHERE scope = 'team:platform' AND as_of = '2026-02-28'")
    assert final is not None and final["model"] == "final"
    assert final["p10_micros"] == final["p50_micros"] == final["p90_micros"] == final["actual_micros"]


async def test_every_developer_team_cost_center_and_the_org_that_spent_is_forecast_budgeted_or_not(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, history: np.random.Generator,
    bus_and_consumer: tuple[PostgresBus, Consumer],
) -> None:
    """The optimiser and the console need every scope's month end: scopes that spent within the lookback
    are forecast without a budget (no crossing, no overrun); keys, per-model balances and scopes quiet for
    longer than the lookback are not."""
    bus, _ = bus_and_consumer
    for day in (MARCH, MARCH + timedelta(days=1)):
        for scope in ("developer:dana", "cost_center:rnd", "org", "key:k1", "team:platform|model:gpt-5.1"):
            await put_day(pool, scope, day, 20_000_000)
    await put_day(pool, "developer:gone", date(2025, 1, 5), 9_000_000)  # long before the 182-day lookback
    worker = Forecaster(pool, bus, settings_for(db_url, tmp_path))
    result = await worker.run_pass(at=end_of(MARCH + timedelta(days=1)))
    rows = {r["scope"]: r for r in await pool.fetch("SELECT * FROM forecasts")}
    assert set(rows) == {"team:platform", "team:quiet", "developer:dana", "cost_center:rnd", "org"}
    assert result.scopes == 5 and result.overruns == []
    dana = rows["developer:dana"]
    assert dana["budget_micros"] is None and dana["p50_crosses_on"] is None
    assert dana["actual_micros"] == 40_000_000 and dana["p50_micros"] > dana["actual_micros"]


async def test_serve_forecasts_and_publishes_until_stopped(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, history: np.random.Generator,
    bus_and_consumer: tuple[PostgresBus, Consumer],
) -> None:
    """serve(runtime, stop) runs a pass at start, publishes it, and returns promptly once stop is set."""
    bus, consumer = bus_and_consumer
    stop = asyncio.Event()
    task = asyncio.create_task(serve(Runtime(settings_for(db_url, tmp_path), db_url, pool, bus), stop))
    got: list[bytes] = []

    async def read() -> int:
        got.extend(r.value for r in await consumer.poll(max_records=100, timeout_s=0.2))
        return len(got)

    await eventually(read, until=lambda n: n >= 2, timeout_s=30, what="first pass published")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert {decode(v).data.scope for v in got} == {"team:platform", "team:quiet"}
