"""Issue 11 item 8: an identical re-sent request is a retry only when it follows a failure."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from spendgate.domain.enforcement.responses import USAGE_LIMIT_REACHED
from tests.support.enforced_proxy import enforced_proxies
from tests.support.waiting import eventually

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


async def test_a_paused_client_resending_is_told_it_is_paused_not_that_it_loops(db_url: str, tmp_path: Path) -> None:
    """A client that re-sends the same body while its budget is paused (an SDK retrying 429s) keeps getting
    the pause; spendgate's own refusals are not failures that make a re-send a retry, so the fourth is not
    'retry budget exhausted' (it was: the pause message was lost and a retry loop was reported)."""
    async with enforced_proxies(db_url, tmp_path, budgets={"key": {"usd": 0.000001}}) as env, \
            aiohttp.ClientSession() as http:
        async def send() -> tuple[int, str | None]:
            async with http.post(env.url(), json=BODY, headers=env.headers()) as resp:
                doc = await resp.json()
                return resp.status, (doc.get("error") or {}).get("code")

        first = await send()
        assert first[0] == 200
        await eventually(send, until=lambda answer: answer[0] == 429, what="the key paused")
        answers = [await send() for _ in range(5)]
    assert answers == [(429, USAGE_LIMIT_REACHED)] * 5
