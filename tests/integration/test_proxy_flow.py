"""Requests through the proxy with the OpenAI Python SDK and raw HTTP: relayed intact, metered once."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import aiohttp
import openai

from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.proxy.fake_upstream import FakeConfig
from tests.support.proxy_harness import UPSTREAM_KEY, Harness, published_usage, running_proxy
from tests.support.waiting import eventually

META = json.dumps({"session_id": "sess-1", "turn_id": "turn-1",
                   "workspaces": {"/home/alice/src/api": {"has_changes": False}}})


def _client(h: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.base_url, api_key=h.secret, max_retries=0)


async def _events(h: Harness, n: int) -> list:  # type: ignore[type-arg]
    return await eventually(lambda: published_usage(h.runtime.pool), until=lambda evs: len(evs) >= n,
                            what=f"{n} usage events")


def _expected_cost(model: str, served) -> int:  # type: ignore[no-untyped-def]
    return cost_micros(SHIPPED_PRICES[model], input_tokens=served.input_tokens, cached_tokens=served.cached_tokens,
                       output_tokens=served.output_tokens)


async def test_sdk_responses_stream_is_relayed_and_metered(db_url: str, tmp_path: Path) -> None:
    """responses.create(stream=True) via the SDK: full text arrives, one event with Codex attribution."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        stream = await client.responses.create(
            model="gpt-5.1", input="hi", stream=True,
            extra_headers={"session-id": "sess-1", "x-codex-turn-metadata": META, "originator": "codex_exec"})
        kinds = [event.type async for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        [event] = await _events(h, 1)
        [served] = h.fake.served
        assert served.authorization == f"Bearer {UPSTREAM_KEY}"
        assert (event.status, event.usage_source, event.http_status) == ("ok", "reported", 200)
        assert (event.input_tokens, event.cached_tokens, event.output_tokens, event.reasoning_tokens) == (
            served.input_tokens, served.cached_tokens, served.output_tokens, served.reasoning_tokens)
        assert event.cost_micros == _expected_cost("gpt-5.1", served) > 0
        assert (event.key_id, event.developer, event.team, event.cost_center) == (
            h.key.key_id, "alice", "platform", "cc-42")
        assert (event.session_id, event.turn_id, event.repo, event.client) == (
            "sess-1", "turn-1", "/home/alice/src/api", "codex_exec")
        assert event.upstream_request_id and event.upstream_request_id.startswith("req_fake_")
        assert event.ttfb_ms is not None and event.latency_ms >= event.ttfb_ms
        rows = await h.runtime.pool.fetch("SELECT value FROM bus_log")
        assert UPSTREAM_KEY.encode() not in b"".join(bytes(r["value"]) for r in rows)
        assert h.secret.encode() not in b"".join(bytes(r["value"]) for r in rows)


async def test_sdk_responses_non_stream(db_url: str, tmp_path: Path) -> None:
    """responses.create without streaming returns the body and meters its usage block."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        response = await client.responses.create(model="gpt-5.1-mini", input="hi")
        assert response.output_text.startswith("word0")
        [event] = await _events(h, 1)
        [served] = h.fake.served
        assert event.endpoint == "/v1/responses" and event.model_used == "gpt-5.1-mini"
        assert event.stream is False
        assert event.cost_micros == _expected_cost("gpt-5.1-mini", served)


async def test_sdk_chat_stream_gets_no_injected_usage_chunk(db_url: str, tmp_path: Path) -> None:
    """chat.completions stream: the proxy asks for usage, meters it, and the client never sees that chunk."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        stream = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = [c async for c in stream]
        assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("word0")
        [event] = await _events(h, 1)
        [served] = h.fake.served
        assert served.reported and event.usage_source == "reported" and event.stream is True
        assert event.output_tokens == served.output_tokens
        assert event.cost_micros == _expected_cost("gpt-4.1-mini", served)


async def test_sdk_chat_stream_with_usage_requested_keeps_it(db_url: str, tmp_path: Path) -> None:
    """A client that asked for include_usage gets its usage chunk, and the request is metered once."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        stream = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        usages = [c.usage async for c in stream if c.usage is not None]
        assert len(usages) == 1
        [event] = await _events(h, 1)
        assert event.input_tokens == usages[0].prompt_tokens


async def test_sdk_chat_non_stream(db_url: str, tmp_path: Path) -> None:
    """chat.completions.create without streaming: the completion and its usage are metered."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert completion.usage is not None
        [event] = await _events(h, 1)
        assert (event.input_tokens, event.output_tokens) == (
            completion.usage.prompt_tokens, completion.usage.completion_tokens)
        assert event.endpoint == "/v1/chat/completions"


async def test_models_route_is_relayed_as_a_free_event(db_url: str, tmp_path: Path) -> None:
    """GET /v1/models is relayed and, like every forwarded request, leaves a usage event: at $0."""
    async with running_proxy(db_url, tmp_path) as h, _client(h) as client:
        models = await client.models.list()
        assert {m.id for m in models.data} >= {"gpt-5.1"}
        await client.responses.create(model="gpt-5.1", input="hi")
        events = await _events(h, 2)
        assert [(e.endpoint, e.cost_micros == 0) for e in events] == [("/v1/models", True), ("/v1/responses", False)]


async def test_client_abort_mid_stream_is_metered_as_estimated(db_url: str, tmp_path: Path) -> None:
    """A client that hangs up mid-stream yields client_aborted, with output counted from the streamed text."""
    config = FakeConfig(chunks=40, chunk_interval_ms=50)
    async with running_proxy(db_url, tmp_path, fake_config=config) as h, aiohttp.ClientSession() as http:
        body = {"model": "gpt-5.1", "input": "hi", "stream": True}
        async with http.post(f"{h.base_url}/responses", json=body, headers=h.headers()) as resp:
            seen = b""
            async for chunk in resp.content.iter_any():
                seen += chunk
                if seen.count(b"output_text.delta") >= 3:
                    break
        [event] = await _events(h, 1)
        assert (event.status, event.usage_source) == ("client_aborted", "estimated")
        assert 3 <= event.output_tokens < 40 * 3
        assert event.input_tokens > 0 and event.cost_micros > 0


async def test_truncated_stream_is_metered_as_incomplete(db_url: str, tmp_path: Path) -> None:
    """An upstream stream that ends without response.completed is still metered (estimated)."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        body = {"model": "gpt-5.1", "input": "hi", "stream": True}
        async with http.post(f"{h.base_url}/responses", json=body,
                             headers=h.headers(**{"x-fake-scenario": "truncated"})) as resp:
            assert resp.status == 200
            with contextlib.suppress(aiohttp.ClientPayloadError):
                await resp.read()
        [event] = await _events(h, 1)
        assert (event.status, event.usage_source) == ("incomplete", "estimated")
        assert event.output_tokens > 0 and event.cost_micros > 0


async def test_upstream_error_passes_through_and_is_metered(db_url: str, tmp_path: Path) -> None:
    """An upstream 500 reaches the client with its body unchanged; the event says upstream_error."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        async with http.post(f"{h.base_url}/responses", json={"model": "gpt-5.1", "input": "x"},
                             headers=h.headers(**{"x-fake-scenario": "error:500"})) as resp:
            assert resp.status == 500
            body = await resp.json()
        assert body["error"]["message"] == "fake upstream scripted failure 500"
        [event] = await _events(h, 1)
        assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", 500, 0)


async def test_other_v1_route_with_usage_is_metered(db_url: str, tmp_path: Path) -> None:
    """/v1/responses/compact is forwarded as is and, since it reports usage, metered under its own path."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        body = {"model": "gpt-5.1", "input": [{"role": "user", "content": "long history"}]}
        async with http.post(f"{h.base_url}/responses/compact", json=body, headers=h.headers()) as resp:
            assert resp.status == 200
            doc = await resp.json()
        [event] = await _events(h, 1)
        assert event.endpoint == "/v1/responses/compact"
        assert event.input_tokens == doc["usage"]["input_tokens"] and event.usage_source == "reported"


async def test_metrics_endpoint_counts_metered_requests(db_url: str, tmp_path: Path) -> None:
    """/metrics exposes metered requests by status, cost and the spool backlog in Prometheus text."""
    async with running_proxy(db_url, tmp_path, metrics_token="m-token") as h, _client(h) as client, \
            aiohttp.ClientSession() as http:
        await client.responses.create(model="gpt-5.1", input="hi")
        [event] = await _events(h, 1)
        async with http.get(h.base_url.removesuffix("/v1") + "/metrics",
                            headers={"Authorization": "Bearer m-token"}) as resp:
            text = await resp.text()
        assert 'spendgate_proxy_metered_requests_total{status="ok"} 1.0' in text
        assert f"spendgate_proxy_cost_micros_total {float(event.cost_micros)}" in text
        assert "spendgate_proxy_spool_segments" in text


async def test_non_json_upload_passes_through_unparsed(db_url: str, tmp_path: Path) -> None:
    """A multipart upload (/v1/files) is forwarded untouched, not refused as malformed JSON, and evented at $0."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"{not json", filename="x.jsonl")
        async with http.post(f"{h.base_url}/files", data=form, headers=h.headers()) as resp:
            assert resp.status == 200
        [event] = await _events(h, 1)
        assert (event.endpoint, event.cost_micros) == ("/v1/files", 0)
        [received] = h.fake.received
        assert b"{not json" in received.body


async def test_client_leaving_before_a_plain_answer_is_metered_aborted(db_url: str, tmp_path: Path) -> None:
    """A client that hangs up while a non-streamed answer is produced: client_aborted, provider usage kept."""
    async with running_proxy(db_url, tmp_path, fake_config=FakeConfig(latency_ms=800)) as h, \
            aiohttp.ClientSession() as http:
        with contextlib.suppress(TimeoutError):
            async with http.post(f"{h.base_url}/responses", json={"model": "gpt-5.1", "input": "x"},
                                 headers=h.headers(), timeout=aiohttp.ClientTimeout(total=0.2)) as resp:
                await resp.read()
        [event] = await _events(h, 1)
        [served] = h.fake.served
        assert (event.status, event.usage_source, event.input_tokens) == (
            "client_aborted", "reported", served.input_tokens)
