"""How long the turn outcome query takes over a large usage table.

    python -m benchmarks.turn_outcomes [--events 1000000] [--turn-size 8] [--days 30] [--repeat 5]

Fills a scratch database (benchmarks/support.py) with ``--events`` usage events in turns of
``--turn-size`` requests, spread over ``--days`` days and 20 teams, a few hundred sessions, and an
evaluation for every tenth turn; then times ``GET /v1/turns``'s query (:func:`spendgate.admin.turns.
turn_list`) as the API runs it: the default (last 7 days, 200 turns), one team, one session, and the
largest page (5,000 turns). Prints the median and worst of ``--repeat`` runs of each. Targets at 1M
events: the median of each page a person asks for (default, team, session) under 0.5 s, of the largest
page (an export of 5,000 turns, ~40,000 events) under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import scratch_database
from spendgate.admin.turns import MAX_TURNS, turn_list

TARGET_S = 0.5
EXPORT_TARGET_S = 2.0

_FILL = """
INSERT INTO usage_events (event_id, occurred_at, proxy_instance, key_id, developer, team, cost_center, session_id,
    turn_id, endpoint, model_requested, model_used, route_reason, stage, status, http_status, input_tokens,
    cached_tokens, output_tokens, reasoning_tokens, usage_source, input_price_micros, cached_price_micros,
    output_price_micros, price_fallback, cost_micros, retry, latency_ms, tool_outputs, tool_failures, final_message)
SELECT gen_random_uuid(),
    $1::timestamptz - make_interval(secs => (g / $2) * ($3 * 86400.0 / ($4 / $2)) + (g % $2) * 20),
    'p1', 'k' || (g / $2) % 500, 'dev' || (g / $2) % 500, 'team' || (g / $2) % 20, 'cc', 's-' || (g / $2) % 700,
    't-' || g / $2, '/v1/responses', 'gpt-5.1', CASE WHEN g % 7 = 0 THEN 'gpt-5.1-mini' ELSE 'gpt-5.1' END,
    CASE WHEN g % 7 = 0 THEN 'downgrade' ELSE 'requested' END, 'ok',
    CASE WHEN g % 97 = 0 THEN 'upstream_error' ELSE 'ok' END, 200, 30000, 20000, 400, 100, 'reported',
    1250000, 125000, 10000000, false, 12000, g % 31 = 0, 900, g % $2, (g % $2) / 3, g % $2 = $2 - 1
FROM generate_series(0, $4 - 1) AS g
"""


async def fill(pool: asyncpg.Pool, *, events: int, turn_size: int, days: int, now: datetime) -> None:
    await pool.execute(_FILL, now, turn_size, days, events)
    await pool.execute("""INSERT INTO turn_evals (turn_id, score, evaluator, evaluated_at)
                          SELECT DISTINCT turn_id, 0.5, 'bench', now() FROM usage_events
                          WHERE right(turn_id, 1) = '0'""")
    await pool.execute("ANALYZE usage_events; ANALYZE turn_evals")


async def time_it(pool: asyncpg.Pool, repeat: int, **kwargs: object) -> tuple[float, float, int]:
    runs, found = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = await turn_list(pool, **kwargs)  # type: ignore[arg-type]
        runs.append(time.perf_counter() - started)
        found = len(result.turns)
    return statistics.median(runs), max(runs), found


async def main(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    async with scratch_database() as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            started = time.perf_counter()
            await fill(pool, events=args.events, turn_size=args.turn_size, days=args.days, now=now)
            print(f"filled {args.events:,} events in {time.perf_counter() - started:.1f} s")
            cases = {
                "default (7 days, 200 turns)": {},
                "one team (7 days)": {"team": "team3"},
                "one session (30 days)": {"session_id": "s-42", "since": now - timedelta(days=args.days)},
                f"{MAX_TURNS} turns (7 days)": {"limit": MAX_TURNS},
            }
            ok = True
            print(f"{'query':<30} {'median s':>9} {'worst s':>8} {'turns':>6} {'target s':>9}")
            for name, kwargs in cases.items():
                median, worst, found = await time_it(pool, args.repeat, now=now, **kwargs)
                target = EXPORT_TARGET_S if "limit" in kwargs else TARGET_S
                ok = ok and median < target
                print(f"{name:<30} {median:>9.3f} {worst:>8.3f} {found:>6} {target:>9g} "
                      f"{'PASS' if median < target else 'FAIL'}")
            return 0 if ok else 1
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--turn-size", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args())))
