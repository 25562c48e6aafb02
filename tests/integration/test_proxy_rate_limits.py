"""Rate limits through real proxies sharing one PostgreSQL: the limit holds within the documented bound under
concurrent load, the 429 carries a sane Retry-After in the caller's format, refusals are on the ledger at $0,
and a changed limit applies without a restart (docs/rate-limits.md)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.domain.ratelimits import RateLimit
from spendgate.store.ratelimits import store as ratelimits
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.waiting import eventually

MID_MINUTE = 1_800_000_030.0
"""A frozen wall clock half-way through a minute: the window neither rolls nor decays during the test."""
RPM = 20
PROXIES = 2
SHARE = math.ceil(RPM / PROXIES)
BOUND = RPM + (PROXIES - 1) * (SHARE + math.ceil((RPM - SHARE) / PROXIES))
"""docs/rate-limits.md: N proxies together admit at most L + (N - 1) × (s + ceil((L - s) / N)) in a window,
s = ceil(L / N): two shares per peer unseen (35 for 20 rpm on two proxies; 40 without the shares)."""


def frozen() -> float:
    return MID_MINUTE


async def ask(http: aiohttp.ClientSession, e: Enforced, proxy: int, n: int) -> tuple[int, dict[str, str], bytes]:
    body = {"model": "gpt-5.1", "input": f"request {n} " + "x" * 400}
    async with http.post(e.url(proxy), json=body, headers=e.headers()) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def refused_events(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT cost_micros, http_status FROM usage_events WHERE refusal_reason = 'rate_limited'")


async def test_two_proxies_under_concurrent_load_hold_the_limit_within_the_bound(
        db_url: str, tmp_path: Path) -> None:
    """60 concurrent requests on a 20 rpm developer split over two proxies: at least 20 and at most the
    bound admitted; every refusal an OpenAI rate_limit_exceeded 429 with Retry-After and x-ratelimit-*
    headers, on the ledger as refused / rate_limited at $0."""
    async with enforced_proxies(db_url, tmp_path, proxies=PROXIES, rate_limit_clock=frozen) as e:
        await ratelimits.set_rate_limit(e.pool, RateLimit("developer:alice", rpm=RPM), actor="test")
        for d in e.limited:
            await d.limiter.sync(force_reload=True)
        async def live_peers() -> list[int]:
            return [d.limiter.windows.live_peers for d in e.limited]

        await eventually(live_peers, until=lambda seen: seen == [PROXIES - 1] * PROXIES, timeout_s=5,
                         what="each proxy sees the other live")
        async with aiohttp.ClientSession() as http:
            answers = await asyncio.gather(*(ask(http, e, n % PROXIES, n) for n in range(60)))
        admitted = [a for a in answers if a[0] == 200]
        refused = [a for a in answers if a[0] == 429]
        assert len(admitted) + len(refused) == 60, sorted({a[0] for a in answers})
        print(f"\nrate limit {RPM} rpm, {PROXIES} proxies, 60 concurrent: admitted {len(admitted)} "
              f"(bound {BOUND})")
        assert RPM <= len(admitted) <= BOUND
        for _, headers, body in refused:
            error = json.loads(body)["error"]
            assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert headers["x-ratelimit-limit-requests"] == str(RPM)
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert headers["x-should-retry"] == "true"
        rows = await eventually(lambda: refused_events(e.pool), until=lambda got: len(got) == len(refused),
                                timeout_s=20, what="the refusals on the ledger")
        assert {(r["cost_micros"], r["http_status"]) for r in rows} == {(0, 429)}


async def test_anthropic_route_gets_a_retryable_rate_limit_error(db_url: str, tmp_path: Path) -> None:
    """On /v1/messages the refusal is Anthropic's rate_limit_error with x-should-retry true and retry-after,
    not the pause's stop-now shape; the limit set on the running proxy applies without a restart."""
    async with enforced_proxies(db_url, tmp_path, proxies=1, rate_limit_clock=frozen,
                                settings={"rate_limits": {"reload_s": 0.2}}) as e:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        url = e.url().replace("/responses", "/messages")
        headers = {"x-api-key": e.secret, "anthropic-version": "2023-06-01"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            await ratelimits.set_rate_limit(e.pool, RateLimit(f"key:{e.key.key_id}", rpm=1), actor="test")
            windows = e.limited[0].limiter.windows

            async def limits() -> list[str]:
                return list(windows.limits)

            await eventually(limits, timeout_s=5, what="the new limit loaded by the running proxy")
            for _ in range(2):  # the first is counted; the second is over 1 rpm
                async with http.post(url, json=body, headers=headers) as resp:
                    status, got, doc = resp.status, resp.headers, await resp.json()
        assert status == 429, doc
        assert doc["type"] == "error" and doc["error"]["type"] == "rate_limit_error"
        assert got["x-should-retry"] == "true" and 1 <= int(got["retry-after"]) <= 60
        assert got["anthropic-ratelimit-requests-limit"] == "1"


async def test_codex_streaming_is_told_to_wait_and_retry(db_url: str, tmp_path: Path) -> None:
    """Codex (originator codex_exec) streaming Responses over 1 rpm: a 200 stream of one response.failed
    rate_limit_exceeded event saying when to try again, recorded as refused / rate_limited at $0."""
    async with enforced_proxies(db_url, tmp_path, proxies=1, rate_limit_clock=frozen) as e:
        await ratelimits.set_rate_limit(e.pool, RateLimit(f"key:{e.key.key_id}", rpm=1), actor="test")
        await e.limited[0].limiter.sync(force_reload=True)
        body = {"model": "gpt-5.1", "stream": True, "input": "hi"}
        headers = e.headers(originator="codex_exec")
        async with aiohttp.ClientSession() as http:
            async with http.post(e.url(), json=body, headers=headers) as resp:
                assert resp.status == 200 and b"response.completed" in await resp.read()
            async with http.post(e.url(), json=body, headers=headers) as resp:
                status, got, data = resp.status, resp.headers, await resp.read()
        assert status == 200 and got["Content-Type"].startswith("text/event-stream")
        event = json.loads(data.split(b"data: ", 1)[1])
        assert event["type"] == "response.failed"
        assert event["response"]["error"]["code"] == "rate_limit_exceeded"
        assert f"try again in {got['Retry-After']}s" in event["response"]["error"]["message"]
        rows = await eventually(lambda: refused_events(e.pool), until=lambda found: len(found) == 1, timeout_s=20,
                                what="the refusal on the ledger")
        assert (rows[0]["cost_micros"], rows[0]["http_status"]) == (0, 200)


async def test_a_tokens_per_minute_limit_counts_input_and_output(db_url: str, tmp_path: Path) -> None:
    """A tpm limit on the key: requests are admitted while the minute has room for their input estimate,
    their output counts once the usage is known, and the first request without room gets OpenAI's
    ``tokens`` 429. What the admitted requests used ends within one request of the limit, and never
    before the limit was reached."""
    tpm = 3_000
    async with enforced_proxies(db_url, tmp_path, rate_limit_clock=frozen) as e, aiohttp.ClientSession() as http:
        await ratelimits.set_rate_limit(e.pool, RateLimit(f"key:{e.key.key_id}", tpm=tpm), actor="test")
        await e.limited[0].limiter.sync(force_reload=True)
        answers = []
        for n in range(100):
            answers.append(await ask(http, e, 0, n))
            if answers[-1][0] != 200:
                break
        status, headers, body = answers[-1]
        assert status == 429, "the limit never refused"
        error = json.loads(body)["error"]
        assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
        assert headers["x-ratelimit-limit-tokens"] == str(tpm) and 1 <= int(headers["Retry-After"]) <= 60
        rows = await eventually(
            lambda: e.pool.fetch("SELECT input_tokens + output_tokens AS used FROM usage_events WHERE status = 'ok'"),
            until=lambda got: len(got) == len(answers) - 1, timeout_s=20, what="the admitted requests on the ledger")
    used = sum(r["used"] for r in rows)
    largest = max(r["used"] for r in rows)
    print(f"\ntpm {tpm}: {len(rows)} admitted, {used} tokens used (largest request {largest})")
    assert len(rows) >= 2
    assert tpm - largest < used <= tpm + largest
