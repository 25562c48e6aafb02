"""``policy suggest`` over 30 days of 1,000,000 usage events: under 2 minutes, the operator's wait.

    .venv/bin/python -m benchmarks.policy_suggest [--events 1000000]

Creates a scratch database (benchmarks/support.py finds or starts the server), stores a budget for each
of 20 teams (half of them in Europe/Berlin) and the org, and loads the events with COPY: 200 developers,
Codex sessions of turns of 1 to 8 requests asking for gpt-5.1, first-request sizes from 500 to 60,000
input tokens, 5 % of turns explored on gpt-5.1-mini and 5 % kept as the control arm; in half of the teams
the explored turns fail tools much more often. Then times :func:`spendgate.admin.suggest.suggest` as the
CLI runs it (every team, tolerance 2 %, 30 days), its dry-runs included. Prints the figure beside the
target and exits non-zero when it is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, drop_db, fresh_db, postgres_server
from spendgate.admin.dryrun import checks
from spendgate.admin.overlay import Change
from spendgate.admin.policy import apply, live_policy
from spendgate.admin.suggest import suggest
from spendgate.core.config import Settings
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.pricing import PriceTable, cost_micros

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TARGET_S = 120.0
TEAMS = [f"team{t:02d}" for t in range(20)]
DEVELOPERS = [(f"dev{i:03d}", TEAMS[i % 20]) for i in range(200)]
PRICES = PriceTable()
POLICY = {
    "budgets": [
        *({"scope": f"team:{t}", "monthly": "5000", "timezone": "Europe/Berlin" if i % 2 else "UTC"}
          for i, t in enumerate(TEAMS)),
        {"scope": "org", "monthly": "100000"},
    ],
}
COPY_COLUMNS = ["event_id", "occurred_at", "proxy_instance", "key_id", "developer", "team", "cost_center",
                "session_id", "turn_id", "repo", "client", "endpoint", "model_requested", "model_used",
                "route_reason", "stage", "status", "http_status", "input_tokens", "cached_tokens",
                "output_tokens", "reasoning_tokens", "usage_source", "input_price_micros",
                "cached_price_micros", "output_price_micros", "price_fallback", "cost_micros", "retry",
                "latency_ms", "tool_outputs", "tool_failures", "final_message", "experiment_arm"]


def rows(n: int, seed: int = 7) -> list[tuple[object, ...]]:
    rnd = random.Random(seed)
    prices = {m: PRICES.lookup(m).price for m in ("gpt-5.1", "gpt-5.1-mini")}
    start = NOW - timedelta(days=30)
    step_s = 30 * 86_400 / n
    out: list[tuple[object, ...]] = []
    i = turn_no = 0
    while i < n:
        dev, team = DEVELOPERS[rnd.randrange(len(DEVELOPERS))]
        sid = f"{dev}-s{turn_no // 6}"
        turn_id = f"{dev}-t{turn_no}"
        turn_no += 1
        arm = rnd.random()
        explored, control = arm < 0.05, 0.05 <= arm < 0.10
        model = "gpt-5.1-mini" if explored else "gpt-5.1"
        harmful = explored and int(team[4:]) % 2 == 1
        size = int(500 * 120 ** rnd.random())
        requests = rnd.randrange(1, 9)
        tools = fails = 0
        for r in range(min(requests, n - i)):
            inp = size + r * 1_500
            cached = inp * rnd.randrange(0, 90) // 100
            out_t = rnd.randrange(50, 2_000)
            price = prices[model]
            cost = cost_micros(price, input_tokens=inp, cached_tokens=cached, output_tokens=out_t)
            if r:
                tools += 1
                fails += rnd.random() < (0.6 if harmful else 0.1)
            last = r == requests - 1
            out.append((uuid.UUID(int=rnd.getrandbits(128)), start + timedelta(seconds=i * step_s), "bench",
                        f"vk_{dev}", dev, team, team, sid, turn_id, f"/src/{team}-repo{rnd.randrange(3)}",
                        "codex_exec", "/v1/responses", "gpt-5.1", model,
                        "explore" if explored else "requested", "ok", "ok", 200, inp, cached, out_t, out_t // 4,
                        "reported", price.input_micros, price.cached_input_micros, price.output_micros, False, cost,
                        rnd.random() < 0.02, 800, tools, fails, last and (not harmful or rnd.random() < 0.5),
                        "explore" if explored else "control" if control else None))
            i += 1
    return out


async def main(n: int) -> int:
    async with postgres_server() as server:
        url = await fresh_db(server)
        try:
            return await measure(url, n)
        finally:
            await drop_db(server, url)


async def measure(url: str, n: int) -> int:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    settings = Settings()
    await apply(pool, policy_from_document(POLICY, settings.enforcement), settings.enforcement,
                now=NOW - timedelta(days=40), actor="bench")
    t0 = time.perf_counter()
    data = rows(n)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("usage_events", records=data, columns=COPY_COLUMNS)
        await conn.execute("ANALYZE usage_events")
    del data
    print(f"loaded {n:,} events in {time.perf_counter() - t0:.1f} s")

    t0, cpu0 = time.perf_counter(), time.process_time()
    found = await suggest(pool, settings, PRICES, now=NOW)
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    # The benchmark's budgets never reach a downgrade stage, so suggest proposes no size limit here; time its
    # check alone (the live policy over every event and the larger limit as its differences, one read).
    live = await live_policy(pool, settings.enforcement, NOW)
    t0 = time.perf_counter()
    await checks(pool, live, [(replace(live, downgrade_max_input_tokens=32_000), Change(size_window=(
        live.downgrade_max_input_tokens, 32_000)))], PRICES, days=30, now=NOW)
    whole_s = time.perf_counter() - t0
    await pool.close()
    print(f"suggest: {found.turns:,} turns, {len(found.segments)} segments listed, {len(found.suggestions)} "
          f"suggestions, {len(found.not_proposed)} not proposed, in {run_s:.1f} s ({cpu_s:.1f} s of this process's "
          f"CPU; load average {os.getloadavg()[0]:.2f}: other work on the machine shows as the gap)")
    for s in found.suggestions:
        print(f"  {s.summary}")
    for p in found.not_proposed[:5]:
        print(f"  not proposed: {p.summary}")
    verdict = Verdict("policy suggest")
    verdict.check(f"suggest over {n:,} events, 30 days", f"{run_s:.1f} s", f"< {TARGET_S:g} s", run_s < TARGET_S)
    print(f"the size limit's check over {n:,} events (live replay + the limit's differences): {whole_s:.1f} s")
    verdict.check("a cheaper route proposed for a harmless team", str(len(found.suggestions)), ">= 1",
                  bool(found.suggestions))
    harmful_teams = {f"team:{t}" for t in TEAMS[1::2]}
    wrong = [s.scope for s in found.suggestions if s.kind == "routing_rule" and s.scope in harmful_teams]
    verdict.check("none for a team whose explored turns fail more", ", ".join(wrong) or "none", "none", not wrong)
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    sys.exit(asyncio.run(main(parser.parse_args().events)))
