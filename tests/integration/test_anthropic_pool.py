"""The upstream pool on the Anthropic Messages routes, through the real proxy, PostgreSQL and the real
ledger, with two fake Anthropic upstreams on their own ports: Claude Code-shaped requests fail over with no
client-visible error (streamed and not), the ledger names the upstream that served, the circuit opens,
every upstream failing is answered at once in Anthropic's shape, and the two APIs' pools never mix."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from spendgate.proxy.upstreams import Circuit, Pool
from tests.integration.test_anthropic_flow import claude_code_headers, event_rows, hand_cost, message_request
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.proxy_harness import FakeServer, fake_upstream, running_proxy

KEY_A, KEY_B = "sk-ant-upstream-a", "sk-ant-upstream-b"
TOOLS = [{"name": "Bash", "description": "Run a shell command", "input_schema": {"type": "object"}}]
"""Claude Code's main requests offer tools; the fake takes its script only for those."""


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def two_anthropic_upstreams(db_url: str, tmp_path: Path, **pool: Any,
                                  ) -> AsyncIterator[tuple[Enforced, FakeServer, FakeServer]]:
    """Proxy and ledger whose Anthropic pool is fake ``a`` (almost always tried first, by weight) then ``b``."""
    async with fake_upstream() as a, fake_upstream() as b:
        upstreams = [{"name": "a", "kind": "anthropic", "url": a.url, "key": KEY_A, "weight": 1000},
                     {"name": "b", "kind": "anthropic", "url": b.url, "key": KEY_B, "weight": 1}]
        async with enforced_proxies(db_url, tmp_path, settings=lambda _: {
                "upstreams": upstreams, "upstream_pool": {"seed": 1, **pool}}) as e:
            yield e, a, b


def _anthropic_pool(e: Enforced) -> Pool:
    state = e.servers[0].state
    assert state is not None and state.anthropic_pool is not None
    return state.anthropic_pool


def _claude_code_turn(*, stream: bool) -> dict[str, Any]:
    return {**message_request(stream=stream), "tools": TOOLS}


async def test_claude_code_fails_over_on_429_then_outage_streamed_and_not(db_url: str, tmp_path: Path) -> None:
    """a answers 429 (Retry-After 20) then goes down: streamed and non-streamed Claude Code requests and
    count_tokens are all served by b, with no client-visible error; a is sent its own key as x-api-key,
    rests for its Retry-After, then its circuit opens, and after the cool-down one probe recloses it; a
    dropped connection fails over too. Each ledger row names the upstream that served, at its exact cost."""
    async with two_anthropic_upstreams(db_url, tmp_path, failure_threshold=2, cooldown_s=30) as (e, a, b), \
            aiohttp.ClientSession() as http:
        pool = _anthropic_pool(e)
        pool.clock = clock = Clock()
        url = f"{e.servers[0].base_url}/messages?beta=true"
        a.fake.script.append("error:429@20")
        async with http.post(url, json=_claude_code_turn(stream=True), headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
            body = await r.read()
        assert body.rstrip().endswith(b'{"type":"message_stop"}') and b"event: error" not in body
        [tried] = a.fake.received
        assert tried.headers["x-api-key"] == KEY_A and "Authorization" not in tried.headers
        assert tried.headers["anthropic-beta"] == "claude-code-20250219" and e.secret not in json.dumps(tried.headers)
        assert [s.api_key for s in b.fake.served] == [KEY_B] and b.fake.served[0].authorization is None

        async with http.post(url, json=_claude_code_turn(stream=False), headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and (await r.json())["type"] == "message"  # a rests: not tried
        assert len(a.fake.received) == 1 and len(b.fake.served) == 2

        await a.stop()
        clock.now += 20.0
        async with http.post(url, json=_claude_code_turn(stream=False), headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and (await r.json())["type"] == "message"  # a refused the connection, then b
        assert pool.state("a") is Circuit.OPEN and len(b.fake.served) == 3
        assert pool.failovers == {("a", "rate_limited"): 1, ("a", "unreachable"): 1}

        count = {k: v for k, v in _claude_code_turn(stream=False).items() if k not in ("stream", "max_tokens")}
        async with http.post(f"{e.servers[0].base_url}/messages/count_tokens?beta=true", json=count,
                             headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and (await r.json())["input_tokens"] > 0  # a's circuit is open: b
        assert [r.raw_path for r in b.fake.received][-1] == "/v1/messages/count_tokens?beta=true"

        await a.start()
        clock.now += 30.0
        assert pool.state("a") is Circuit.HALF_OPEN
        async with http.post(url, json=_claude_code_turn(stream=True), headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and (await r.read()).rstrip().endswith(b'{"type":"message_stop"}')
        assert pool.state("a") is Circuit.CLOSED and [s.api_key for s in a.fake.served] == [KEY_A]  # the probe

        a.fake.script.append("close")  # a drops the connection without answering: b, no client-visible error
        async with http.post(url, json=_claude_code_turn(stream=True), headers=claude_code_headers(e.secret)) as r:
            assert r.status == 200 and (await r.read()).rstrip().endswith(b'{"type":"message_stop"}')
        assert len(b.fake.served) == 4

        rows = await event_rows(e.pool, 6)
        assert [(r["endpoint"], r["upstream"], r["status"], r["stream"]) for r in rows] == [
            ("/v1/messages", "b", "ok", True), ("/v1/messages", "b", "ok", False), ("/v1/messages", "b", "ok", False),
            ("/v1/messages/count_tokens", "b", "ok", False), ("/v1/messages", "a", "ok", True),
            ("/v1/messages", "b", "ok", True)]
        billed = [*b.fake.served[:3], a.fake.served[0], b.fake.served[3]]
        for row, bill in zip([*rows[:3], *rows[4:]], billed, strict=True):  # failed attempts are not billed
            assert row["cost_micros"] == hand_cost(bill) > 0
        assert rows[3]["cost_micros"] == 0


async def test_every_anthropic_upstream_failing_is_answered_at_once_in_anthropics_shape(
        db_url: str, tmp_path: Path) -> None:
    """Both answering errors: the last upstream's own Anthropic error; both refusing connections: a 502
    api_error; both circuits open: a 502 at once, nothing sent. Never an OpenAI-shaped body."""
    async with fake_upstream() as a, fake_upstream() as b:
        upstreams = [{"name": "a", "kind": "anthropic", "url": a.url, "key": KEY_A, "weight": 1000},
                     {"name": "b", "kind": "anthropic", "url": b.url, "key": KEY_B}]
        async with running_proxy(db_url, tmp_path, upstreams=upstreams,
                                 upstream_pool={"seed": 1, "failure_threshold": 2, "cooldown_s": 60}) as h, \
                aiohttp.ClientSession() as http:
            url = f"{h.base_url}/messages"
            headers = claude_code_headers(h.secret)
            a.fake.script.append("error:500")
            b.fake.script.append("error:529")
            async with http.post(url, json=_claude_code_turn(stream=True), headers=headers) as r:
                assert r.status == 529
                assert await r.json() == {"type": "error", "error": {
                    "type": "overloaded_error", "message": "fake upstream scripted failure 529"}}
            await a.stop()
            await b.stop()
            for _ in range(2):
                started = time.monotonic()
                async with http.post(url, json=_claude_code_turn(stream=False), headers=headers) as r:
                    doc = await r.json()
                    assert (r.status, doc["type"], doc["error"]["type"]) == (502, "error", "api_error"), doc
                    assert a.url not in doc["error"]["message"] and b.url not in doc["error"]["message"]
                assert time.monotonic() - started < 5.0
            state = h.server.state
            assert state is not None and state.anthropic_pool is not None
            assert state.anthropic_pool.state("a") is Circuit.OPEN and state.anthropic_pool.state("b") is Circuit.OPEN
            assert 55 <= int(r.headers["retry-after"]) <= 60  # the last answer: both circuits open, nothing sent
            assert len(a.fake.received) == 1 and len(b.fake.received) == 1


async def test_the_openai_and_anthropic_pools_never_mix(db_url: str, tmp_path: Path) -> None:
    """A kind anthropic upstream serves the Messages routes only: an OpenAI-route request for the same model
    goes to the OpenAI routes' own upstream (``default``), and a Messages request for a model no Anthropic
    upstream lists is refused in Anthropic's shape without being sent anywhere."""
    async with fake_upstream() as a:
        upstreams = [{"name": "a", "kind": "anthropic", "url": a.url, "key": KEY_A, "models": ["claude-sonnet-4-5"]}]
        async with running_proxy(db_url, tmp_path, upstreams=upstreams) as h, aiohttp.ClientSession() as http:
            async with http.post(f"{h.base_url}/chat/completions", headers=h.headers(), json={
                    "model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200
            async with http.post(f"{h.base_url}/messages", json=message_request(stream=False),
                                 headers=claude_code_headers(h.secret)) as r:
                assert r.status == 200
            async with http.post(f"{h.base_url}/messages", json=message_request(stream=False, model="claude-haiku-4-5"),
                                 headers=claude_code_headers(h.secret)) as r:
                doc = await r.json()
                assert (r.status, doc["type"], doc["error"]["type"]) == (400, "error", "invalid_request_error"), doc
                assert doc["error"]["code"] == "model_not_found" and r.headers["x-should-retry"] == "false"
            assert [s.path for s in h.fake.served] == ["/v1/chat/completions"]
            assert [(s.path, s.api_key) for s in a.fake.served] == [("/v1/messages", KEY_A)]
            assert len(a.fake.received) == 1
