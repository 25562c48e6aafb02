"""Balance view refresh: how soon a ledger update is seen by a proxy, and what polling costs.

    .venv/bin/python -m benchmarks.balance_view_refresh [--balances 20000] [--rate 500] [--seconds 5]

A database with ``--balances`` current-period balance rows; a writer updates random rows the way the
ledger folds (``version = nextval('balances_version')``) at ``--rate`` updates/s while a
``BalanceView`` polls. Every 50 ms a marker row is bumped at a random phase and the time until the
view shows it is recorded. Prints latency percentiles, the mean duration of one refresh and the rows
read per refresh (the overlap re-read included).

Baseline, same run and load: a bare poller that selects the marker row itself at the view's poll
interval (the floor for any poll-based view). Targets: the view's commit-to-view p50 and p99 at most
2x the bare poller's, and p99 within 1,000 ms (what enforcement's overshoot bound assumes). Exits
non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, scratch_database
from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.periods import PeriodKind
from spendgate.proxy.view import BalanceView

UPSERT = """INSERT INTO balances (scope, period, period_start, spent_micros, requests) VALUES ($1, 'day', $2, $3, 1)
            ON CONFLICT (scope, period, period_start) DO UPDATE SET
              spent_micros = balances.spent_micros + excluded.spent_micros, requests = balances.requests + 1,
              version = nextval('balances_version'), updated_at = now()"""


MARKER = "SELECT spent_micros FROM balances WHERE scope = $1 AND period = 'day' AND period_start = $2"


async def main(balances: int, rate: int, seconds: float) -> int:
    async with scratch_database() as url:
        return await measure(url, balances, rate, seconds)


async def marker_latencies(pool: asyncpg.Pool, scope: str, today: object, seconds: float,
                           seen: asyncio.Event, target: list[int]) -> list[float]:
    """Bump the marker at a random phase and time until ``seen`` is set for it, for ``seconds``."""
    latencies: list[float] = []
    rng = random.Random(2)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        await asyncio.sleep(rng.uniform(0.0, 0.1))  # random phase against the poll
        target[0] += 1
        seen.clear()
        t0 = time.perf_counter()
        await pool.execute(UPSERT, scope, today, 1)
        await asyncio.wait_for(seen.wait(), timeout=5)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


async def measure(url: str, balances: int, rate: int, seconds: float) -> int:
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
        durations.clear()
        rows_read.clear()
        latencies = await marker_latencies(pool, marker.scope, today, seconds, seen, target)
        await view.stop()

        poll_s = view.settings.balance_poll_interval_s
        bare_seen = asyncio.Event()

        async def bare_poller() -> None:
            while not stop.is_set():
                if (await pool.fetchval(MARKER, marker.scope, today) or 0) >= target[0]:
                    bare_seen.set()
                await asyncio.sleep(poll_s)

        poller = asyncio.create_task(bare_poller())
        bare = await marker_latencies(pool, marker.scope, today, seconds, bare_seen, target)
        stop.set()
        await asyncio.gather(task, poller)

        def pct(values: list[float], p: int) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, len(ordered) * p // 100)]

        poll_ms = view.settings.balance_poll_interval_s * 1000
        print(f"{balances} balances, {rate} ledger updates/s, poll {poll_ms:.0f} ms, "
              f"overlap {view.settings.balance_overlap_s:.0f} s")
        print(f"ledger commit -> view: p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms over {len(latencies)} samples")
        print(f"ledger commit -> bare poller (baseline): p50 {pct(bare, 50):.1f} ms, p99 {pct(bare, 99):.1f} ms, "
              f"max {max(bare):.1f} ms over {len(bare)} samples")
        print(f"one refresh: mean {statistics.mean(durations) * 1000:.2f} ms, rows read mean "
              f"{statistics.mean(rows_read):.0f}, max {max(rows_read)} over {len(durations)} refreshes; "
              f"start-up refreshes up to {startup[0]:.1f} ms / {startup[1]} rows")
        verdict = Verdict("balance view refresh")
        verdict.at_most("commit -> view p50", pct(latencies, 50), pct(bare, 50), 2, unit=" ms",
                        baseline_name="bare poller")
        verdict.at_most("commit -> view p99", pct(latencies, 99), pct(bare, 99), 2, unit=" ms",
                        baseline_name="bare poller")
        verdict.check("commit -> view p99 within 1 s", f"{pct(latencies, 99):.1f} ms", "<= 1000 ms",
                      pct(latencies, 99) <= 1000)
        return verdict.finish()
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--balances", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    a = parser.parse_args()
    sys.exit(asyncio.run(main(a.balances, a.rate, a.seconds)))
