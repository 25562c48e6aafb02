"""Balance view refresh: how soon a ledger update is seen by a proxy, and what polling costs.

    .venv/bin/python -m benchmarks.balance_view_refresh [--balances 20000] [--rate 500] [--seconds 5]

A database with ``--balances`` current-period balance rows; a writer updates random rows the way the
ledger folds (``version = nextval('balances_version')``) at ``--rate`` updates/s while a
``BalanceView`` polls. Every 50 ms a marker row is bumped at a random phase and the time until the
view shows it is recorded. Prints latency percentiles, the mean duration of one refresh and the rows
read per refresh (the overlap re-read included).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime

import asyncpg

from benchmarks.ledger_fold import drop_db, fresh_db
from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.periods import PeriodKind
from spendgate.proxy.view import BalanceView

UPSERT = """INSERT INTO balances (scope, period, period_start, spent_micros, requests) VALUES ($1, 'day', $2, $3, 1)
            ON CONFLICT (scope, period, period_start) DO UPDATE SET
              spent_micros = balances.spent_micros + excluded.spent_micros, requests = balances.requests + 1,
              version = nextval('balances_version'), updated_at = now()"""


async def main(balances: int, rate: int, seconds: float) -> None:
    url = await fresh_db()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=6)
    today = datetime.now(UTC).date()
    try:
        await pool.executemany(UPSERT, [(f"key:k{i}", today, 1) for i in range(balances)])
        view = BalanceView(pool, dsn=url, settings=EnforcementSettings())
        durations: list[float] = []
        rows_read: list[int] = []
        refresh = view.refresh
        marker = BalanceKey("key:marker", PeriodKind.DAY, today)
        target = [0]
        seen = asyncio.Event()

        async def timed() -> int:
            t0 = time.perf_counter()
            n = await refresh()
            durations.append(time.perf_counter() - t0)
            rows_read.append(n)
            if view.settled_micros(marker) >= target[0]:
                seen.set()
            return n

        view.refresh = timed  # type: ignore[method-assign]
        await view.start()
        stop = asyncio.Event()

        async def writer() -> None:
            rng = random.Random(1)
            interval = 1 / rate
            nxt = time.perf_counter()
            while not stop.is_set():
                await pool.execute(UPSERT, f"key:k{rng.randrange(balances)}", today, 1)
                nxt += interval
                await asyncio.sleep(max(0.0, nxt - time.perf_counter()))

        task = asyncio.create_task(writer())
        # The first balance_overlap_s after start re-read every current row (nothing is known to have
        # committed yet); report those refreshes apart from the steady state.
        await asyncio.sleep(view.settings.balance_overlap_s + 0.6)
        startup = (max(durations) * 1000, max(rows_read))
        latencies: list[float] = []
        rng = random.Random(2)
        deadline = time.perf_counter() + seconds
        durations.clear()
        rows_read.clear()
        while time.perf_counter() < deadline:
            await asyncio.sleep(rng.uniform(0.0, 0.1))  # random phase against the poll
            target[0] += 1
            seen.clear()
            t0 = time.perf_counter()
            await pool.execute(UPSERT, marker.scope, today, 1)
            await asyncio.wait_for(seen.wait(), timeout=5)
            latencies.append((time.perf_counter() - t0) * 1000)
        stop.set()
        await task
        await view.stop()
        ordered = sorted(latencies)

        def pct(p: int) -> float:
            return ordered[min(len(ordered) - 1, len(ordered) * p // 100)]

        poll_ms = view.settings.balance_poll_interval_s * 1000
        print(f"{balances} balances, {rate} ledger updates/s, poll {poll_ms:.0f} ms, "
              f"overlap {view.settings.balance_overlap_s:.0f} s")
        print(f"ledger commit -> view: p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {ordered[-1]:.1f} ms "
              f"over {len(latencies)} samples (target: 1,000 ms)")
        print(f"one refresh: mean {statistics.mean(durations) * 1000:.2f} ms, rows read mean "
              f"{statistics.mean(rows_read):.0f}, max {max(rows_read)} over {len(durations)} refreshes; "
              f"start-up refreshes up to {startup[0]:.1f} ms / {startup[1]} rows")
    finally:
        await pool.close()
        await drop_db(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--balances", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    a = parser.parse_args()
    asyncio.run(main(a.balances, a.rate, a.seconds))
