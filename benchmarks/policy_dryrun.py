"""Policy dry-run throughput: a 30-day replay of 1,000,000 stored usage events through a proposal.

    .venv/bin/python -m benchmarks.policy_dryrun [--events 1000000]

Creates a scratch database (benchmarks/support.py finds or starts the server), loads the events
with COPY (200 developers in 20 teams, Codex sessions of a few turns, cached tokens, retries), then
times ``spendgate.admin.dryrun.dry_run`` with budgets on every developer, team and the org. The
baseline in the same run is reading the same rows through the same cursor without deciding
anything: the ratio is the decision's own cost. Targets: the dry-run at most 15x that bare read,
and 1,000,000 events under 60 s (the operator's wait, an absolute limit). Exits non-zero when one
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, scratch_database
from spendgate.admin.cache import cache_report
from spendgate.admin.dryrun import FETCH_ROWS, dry_run
from spendgate.admin.reports import chargeback
from spendgate.admin.window import Window
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.store.usage.reads import replay_batches

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DEVELOPERS = [(f"dev{i:03d}", f"team{i % 20:02d}") for i in range(200)]
PRICES = PriceTable()


def rows(n: int, seed: int = 1) -> list[tuple[object, ...]]:
    rnd = random.Random(seed)
    price = PRICES.lookup("gpt-5.1-codex").price
    start = NOW - timedelta(days=30)
    step_s = 30 * 86_400 / n
    out: list[tuple[object, ...]] = []
    sessions: dict[str, tuple[str, int]] = {}
    for i in range(n):
        dev, team = DEVELOPERS[rnd.randrange(len(DEVELOPERS))]
        sid, turns = sessions.get(dev, ("", 0))
        if not sid or rnd.random() < 0.05:
            sid, turns = f"{dev}-{i}", 0
        if rnd.random() < 0.3:
            turns += 1
        sessions[dev] = (sid, turns)
        inp = rnd.randrange(1_000, 60_000)
        cached = inp * rnd.randrange(0, 95) // 100
        out_t = rnd.randrange(50, 3_000)
        cost = cost_micros(price, input_tokens=inp, cached_tokens=cached, output_tokens=out_t)
        at = start + timedelta(seconds=i * step_s)
        out.append((uuid.UUID(int=rnd.getrandbits(128)), at, "bench", f"vk_{dev}", dev, team, team, sid,
                    f"{sid}-t{turns}", "repo", "codex_exec", "/v1/responses", "gpt-5.1-codex", "gpt-5.1-codex",
                    "requested", "ok", "ok", 200, inp, cached, out_t, out_t // 4, "reported", price.input_micros,
                    price.cached_input_micros, price.output_micros, False, cost, rnd.random() < 0.03, 800))
    return out


COPY_COLUMNS = ["event_id", "occurred_at", "proxy_instance", "key_id", "developer", "team", "cost_center",
                "session_id", "turn_id", "repo", "client", "endpoint", "model_requested", "model_used",
                "route_reason", "stage", "status", "http_status", "input_tokens", "cached_tokens",
                "output_tokens", "reasoning_tokens", "usage_source", "input_price_micros",
                "cached_price_micros", "output_price_micros", "price_fallback", "cost_micros", "retry",
                "latency_ms"]

PROPOSAL = {
    "budgets": [
        *({"scope": f"developer:{d}", "daily": "6", "thresholds": [80, 95, 110]} for d, _ in DEVELOPERS),
        *({"scope": f"team:team{t:02d}", "daily": "50", "monthly": "1200", "at_pause": "cheapest"}
          for t in range(20)),
        {"scope": "org", "monthly": "30000"},
    ],
}


async def main(n: int) -> int:
    async with scratch_database() as url:
        return await measure(url, n)


async def measure(url: str, n: int) -> int:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    t0 = time.perf_counter()
    data = rows(n)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("usage_events", records=data, columns=COPY_COLUMNS)
        await conn.execute("ANALYZE usage_events")
    del data
    print(f"loaded {n:,} events in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    seen = 0
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        async for batch in replay_batches(conn, NOW - timedelta(days=30), NOW, batch_rows=FETCH_ROWS):
            seen += len(batch)
    read_s = time.perf_counter() - t0
    print(f"baseline: read {seen:,} events in time order in {read_s:.1f} s")

    proposal = policy_from_document(PROPOSAL, EnforcementSettings())
    t0 = time.perf_counter()
    result, _ = await dry_run(pool, proposal, PRICES, days=30, now=NOW)
    run_s = time.perf_counter() - t0
    print(f"dry-run: {result.events:,} events, {len(proposal.budgets)} budgets, in {run_s:.1f} s "
          f"({result.events / run_s:,.0f} events/s; {run_s / read_s:.1f}x the bare read); "
          f"downgrades {result.downgrades:,}, forced cheapest {result.forced_cheapest:,}, "
          f"paused sessions {result.paused_sessions:,}, alerts {sum(len(s.alerts) for s in result.scopes):,}")
    verdict = Verdict("policy dry-run")
    verdict.at_most("dry-run vs the bare read", run_s, read_s, 15, unit=" s", baseline_name="read")
    limit_s = 60 * n / 1_000_000
    verdict.check(f"{n:,} events replayed", f"{run_s:.1f} s", f"< {limit_s:g} s", run_s < limit_s)
    window = Window.of((NOW - timedelta(days=30)).date(), (NOW - timedelta(days=1)).date(), tz="UTC", now=NOW)
    for by in ("session", "developer"):
        t0 = time.perf_counter()
        report = await chargeback(pool, PRICES, by=by, window=window)
        print(f"chargeback by {by}: {len(report.lines):,} lines over {n:,} events in "
              f"{time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    cache = await cache_report(pool, by="developer", window=window)
    print(f"cache report by developer: {len(cache.lines):,} lines, {len(cache.flagged_sessions):,} flagged "
          f"sessions in {time.perf_counter() - t0:.1f} s")
    await pool.close()
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    sys.exit(asyncio.run(main(parser.parse_args().events)))
