"""Anthropic's Messages API through the real proxy, the fake upstream, PostgreSQL and the real ledger:
metered from Anthropic's usage with prompt-cache writes and reads at their own prices, attributed the way
Claude Code sends its requests, answered in Anthropic's error shape, and refused with the 429 that stops
Claude Code at once; one budget per developer across Codex and Claude Code."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.periods import PeriodKind
from spendgate.proxy.fake_upstream import FakeConfig
from tests.support.enforced_proxy import Enforced, balance_micros, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.ports import free_port
from tests.support.proxy_harness import ANTHROPIC_UPSTREAM_KEY, running_proxy
from tests.support.waiting import eventually

SESSION = "0b7e1c9a-6f5e-4c1b-9a57-2f3c8d1e4a60"
USER_ID = json.dumps({"device_id": "ab" * 32, "account_uuid": "", "session_id": SESSION})
SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
    {"type": "text", "text": "Here is useful information about the environment you are running in:\n<env>\n"
                             "Primary working directory: /home/alice/src/api\nIs a git repository: true\n</env>",
     "cache_control": {"type": "ephemeral"}},
]
# claude-sonnet-4-5, micro-dollars per 1M tokens: input, cache read, 5-minute write, 1-hour write, output
SONNET = (3_000_000, 300_000, 3_750_000, 6_000_000, 15_000_000)


def claude_code_headers(secret: str, *, bearer: bool = False) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {secret}"} if bearer else {"x-api-key": secret}
    return {**auth, "X-Claude-Code-Session-Id": SESSION, "User-Agent": "claude-cli/2.1.197 (external, sdk-cli)",
            "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219", "x-app": "cli"}


def message_request(*, stream: bool, model: str = "claude-sonnet-4-5", text: str = "list the files") -> dict[str, Any]:
    return {"model": model, "max_tokens": 1024, "stream": stream, "system": SYSTEM,
            "metadata": {"user_id": USER_ID},
            "messages": [{"role": "user", "content": [{"type": "text", "text": text,
                                                        "cache_control": {"type": "ephemeral"}}]}]}


def hand_cost(served: Any) -> int:
    """The cost worked out here from Anthropic's price rules, not with spendgate's cost function."""
    plain = served.input_tokens - served.cached_tokens - served.cache_write_5m_tokens - served.cache_write_1h_tokens
    i, r, w5, w1, o = SONNET
    numerator = (plain * i + served.cached_tokens * r + served.cache_write_5m_tokens * w5
                 + served.cache_write_1h_tokens * w1 + served.output_tokens * o)
    return (numerator + 500_000) // 1_000_000


async def event_rows(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record]:
    return await eventually(lambda: pool.fetch("SELECT * FROM usage_events ORDER BY occurred_at"),
                            until=lambda rows: len(rows) >= n, what=f"{n} usage events in the ledger")


def messages_url(e: Enforced, tail: str = "") -> str:
    return f"{e.servers[0].base_url}/messages{tail}"


async def test_streamed_message_is_metered_with_cache_writes_and_reads(db_url: str, tmp_path: Path) -> None:
    """A Claude Code stream: relayed whole, one ledger row at the exact cache-aware cost, Claude Code's
    session, repo and client; the gateway's Anthropic key goes upstream, the virtual key never does."""
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        async with http.post(messages_url(e, "?beta=true"), json=message_request(stream=True),
                             headers=claude_code_headers(e.secret)) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
            body = await resp.read()
        assert body.count(b"event: content_block_delta") == 8 and body.rstrip().endswith(b'{"type":"message_stop"}')
        [row] = await event_rows(e.pool, 1)
        [served] = e.upstream.fake.served
        assert served.cache_write_5m_tokens > 0 and served.cache_write_1h_tokens > 0 and served.cached_tokens > 0
        assert (row["endpoint"], row["stream"], row["status"], row["usage_source"]) == (
            "/v1/messages", True, "ok", "reported")
        assert (row["input_tokens"], row["cached_tokens"], row["cache_write_5m_tokens"],
                row["cache_write_1h_tokens"], row["output_tokens"]) == (
            served.input_tokens, served.cached_tokens, served.cache_write_5m_tokens, served.cache_write_1h_tokens,
            served.output_tokens)
        assert row["cost_micros"] == hand_cost(served) > 0
        assert (row["cache_write_5m_price_micros"], row["cache_write_1h_price_micros"]) == (3_750_000, 6_000_000)
        assert (row["session_id"], row["repo"], row["client"]) == (SESSION, "/home/alice/src/api", "claude-code")
        assert row["upstream_request_id"].startswith("req_fake_")
        assert row["upstream"] == "anthropic"  # anthropic_upstream_url: the Anthropic pool of one
        [received] = [r for r in e.upstream.fake.received if r.raw_path.startswith("/v1/messages")]
        assert received.raw_path == "/v1/messages?beta=true"
        assert received.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY and "Authorization" not in received.headers
        assert received.headers["anthropic-beta"] == "claude-code-20250219"
        assert e.secret not in json.dumps(received.headers)


async def test_unstreamed_tool_use_with_bearer_key_is_metered(db_url: str, tmp_path: Path) -> None:
    """ANTHROPIC_AUTH_TOKEN sends the virtual key as a Bearer token: accepted; a non-streamed tool_use
    answer is relayed and metered from its body's usage, the session taken from metadata.user_id."""
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        headers = claude_code_headers(e.secret, bearer=True)
        del headers["X-Claude-Code-Session-Id"]
        async with http.post(messages_url(e), json=message_request(stream=False), headers={
                **headers, "x-fake-scenario": "tool:ls -la"}) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert answer["stop_reason"] == "tool_use"
        assert answer["content"][0]["input"]["command"] == "ls -la"
        [row] = await event_rows(e.pool, 1)
        [served] = e.upstream.fake.served
        assert (row["stream"], row["session_id"], row["output_tokens"]) == (False, SESSION, served.output_tokens)
        assert row["cost_micros"] == hand_cost(served) > 0
        assert served.authorization is None and served.api_key == ANTHROPIC_UPSTREAM_KEY


async def test_count_tokens_is_forwarded_free_and_evented(db_url: str, tmp_path: Path) -> None:
    """/v1/messages/count_tokens reaches Anthropic and leaves a $0 usage event."""
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        request = message_request(stream=False)
        del request["stream"], request["max_tokens"]
        async with http.post(messages_url(e, "/count_tokens?beta=true"), json=request,
                             headers=claude_code_headers(e.secret)) as resp:
            assert resp.status == 200
            assert (await resp.json())["input_tokens"] > 0
        [row] = await event_rows(e.pool, 1)
        assert (row["endpoint"], row["cost_micros"], row["status"], row["session_id"]) == (
            "/v1/messages/count_tokens", 0, "ok", SESSION)


async def test_errors_on_the_anthropic_routes_are_in_anthropics_shape(db_url: str, tmp_path: Path) -> None:
    """No key, an unknown key, bad JSON, an unpriced model and an unlisted route: Anthropic's error shape
    with x-should-retry false; an error Anthropic itself sent is relayed as it came."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        url = f"{h.base_url}/messages"
        cases: list[tuple[str, dict[str, str], Any, int, str]] = [
            (url, {}, message_request(stream=True), 401, "authentication_error"),
            (url, {"x-api-key": "sk-sg-unknown"}, message_request(stream=True), 401, "authentication_error"),
            (url, {"x-api-key": h.secret}, "{not json", 400, "invalid_request_error"),
            (url, {"x-api-key": h.secret}, message_request(stream=True, model="claude-unpriced-9"), 400,
             "invalid_request_error"),
            (f"{url}/batches", {"x-api-key": h.secret}, message_request(stream=False), 404, "not_found_error"),
        ]
        for target, headers, body, status, kind in cases:
            data = body if isinstance(body, str) else json.dumps(body)
            async with http.post(target, data=data, headers=headers) as resp:
                doc = await resp.json(content_type=None)
                assert (resp.status, doc["type"], doc["error"]["type"]) == (status, "error", kind), doc
                assert resp.headers["x-should-retry"] == "false"
                assert doc["error"]["message"]
        async with http.post(url, json=message_request(stream=True),
                             headers={"x-api-key": h.secret, "x-fake-scenario": "error:529"}) as resp:
            assert resp.status == 529
            assert await resp.json() == {"type": "error", "error": {"type": "overloaded_error",
                                                                     "message": "fake upstream scripted failure 529"}}
            assert "x-should-retry" not in resp.headers
        assert [r.raw_path for r in h.fake.received] == ["/v1/messages"]  # only the scripted 529 went upstream


async def test_unreachable_anthropic_upstream_is_a_502_in_anthropics_shape(db_url: str, tmp_path: Path) -> None:
    """The Anthropic upstream down: 502 ``api_error``, its address not told, Claude Code may retry."""
    down = f"http://127.0.0.1:{free_port()}/v1"
    async with running_proxy(db_url, tmp_path, anthropic_upstream_url=down) as h, aiohttp.ClientSession() as http, \
            http.post(f"{h.base_url}/messages", json=message_request(stream=True),
                      headers={"x-api-key": h.secret}) as resp:
        doc = await resp.json()
        assert (resp.status, doc["error"]["type"]) == (502, "api_error")
        assert "127.0.0.1" not in doc["error"]["message"] and "x-should-retry" not in resp.headers


async def test_one_budget_across_codex_and_claude_code_and_the_pause_stops_claude_code(
        db_url: str, tmp_path: Path) -> None:
    """The same key spends through /v1/responses and /v1/messages into one developer balance; past it,
    Claude Code gets a 429 in Anthropic's shape with x-should-retry false and retry-after to the reset."""
    async with enforced_proxies(db_url, tmp_path, budgets={"developer:alice": {"usd": 1.0}},
                                fake_config=FakeConfig()) as e, aiohttp.ClientSession() as http:
        async with http.post(messages_url(e), json=message_request(stream=True),
                             headers=claude_code_headers(e.secret)) as resp:
            assert resp.status == 200
            await resp.read()
        codex = {"model": "gpt-5.1", "stream": True, "input": [{"type": "message", "role": "user", "content": "hi"}]}
        async with http.post(e.url(), json=codex, headers=e.headers(**{"session-id": "codex-1"})) as resp:
            assert resp.status == 200
            await resp.read()
        rows = await event_rows(e.pool, 2)
        both = sum(r["cost_micros"] for r in rows)
        assert {r["endpoint"] for r in rows} == {"/v1/messages", "/v1/responses"}
        assert await eventually(lambda: balance_micros(e.pool, "developer:alice"), until=lambda b: b == both,
                                what="one developer balance with both requests") == both
        view = e.deciders[0].inner.enforcer.view
        key = BalanceKey("developer:alice", PeriodKind.DAY, datetime.now(UTC).date())
        await publish(e.ledger_runtime.bus, [usage_event(
            key_id=e.key.key_id, developer="alice", team="platform", occurred_at=datetime.now(UTC),
            session_id="seed", cost_micros=1_200_000 - both)])
        await eventually(lambda: _spent(view, key), until=lambda s: s >= 1_200_000, what="the view past the budget")
        before = len(e.upstream.fake.served)
        async with http.post(messages_url(e), json=message_request(stream=True),
                             headers=claude_code_headers(e.secret)) as resp:
            doc = await resp.json()
            assert resp.status == 429 and len(e.upstream.fake.served) == before
            assert resp.headers["x-should-retry"] == "false"
            assert 0 < int(resp.headers["retry-after"]) <= 86_400 + 1
            assert abs(int(resp.headers["retry-after"]) - (doc["error"]["resets_at"] - time.time())) < 5
        assert (doc["type"], doc["error"]["type"], doc["error"]["code"]) == (
            "error", "rate_limit_error", "usage_limit_reached")
        assert doc["error"]["message"].startswith("Budget paused by spendgate: developer alice's daily budget")
        refused = await eventually(
            lambda: e.pool.fetchrow("SELECT * FROM usage_events WHERE status = 'refused'"),
            until=lambda r: r is not None, what="the refusal on record")
        assert (refused["endpoint"], refused["refusal_reason"], refused["client"]) == (
            "/v1/messages", "budget_pause", "claude-code")


async def _spent(view: Any, key: BalanceKey) -> int:
    return int(view.spent_micros(key))


def failing_rounds(n: int) -> list[dict[str, Any]]:
    """Claude Code's history after ``n`` identical failing Bash calls."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "list /nope"}]}]
    for i in range(n):
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": "ls /nope"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "is_error": True,
             "content": "Exit code 2\nls: cannot access '/nope': No such file or directory"}]})
    return messages


async def test_claude_code_retry_loop_is_refused_in_anthropics_shape(db_url: str, tmp_path: Path) -> None:
    """The same Bash command failing again and again: the request after the third retry is a 429
    rate_limit_error (code retry_budget_exhausted) with x-should-retry false; it never reaches the upstream."""
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        statuses = []
        for n in range(1, 5):
            request = {**message_request(stream=True), "messages": failing_rounds(n)}
            async with http.post(messages_url(e), json=request, headers=claude_code_headers(e.secret)) as resp:
                statuses.append(resp.status)
                last, headers = await resp.read(), resp.headers
        assert statuses == [200, 200, 200, 429] and len(e.upstream.fake.served) == 3
        doc = json.loads(last)
        assert (doc["type"], doc["error"]["type"], doc["error"]["code"]) == (
            "error", "rate_limit_error", "retry_budget_exhausted")
        assert "`ls /nope` (Bash) failed 4 times in a row" in doc["error"]["message"]
        assert headers["x-should-retry"] == "false"
        rows = await event_rows(e.pool, 4)
        assert [(r["retry"], r["refusal_reason"]) for r in rows] == [
            (False, None), (True, None), (True, None), (True, "retry_budget")]


async def test_stream_broken_off_before_message_delta_is_estimated_and_ends_in_an_error_event(
        db_url: str, tmp_path: Path) -> None:
    """The upstream ends the stream in the content: the client gets an Anthropic ``error`` event last, and
    the request is metered from the proxy's estimate (input from the body, output from the streamed text)."""
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        async with http.post(messages_url(e), json=message_request(stream=True),
                             headers={**claude_code_headers(e.secret), "x-fake-scenario": "cut"}) as resp:
            assert resp.status == 200
            body = await resp.read()
        last = body.rstrip().split(b"\n\n")[-1]
        assert last.startswith(b"event: error\ndata: ")
        assert json.loads(last.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
        [row] = await event_rows(e.pool, 1)
        assert (row["status"], row["usage_source"]) == ("incomplete", "estimated")
        assert row["input_tokens"] > 0 and row["cost_micros"] > 0
