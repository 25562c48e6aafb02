"""The upstream pool through a real proxy on real PostgreSQL, with two fake upstreams on their own ports:
failover with no client-visible error, the circuit opening and reclosing, Retry-After honoured, every
upstream down, a hanging upstream, and Azure OpenAI's request shape."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai

from spendgate.core.config_providers import ReconcileSettings
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.domain.reconcile import PPM, format_rate
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.proxy.fake_reports import OPENAI_ADMIN_KEY, key_id
from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.proxy.upstreams import Circuit, Pool
from spendgate.reconcile.run import reconcile
from tests.support.proxy_harness import FakeServer, Harness, fake_upstream, published_usage, running_proxy
from tests.support.waiting import eventually

KEY_A, KEY_B = "sk-upstream-a", "sk-upstream-b"
METRICS_TOKEN = "metrics-token-for-tests"


@contextlib.asynccontextmanager
async def two_upstreams(db_url: str, tmp_path: Path, *, weights: tuple[int, int] = (1000, 1),
                        **pool: Any) -> AsyncIterator[tuple[Harness, FakeServer, FakeServer]]:
    """A proxy whose pool is fake ``a`` (almost always tried first, by weight) then fake ``b``."""
    async with fake_upstream() as a, fake_upstream() as b:
        upstreams = [{"name": "a", "url": a.url, "key": KEY_A, "weight": weights[0]},
                     {"name": "b", "url": b.url, "key": KEY_B, "weight": weights[1]}]
        async with running_proxy(db_url, tmp_path, upstreams=upstreams, metrics_token=METRICS_TOKEN,
                                 upstream_pool={"seed": 1, **pool}) as h:
            yield h, a, b


def _pool(h: Harness) -> Pool:
    assert h.server.state is not None and h.server.state.pool is not None
    return h.server.state.pool


async def _events(h: Harness, n: int) -> list[UsageRecorded]:
    return await eventually(lambda: published_usage(h.runtime.pool), until=lambda evs: len(evs) >= n,
                            what=f"{n} usage events")


async def _metrics(h: Harness) -> str:
    url = h.base_url.removesuffix("/v1") + "/metrics"
    async with aiohttp.ClientSession() as http, \
            http.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
        assert r.status == 200
        return await r.text()


async def _stream_text(client: openai.AsyncOpenAI) -> str:
    stream = await client.responses.create(model="gpt-5.1", input="hi", stream=True)
    return "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])


async def test_failover_on_429_then_outage_and_the_circuit_recloses(db_url: str, tmp_path: Path) -> None:
    """a answers 429 then goes down: every streamed request is served by b with no client-visible error,
    a rests for its Retry-After, its circuit opens, and after the cool-down one probe recloses it."""
    async with two_upstreams(db_url, tmp_path, failure_threshold=2, cooldown_s=30) as (h, a, b), \
            openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
        pool = _pool(h)
        pool.clock = clock = Clock()  # the pool's time, moved by hand: no test waits for a rest to run out
        a.fake.script.append("error:429@20")
        assert (await _stream_text(client)).startswith("word0")
        assert [r.headers["Authorization"] for r in a.fake.received] == [f"Bearer {KEY_A}"]
        assert [s.authorization for s in b.fake.served] == [f"Bearer {KEY_B}"]
        await a.stop()
        clock.now += 19.0
        assert (await _stream_text(client)).startswith("word0")  # a rests for its Retry-After: not tried
        assert len(a.fake.received) == 1 and len(b.fake.served) == 2
        clock.now += 1.0
        assert (await _stream_text(client)).startswith("word0")  # a tried (connection refused), then b
        assert pool.state("a") is Circuit.OPEN and len(b.fake.served) == 3
        text = await _metrics(h)
        assert 'spendgate_upstream_circuit_state{upstream="a"} 2.0' in text
        assert 'spendgate_upstream_failover_total{reason="rate_limited",upstream="a"} 1.0' in text
        assert 'spendgate_upstream_failover_total{reason="unreachable",upstream="a"} 1.0' in text
        await a.start()
        clock.now += 29.0
        assert (await _stream_text(client)).startswith("word0")  # still open: b
        assert len(a.fake.received) == 1 and len(b.fake.served) == 4
        clock.now += 1.0
        assert pool.state("a") is Circuit.HALF_OPEN
        assert (await _stream_text(client)).startswith("word0")  # the probe goes to a, and succeeds
        assert pool.state("a") is Circuit.CLOSED and len(a.fake.served) == 1
        assert 'spendgate_upstream_circuit_state{upstream="a"} 0.0' in await _metrics(h)
        events = await _events(h, 5)
        assert [(e.upstream, e.status, e.http_status) for e in events] == [
            ("b", "ok", 200), ("b", "ok", 200), ("b", "ok", 200), ("b", "ok", 200), ("a", "ok", 200)]
        served = [*b.fake.served, *a.fake.served]
        for event, bill in zip(events, served, strict=True):  # the failed attempts are not billed
            assert event.cost_micros == cost_micros(SHIPPED_PRICES["gpt-5.1"], input_tokens=bill.input_tokens,
                                                    cached_tokens=bill.cached_tokens,
                                                    output_tokens=bill.output_tokens)


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def test_chat_stream_fails_over_on_a_5xx(db_url: str, tmp_path: Path) -> None:
    """A streamed chat completion whose first upstream answers 503 arrives whole from the second, metered once."""
    async with two_upstreams(db_url, tmp_path) as (h, a, b), \
            openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
        a.fake.script.append("error:503")
        stream = await client.chat.completions.create(model="gpt-4.1-mini", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("word0")
        [event] = await _events(h, 1)
        [bill] = b.fake.served
        assert (event.upstream, event.status, event.output_tokens) == ("b", "ok", bill.output_tokens)
        assert [r.raw_path for r in a.fake.received] == ["/v1/chat/completions"] and not a.fake.served


async def test_every_upstream_down_answers_at_once_never_hangs(db_url: str, tmp_path: Path) -> None:
    """Both failing: the client gets the last upstream's own error; both refusing connections: a 502; both
    circuits open: a 502 with Retry-After, without any upstream being tried."""
    async with two_upstreams(db_url, tmp_path, failure_threshold=2, cooldown_s=60) as (h, a, b), \
            aiohttp.ClientSession() as http:
        body = {"model": "gpt-5.1", "input": "hi"}
        url = f"{h.base_url}/responses"
        a.fake.script.append("error:500")
        b.fake.script.append("error:502")
        async with http.post(url, json=body, headers=h.headers()) as r:
            assert r.status == 502
            assert (await r.json())["error"]["message"] == "fake upstream scripted failure 502"
        await a.stop()
        await b.stop()
        async with http.post(url, json=body, headers=h.headers()) as r:
            assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_unreachable"
        assert _pool(h).state("a") is Circuit.OPEN and _pool(h).state("b") is Circuit.OPEN
        started = time.monotonic()
        async with http.post(url, json=body, headers=h.headers()) as r:
            error = (await r.json())["error"]
            assert (r.status, error["code"], error["type"]) == (502, "upstream_unavailable", "upstream_error")
            assert 58 <= int(r.headers["Retry-After"]) <= 60
        assert time.monotonic() - started < 2.0
        events = await _events(h, 3)
        assert [(e.status, e.http_status, e.upstream, e.cost_micros) for e in events] == [
            ("upstream_error", 502, "b", 0), ("upstream_error", 502, None, 0), ("upstream_error", 502, None, 0)]


async def test_a_hanging_upstream_is_left_after_the_headers_timeout(db_url: str, tmp_path: Path) -> None:
    """An upstream that sends no headers within headers_timeout_s is given up for the next one."""
    async with two_upstreams(db_url, tmp_path, headers_timeout_s=0.5) as (h, a, b), \
            openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
        a.fake.script.append("hang")
        started = time.monotonic()
        response = await client.responses.create(model="gpt-5.1", input="hi")
        assert response.output_text.startswith("word0")
        assert 0.5 <= time.monotonic() - started < 5.0
        assert len(b.fake.served) == 1
        assert 'spendgate_upstream_failover_total{reason="timeout",upstream="a"} 1.0' in await _metrics(h)


async def test_a_connection_closed_without_an_answer_fails_over(db_url: str, tmp_path: Path) -> None:
    """An upstream that drops the connection before answering is a failure: the next one serves."""
    async with two_upstreams(db_url, tmp_path) as (h, a, _b), \
            openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
        a.fake.script.append("close")
        response = await client.responses.create(model="gpt-5.1", input="hi")
        assert response.output_text.startswith("word0")
        [event] = await _events(h, 1)
        assert event.upstream == "b"


async def test_weights_share_the_requests(db_url: str, tmp_path: Path) -> None:
    """With weights 3:1 (seeded) the first upstream serves most requests and the second some; all succeed."""
    async with two_upstreams(db_url, tmp_path, weights=(3, 1)) as (h, a, b), \
            openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
        for _ in range(40):
            await client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
        assert len(a.fake.served) + len(b.fake.served) == 40
        assert 22 <= len(a.fake.served) <= 38 and len(b.fake.served) >= 2
        events = await _events(h, 40)
        assert sum(e.upstream == "a" for e in events) == len(a.fake.served)


async def test_two_accounts_reconcile_per_upstream(db_url: str, tmp_path: Path) -> None:
    """Traffic spread over two upstreams (two OpenAI organisations) is folded with each event's upstream,
    and each organisation's bill reconciles against its own share of the ledger at capture 1.000."""
    async with two_upstreams(db_url, tmp_path, weights=(1, 1)) as (h, a, b), aiohttp.ClientSession() as http:
        stop = asyncio.Event()
        ledger = asyncio.create_task(LedgerConsumer(h.runtime.pool, h.runtime.bus).run(stop))
        try:
            for i in range(8):  # prompts of thousands of tokens: per-request rounding stays below 0.0005
                body = {"model": "gpt-5.1", "input": "count " * (8_000 + 500 * i)}
                async with http.post(f"{h.base_url}/responses", json=body, headers=h.headers()) as r:
                    assert r.status == 200
            await eventually(lambda: h.runtime.pool.fetch("SELECT upstream FROM usage_events"),
                             until=lambda rows: len(rows) == 8, what="8 events folded")
        finally:
            stop.set()
            await ledger
        stored = await h.runtime.pool.fetch("SELECT upstream, count(*) AS n FROM usage_events GROUP BY 1")
        assert {r["upstream"]: r["n"] for r in stored} == {"a": len(a.fake.served), "b": len(b.fake.served)}
        assert a.fake.served and b.fake.served
        accounts = [{"name": name, "kind": "openai", "admin_key": OPENAI_ADMIN_KEY, "base_url": fake.url,
                     "api_key_ids": {key_id(key): name}} for name, key, fake in (("a", KEY_A, a), ("b", KEY_B, b))]
        settings = h.runtime.settings.model_copy(update={"reconcile": ReconcileSettings.model_validate(
            {"providers": accounts, "gap_pct": 2, "gap_min_usd": "0.0001"})})
        today = datetime.now(UTC).date()
        outcome = await reconcile(h.runtime.pool, settings, today, today, now=datetime.now(UTC))
        tokens = {(line.provider, line.upstream): line for line in outcome.lines if line.tokens_capture_ppm is not None}
        assert set(tokens) == {("a", "a"), ("b", "b")}
        for name, fake in (("a", a), ("b", b)):
            line = tokens[(name, name)]
            assert line.tokens_capture_ppm == PPM and line.ledger.requests == len(fake.fake.served)
        costs = [line for line in outcome.lines if line.cost_capture_ppm is not None]
        assert {line.provider for line in costs} == {"a", "b"}
        assert all(format_rate(line.cost_capture_ppm) == "1.000" for line in costs), costs
        assert outcome.new_gaps == []


async def test_azure_request_shape_both_path_forms(db_url: str, tmp_path: Path) -> None:
    """Azure: api-key header (never Authorization, never the virtual key), the deployment as model, the v1
    path for one upstream and the dated deployment path with api-version for the other."""
    async with fake_upstream(FakeConfig(azure_api_key="az-key")) as az:
        root = az.url.removesuffix("/v1")
        upstreams = [
            {"name": "azure-v1", "kind": "azure", "url": root, "key": "az-key", "deployments": {"gpt-5.1": "prod-51"}},
            {"name": "azure-dated", "kind": "azure", "url": root + "/", "key": "az-key", "api_version": "2024-10-21",
             "deployments": {"gpt-4.1-mini": "mini-dep"}},
        ]
        async with running_proxy(db_url, tmp_path, upstreams=upstreams) as h, \
                openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0) as client:
            response = await client.responses.create(model="gpt-5.1", input="hi")
            assert response.output_text.startswith("word0")
            stream = await client.chat.completions.create(model="gpt-4.1-mini", stream=True,
                                                          messages=[{"role": "user", "content": "hi"}])
            assert "".join([c.choices[0].delta.content or "" async for c in stream]).startswith("word0")
            first, second = az.fake.received
            assert first.raw_path == "/openai/v1/responses"
            assert second.raw_path == "/openai/deployments/mini-dep/chat/completions?api-version=2024-10-21"
            for got in (first, second):
                headers = {k.lower(): v for k, v in got.headers.items()}
                assert headers["api-key"] == "az-key" and "authorization" not in headers
                assert h.secret not in str(got.headers) and h.secret.encode() not in got.body
            assert [s.model for s in az.fake.served] == ["prod-51", "mini-dep"]
            events = await _events(h, 2)
            assert [(e.upstream, e.model_used, e.status) for e in events] == [
                ("azure-v1", "gpt-5.1", "ok"), ("azure-dated", "gpt-4.1-mini", "ok")]
            assert all(e.cost_micros > 0 for e in events)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{h.base_url}/responses", json={"model": "gpt-4o", "input": "hi"}, headers=h.headers()) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "model_not_found"
            assert len(az.fake.received) == 2  # a model no upstream serves is never sent


async def test_the_fake_azure_refuses_a_wrong_key_and_a_missing_api_version() -> None:
    """The fake checks what Azure checks: the api-key header, and api-version on the deployment path."""
    async with fake_upstream(FakeConfig(azure_api_key="az-key")) as az, aiohttp.ClientSession() as http:
        root = az.url.removesuffix("/v1")
        body = {"model": "d", "input": "hi"}
        async with http.post(f"{root}/openai/v1/responses", json=body, headers={"api-key": "nope"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "401"
        async with http.post(f"{root}/openai/deployments/d/chat/completions", json=body,
                             headers={"api-key": "az-key"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "MissingApiVersionParameter"
        async with http.post(f"{root}/openai/deployments/d/chat/completions?api-version=2024-10-21",
                             json={**body, "messages": []}, headers={"api-key": "az-key"}) as r:
            assert r.status == 200
