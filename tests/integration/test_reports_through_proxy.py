"""Reports over traffic that really went through the proxy (fake upstream), the embedded bus and the ledger
consumer: every figure equals what the upstream billed, priced with the shipped table."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.admin.cache import cache_report
from spendgate.admin.reports import chargeback
from spendgate.admin.sessions import session_detail
from spendgate.admin.window import Window
from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.store.keys import store as vkeys
from tests.support.admin_traffic import PRICES
from tests.support.proxy_harness import running_proxy
from tests.support.waiting import eventually

# (developer, session, turn, repo, model, prompt words): three developers in two teams, five sessions.
PLAN = [
    ("alice", "px-a1", "t1", "/src/api", "gpt-5.1", 40), ("alice", "px-a1", "t1", "/src/api", "gpt-5.1", 90),
    ("alice", "px-a1", "t2", "/src/api", "gpt-5.1-mini", 150), ("alice", "px-a2", "t1", "/src/web", "gpt-5.1", 20),
    ("bob", "px-b1", "t1", "/src/api", "gpt-5.1-codex", 300), ("bob", "px-b1", "t2", "/src/api", "gpt-5.1-codex", 420),
    ("bob", "px-b1", "t3", "/src/api", "gpt-5.1-codex", 510), ("carol", "px-c1", "t1", "/src/pipeline", "gpt-4.1", 60),
    ("carol", "px-c2", "t1", "/src/pipeline", "gpt-4.1-mini", 700), ("carol", "px-c2", "t2", "/src/pipeline",
                                                                       "gpt-4.1-mini", 800),
]


async def test_chargeback_and_cache_reports_equal_what_the_upstream_billed(db_url: str, tmp_path: Path) -> None:
    """Per session, developer, team and repo: requests, turns, tokens and cost match the fake upstream's usage."""
    async with running_proxy(db_url, tmp_path) as h:
        pool: asyncpg.Pool = h.runtime.pool
        secrets = {"alice": h.secret}
        for dev, team in (("bob", "platform"), ("carol", "payments")):
            secrets[dev] = (await vkeys.create_key(pool, developer=dev, team=team)).secret

        async def cached_keys() -> int:
            return len(h.server.keys)

        await eventually(cached_keys, until=lambda n: n == 3, what="the proxy's key cache to see the new keys")
        stop = asyncio.Event()
        ledger = asyncio.create_task(LedgerConsumer(pool, h.runtime.bus).run(stop))
        try:
            async with aiohttp.ClientSession() as http:
                for dev, session, turn, repo, model, words in PLAN:
                    meta = json.dumps({"session_id": session, "turn_id": turn, "workspaces": {repo: {}}})
                    async with http.post(f"{h.base_url}/responses", json={"model": model, "input": "w " * words},
                                         headers={"Authorization": f"Bearer {secrets[dev]}", "session-id": session,
                                                  "x-codex-turn-metadata": meta, "originator": "codex_exec"}) as r:
                        assert r.status == 200, await r.text()
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events"),
                             until=lambda n: n == len(PLAN), what="every request folded by the ledger")
        finally:
            stop.set()
            await ledger

        served = h.fake.served
        assert [s.session_id for s in served] == [p[1] for p in PLAN]
        billed = [cost_micros(SHIPPED_PRICES[s.model], input_tokens=s.input_tokens, cached_tokens=s.cached_tokens,
                              output_tokens=s.output_tokens) for s in served]
        now = datetime.now(UTC)
        window = Window.of((now - timedelta(days=1)).date(), (now + timedelta(days=1)).date(), tz="UTC", now=now)
        team_of = {"alice": "platform", "bob": "platform", "carol": "payments"}
        for by, key in (("session", lambda p: p[1]), ("developer", lambda p: p[0]),
                        ("team", lambda p: team_of[p[0]]), ("repo", lambda p: p[3])):
            want: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
            turns: dict[str, set[tuple[str, str]]] = defaultdict(set)
            for plan, s, cost in zip(PLAN, served, billed, strict=True):
                w = want[key(plan)]
                w[0] += 1
                w[1] += s.input_tokens
                w[2] += s.cached_tokens
                w[3] += s.output_tokens
                w[4] += cost
                turns[key(plan)].add((plan[1], plan[2]))
            report = await chargeback(pool, PRICES, by=by, window=window)
            got = {line.group: [line.requests, line.input_tokens, line.cached_tokens, line.output_tokens,
                                line.cost_micros] for line in report.lines}
            assert got == dict(want), by
            assert {line.group: line.turns for line in report.lines} == {k: len(v) for k, v in turns.items()}
        org = await pool.fetchval("SELECT spent_micros FROM balances WHERE scope = 'org' AND period = 'month'")
        total = (await chargeback(pool, PRICES, by="team", window=window)).total
        assert total is not None and total.cost_micros == org == sum(billed) > 0

        cache = await cache_report(pool, by="developer", window=window, min_requests=1, flag_below_pct=100)
        assert {c.group: c.cached_tokens for c in cache.lines} == {
            dev: sum(s.cached_tokens for p, s in zip(PLAN, served, strict=True) if p[0] == dev) for dev in secrets}
        detail = await session_detail(pool, PRICES, "px-b1")
        assert [t.turn_id for t in detail.turns] == ["t1", "t2", "t3"]
        assert [r.model_used for t in detail.turns for r in t.request_lines] == ["gpt-5.1-codex"] * 3
