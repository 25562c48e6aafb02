"""Issue 11 item 8: an identical re-sent request is a retry only when it follows a failure."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.enforced_proxy import enforced_proxies

BODY = {"model": "gpt-5.1", "input": "summarise the release notes", "prompt_cache_key": "fixed-cache-key"}


async def test_identical_successful_requests_are_never_refused(db_url: str, tmp_path: Path) -> None:
    """Six identical bodies with a fixed prompt_cache_key, each answered 200, all pass (no budget set)."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(6):
            async with http.post(env.url(), json=BODY, headers=env.headers()) as resp:
                await resp.read()
                statuses.append(resp.status)
    assert statuses == [200] * 6
    assert len(env.upstream.fake.served) == 6


async def test_identical_requests_after_failures_are_still_capped(db_url: str, tmp_path: Path) -> None:
    """The same body re-sent after upstream 500s counts as retries and is refused from the fourth on (cap 3)."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        statuses, codes = [], []
        for _ in range(5):
            async with http.post(env.url(), json=BODY, headers=env.headers(**{"x-fake-scenario": "error:500"})) \
                    as resp:
                doc = await resp.json()
                statuses.append(resp.status)
                codes.append(doc["error"]["code"])
    assert statuses == [500, 500, 500, 429, 429]
    assert codes[-1] == "retry_budget_exhausted"
