"""``serve()`` enforces budgets through the Decider seam: a spent key is paused with the Codex-aware 429."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.proxy.service import serve
from spendgate.runtime import open_runtime
from spendgate.store.keys import store as vkeys
from tests.support.ports import free_port
from tests.support.proxy_harness import fake_upstream, proxy_settings, published_usage
from tests.support.waiting import eventually


async def _healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_spent_budget_pauses_the_key(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """With a tiny daily budget the first request passes; the next is refused 429 and metered as refused."""
    created = await vkeys.create_key(pool, developer="hal", team="ml")
    await pool.execute("INSERT INTO budgets (scope, daily_micros) VALUES ($1, 1)", f"key:{created.key.key_id}")
    async with fake_upstream() as upstream:
        port = free_port()
        settings = proxy_settings(db_url, tmp_path, upstream.url, proxy_port=port)
        stop = asyncio.Event()
        async with open_runtime(settings, run_migrations=False) as runtime:
            task = asyncio.create_task(serve(runtime, stop))
            try:
                await eventually(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), what="proxy up")
                url = f"http://127.0.0.1:{port}/v1/responses"
                headers = {"Authorization": f"Bearer {created.secret}", "session-id": "s-budget"}
                async with aiohttp.ClientSession() as http:
                    async with http.post(url, json={"model": "gpt-5.1", "input": "x" * 4000},
                                         headers=headers) as first:
                        assert first.status == 200
                        await first.read()
                    async with http.post(url, json={"model": "gpt-5.1", "input": "y"}, headers=headers) as second:
                        assert second.status == 429
                        doc = await second.json()
                assert doc["error"]["type"] == "usage_limit_reached" and "resets_at" in doc["error"]
                events = await eventually(lambda: published_usage(pool), until=lambda e: len(e) >= 2,
                                          what="both requests metered")
            finally:
                stop.set()
                await task
    assert [(e.status, e.refusal_reason) for e in events] == [("ok", None), ("refused", "budget_pause")]
    assert len(upstream.fake.served) == 1
