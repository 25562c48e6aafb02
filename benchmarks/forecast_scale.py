"""How long forecasting 10,000 scopes takes, model alone and as a whole worker pass.

    .venv/bin/python -m benchmarks.forecast_scale [--scopes 10000]

1. model only: the production settings (1,000 paths, the statsmodels fit for at most 300 scopes
   whose band straddles the budget) over synthetic 26-week series of every shape;
2. a whole worker pass on a scratch database (benchmarks/support.py finds or starts the server):
   read 10,000 budgets and their day balances, forecast, write the forecasts table and publish
   10,000 events on the Postgres bus, then drop the database.

Targets: the whole pass costs at most 1.5x the model alone measured in the same run (reading and
writing must not dominate), and 10,000 scopes fit the hourly run's 5-minute slot (an absolute
limit: the schedule's, not a speed comparison). Exits non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, drop_db, fresh_db, postgres_server
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.core.config_services import ForecastSettings
from spendgate.core.logs import configure_logging
from spendgate.forecaster.engine import run_models
from spendgate.forecaster.model import ScopeSeries
from spendgate.forecaster.series import ForecastScope
from spendgate.forecaster.service import Forecaster

AS_OF = date(2026, 3, 10)
DAYS = 182
SHAPE = np.array([1.0, 1.1, 1.1, 1.05, 0.9, 0.25, 0.2])


def synthetic(rng: np.random.Generator, days: int = DAYS, end: date = AS_OF) -> NDArray[np.int64]:
    start = end - timedelta(days=days - 1)
    dows = (start.weekday() + np.arange(days)) % 7
    level = rng.lognormal(3, 1) * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
    usd = level * SHAPE[dows] * rng.lognormal(-0.05, 0.3, days)
    if rng.random() < 0.3:
        usd[rng.integers(0, days):] *= rng.choice([0.5, 2.0])
    if rng.random() < 0.1:  # a new scope: only the last couple of weeks
        usd[: days - int(rng.integers(1, 20))] = 0
    return np.asarray(np.rint(usd * 1e6), dtype=np.int64)


def budget_for(daily: NDArray[np.int64], rng: np.random.Generator) -> int:
    return max(int(daily[-28:].sum() / 28 * 31 * rng.uniform(0.7, 1.5)), 1_000_000)


def model_only(scopes: int, settings: ForecastSettings) -> float:
    rng = np.random.default_rng(1)
    start = AS_OF - timedelta(days=DAYS - 1)
    inputs = []
    for i in range(scopes):
        daily = synthetic(rng)
        budget = budget_for(daily, rng)
        inputs.append((ForecastScope(f"team:t{i}", budget, "UTC"), ScopeSeries(start, daily, AS_OF, 1.0, budget)))
    t0 = time.perf_counter()
    results = run_models(inputs, settings)
    elapsed = time.perf_counter() - t0
    models: dict[str, int] = {}
    for r in results:
        models[r.forecast.model] = models.get(r.forecast.model, 0) + 1
    print(f"model only: {scopes} scopes in {elapsed:.1f} s ({1000 * elapsed / scopes:.2f} ms/scope); "
          f"models: {', '.join(f'{k} {v}' for k, v in sorted(models.items()))}", flush=True)
    return elapsed


async def full_pass(scopes: int, server_url: str, settings: ForecastSettings) -> float:
    url = await fresh_db(server_url)
    try:
        pool = await asyncpg.create_pool(url, min_size=2, max_size=8)
        assert pool is not None
        rng = np.random.default_rng(2)
        start = AS_OF - timedelta(days=DAYS - 1)
        budgets, balances = [], []
        for i in range(scopes):
            daily = synthetic(rng)
            budgets.append((f"team:t{i}", budget_for(daily, rng)))
            balances += [(f"team:t{i}", "day", start + timedelta(days=d), int(v), 1)
                         for d, v in enumerate(daily) if v]
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("budgets", records=budgets, columns=["scope", "monthly_micros"])
            await conn.copy_records_to_table("balances", records=balances,
                                             columns=["scope", "period", "period_start", "spent_micros", "requests"])
        print(f"full pass: seeded {scopes} budgets and {len(balances)} day balances", flush=True)
        worker = Forecaster(pool, PostgresBus(pool, url), Settings(database_url=url, forecast=settings))
        at = datetime.combine(AS_OF + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        t0 = time.perf_counter()
        result = await worker.run_pass(at=at)
        elapsed = time.perf_counter() - t0
        published = await pool.fetchval("SELECT count(*) FROM bus_log WHERE topic = 'spendgate.forecast.v1'")
        print(f"full pass: {result.scopes} scopes read, forecast, stored and published ({published} events, "
              f"{len(result.overruns)} overruns) in {elapsed:.1f} s", flush=True)
        await pool.close()
        return elapsed
    finally:
        await drop_db(server_url, url)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scopes", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging("warning")
    settings = ForecastSettings()
    print(f"{args.scopes} scopes, {DAYS} days of history each, {settings.paths} paths, "
          f"statsmodels fit for at most {settings.max_heavy_fits} scopes; {os.cpu_count()} CPUs", flush=True)
    model_s = model_only(args.scopes, settings)
    async with postgres_server() as server:
        pass_s = await full_pass(args.scopes, server, settings)
    verdict = Verdict("forecast scale")
    verdict.at_most("whole worker pass vs model alone", pass_s, model_s, 1.5, unit=" s", baseline_name="model")
    slot_s = 300.0 * args.scopes / 10_000
    verdict.check(f"{args.scopes:,} scopes within the hourly slot", f"{pass_s:.1f} s", f"<= {slot_s:g} s",
                  pass_s <= slot_s)
    return verdict.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
