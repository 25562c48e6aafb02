"""Render time of the console's pages that change things (budgets and keys, alerts, policy) at a large
organisation's size.

    .venv/bin/python -m benchmarks.console_manage_pages [--developers 2000] [--runs 15]

Seeds a scratch database with a budget per developer, per team (one team per 10 developers) and the org
(each with this day's and month's balances), a key per developer, 5,000 alerts with a delivery each, 200
dead letters and 5,000 budget audit rows; then serves the real admin app and times GET /budgets,
/alerts and /policy with the break-glass token (median and worst of ``--runs``, after one warm-up).
These pages read budgets, balances, keys, alerts and the audit trail, not the usage events, so the
events table is left empty here (benchmarks/console_pages.py covers the pages that read them).
Target: every page's median under 300 ms (the issue's page-speed figure, an absolute limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, scratch_database
from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.domain.alerts import Message, message_encoder
from tests.support.admin_server import admin_settings, auth

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
USD = 1_000_000
PAGES = ("/budgets", "/alerts", "/policy")


async def seed(pool: asyncpg.Pool, developers: int) -> int:
    teams = max(1, developers // 10)
    scopes = ([f"developer:dev{i:05d}" for i in range(developers)] + [f"team:team{t:04d}" for t in range(teams)]
              + ["org"])
    await pool.copy_records_to_table("budgets", columns=["scope", "daily_micros", "monthly_micros"],
                                     records=[(s, 50 * USD, 1000 * USD) for s in scopes])
    balances = [(s, "day", date(2026, 11, 20), 20 * USD) for s in scopes] + [
        (s, "month", date(2026, 11, 1), 600 * USD) for s in scopes]
    await pool.copy_records_to_table("balances", columns=["scope", "period", "period_start", "spent_micros"],
                                     records=balances)
    await pool.copy_records_to_table(
        "virtual_keys", columns=["key_id", "key_hash", "key_prefix", "developer", "team", "cost_center"],
        records=[(str(uuid.uuid4()), os.urandom(32), f"sk-sg-{i:05d}", f"dev{i:05d}", f"team{i % teams:04d}",
                  f"team{i % teams:04d}") for i in range(developers)])
    alerts, jobs = [], []
    for i in range(5000):
        alert_id, scope = str(uuid.uuid4()), f"team:team{i % teams:04d}"
        m = Message(alert_id=alert_id, kind="alert", severity="warning", scope=scope, title=f"{scope} at 80 %",
                    summary="80 % of the month", team=scope[5:], incident_key=f"k{i}", created_at=NOW)
        alerts.append((uuid.UUID(alert_id), f"bench:{i}", "alert", scope, None, scope[5:], scope[5:],
                       message_encoder.encode(m).decode()))
        jobs.append((uuid.uuid4(), uuid.UUID(alert_id), "em", "slack:em", "trigger", "dead" if i < 200 else "delivered",
                     3 if i < 200 else 1))
    await pool.executemany(
        """INSERT INTO alerts (alert_id, dedup_key, kind, scope, developer, team, cost_center, message)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)""", alerts)
    await pool.executemany("""INSERT INTO alert_jobs (job_id, alert_id, route, target, action, status, attempts)
                              VALUES ($1, $2, $3, $4, $5, $6, $7)""", jobs)
    await pool.executemany("INSERT INTO alert_dead_letters (job_id, attempts, last_error) VALUES ($1, 3, 'HTTP 503')",
                           [(j[0],) for j in jobs[:200]])
    await pool.executemany(
        "INSERT INTO budget_audit (change_id, scope, action, detail, actor) VALUES ($1, $2, 'set', $3::jsonb, 'bench')",
        [(uuid.uuid4(), scopes[i % len(scopes)], json.dumps({"daily_micros": 50 * USD})) for i in range(5000)])
    return len(scopes)


async def time_pages(pool: asyncpg.Pool, runs: int) -> dict[str, list[float]]:
    settings = admin_settings()
    app = create_app(Deps(pool, settings, settings.pricing.table(), now=lambda: NOW))
    timings: dict[str, list[float]] = {p: [] for p in PAGES}
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path in PAGES:
            for run in range(runs + 1):
                started = time.perf_counter()
                answer = await client.get(path, headers=auth())
                await answer.read()
                elapsed_ms = (time.perf_counter() - started) * 1000
                assert answer.status == 200, (path, answer.status)
                if run:  # the first is a warm-up (templates compiled, pool connections opened)
                    timings[path].append(elapsed_ms)
    return timings


async def main(developers: int, runs: int) -> int:
    verdict = Verdict(f"console pages that change things, {developers:,} developers")
    async with scratch_database() as url:
        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
        assert pool is not None
        budgets = await seed(pool, developers)
        print(f"seeded {budgets:,} budgets, {developers:,} keys, 5,000 alerts, 200 dead letters, "
              "5,000 audit rows")
        for path, ms in (await time_pages(pool, runs)).items():
            median = statistics.median(ms)
            print(f"GET {path}: median {median:.0f} ms, worst {max(ms):.0f} ms over {runs} runs")
            verdict.check(f"GET {path} median", f"{median:.0f} ms", "< 300 ms", median < 300)
        await pool.close()
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--developers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.developers, args.runs)))
