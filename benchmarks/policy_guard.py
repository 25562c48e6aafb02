"""How long one guard check takes over a large usage table.

    python -m benchmarks.policy_guard [--events 1000000] [--turn-size 8] [--days 30] [--repeat 3]

Fills a scratch database with the turn-outcome benchmark's traffic (``benchmarks/turn_outcomes.py``:
``--events`` usage events in turns of ``--turn-size`` requests over ``--days`` days, 20 teams), applies a
version three days ago whose routing rule covers one team, marks that team's turns since then as routed by
it, and times :func:`spendgate.admin.guard.check` (read-only, as ``spendgate policy guard`` runs it): the
turns of the 3 days since and of the 7 days before, the rule's predicate, the bootstrap. Then it times a
version that changes every kind of part at once (the rule's size limit, the downgrade size limit, each of
the 20 teams' budgets raised, so each is judged on all its turns, an exploration block for another team
whose turns since are drawn into arms): 23 segments judged in one check. Target: under 30 s at 1M events,
a tenth of the default ``guard.interval_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import drop_db, fresh_db, postgres_server
from benchmarks.turn_outcomes import fill
from spendgate.admin.guard import check
from spendgate.admin.policy_versions import apply_version
from spendgate.core.config import Settings
from spendgate.domain.enforcement import policy_from_document

TARGET_S = 30.0
RULE = {"name": "team3-small", "scope": "team:team3", "max_input_tokens": 50_000, "model": "gpt-5.1-mini"}
EXPLORE = {"share_pct": 10, "teams": ["team5"], "max_input_tokens": 50_000}


async def main(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    live_at = now - timedelta(days=3)
    key = base64.b64encode(bytes(range(32))).decode()
    async with postgres_server() as server:
        url = await fresh_db(server)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            settings = Settings(data_dir=Path(tempfile.mkdtemp()), database_url=url,
                                policy={"signing_key": key})  # type: ignore[arg-type]
            try:
                started = time.perf_counter()
                await fill(pool, events=args.events, turn_size=args.turn_size, days=args.days, now=now)
                print(f"filled {args.events:,} events in {time.perf_counter() - started:.1f} s")
                prices = settings.pricing.table()
                budgets = {"budgets": [{"scope": f"team:team{i}", "monthly": "1000"} for i in range(20)]}
                for doc, at in ((budgets, now - timedelta(days=20)), ({**budgets, "routing_rules": [RULE]}, live_at)):
                    done = await apply_version(pool, policy_from_document(doc, settings.enforcement), settings,
                                               prices, now=at, approver="bench", reason="bench")
                await pool.execute("""UPDATE usage_events SET policy_version = $1, routing_rule = 'team3-small'
                                      WHERE team = 'team3' AND occurred_at >= $2""", done.version_id, live_at)
                await pool.execute("ANALYZE usage_events")
                median = await timed(pool, settings, now, args.repeat, "one routing rule")
                every = {"routing_rules": [{**RULE, "max_input_tokens": 60_000}], "exploration": EXPLORE,
                         "budgets": [{"scope": f"team:team{i}", "monthly": "1200"} for i in range(20)]}
                wider = settings.model_copy(update={"enforcement": settings.enforcement.model_copy(
                    update={"downgrade_max_input_tokens": 32_000})})
                done = await apply_version(pool, policy_from_document(every, wider.enforcement), wider, prices,
                                           now=live_at + timedelta(seconds=1), approver="bench", reason="bench")
                await pool.execute("""UPDATE usage_events SET policy_version = $1,
                                      experiment_arm = CASE WHEN team = 'team5' AND input_tokens < 50000 THEN
                                          CASE WHEN hashtext(turn_id) % 10 = 0 THEN 'explore' ELSE 'control' END
                                      END WHERE occurred_at >= $2""", done.version_id, live_at)
                await pool.execute("ANALYZE usage_events")
                worst = await timed(pool, wider, now, args.repeat, "every kind")
                ok = max(median, worst) < TARGET_S
                print(f"target {TARGET_S:g} s: {'PASS' if ok else 'FAIL'}")
                return 0 if ok else 1
            finally:
                await pool.close()
        finally:
            await drop_db(server, url)


async def timed(pool: asyncpg.Pool, settings: Settings, now: datetime, repeat: int, name: str) -> float:
    """The median of ``repeat`` checks of the active version, printed with its segments."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await check(pool, settings, settings.pricing.table(), now=now)
        runs.append(time.perf_counter() - started)
    median = statistics.median(runs)
    kinds = sorted({s.kind for s in result.segments})
    print(f"guard check ({name}): median {median:.2f} s, worst {max(runs):.2f} s over {repeat} runs; "
          f"{len(result.segments)} segments ({', '.join(kinds)})")
    for seg in result.segments[:4]:
        print(f"  {seg.kind} {seg.rule}: baseline {seg.baseline_n} turns, candidate {seg.candidate_n} turns, "
              f"verdict {seg.verdict}")
    return median


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--turn-size", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
