"""AWS Bedrock behind the OpenAI routes, through the real proxy, the fake Bedrock (SigV4 checked),
PostgreSQL and the real ledger: Codex's streamed Responses requests, Chat Completions and the OpenAI SDK
reach Converse and come back in OpenAI's shapes, metered at the exact cost with Bedrock's cache reads
and writes; a wrong AWS secret, untranslatable requests and Bedrock's own errors answer in OpenAI's error
shape; downgrade and pause work on Bedrock models as on any other."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import pytest
from click.testing import CliRunner

from spendgate.cli import main
from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.periods import PeriodKind
from spendgate.proxy.fake_bedrock import TEST_ACCESS_KEY_ID, ServedConverse
from tests.support.bedrock import HAIKU_ID, SONNET_ID, bedrock_settings, hand_cost, use_fake_aws_credentials
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

GUIDE = "Follow the repository's conventions and keep changes small. " * 40
"""A system prompt long enough (~600 tokens) for the fake to report cache reads (64-token blocks)."""
CODEX_TOOL = {"type": "function", "name": "exec_command", "description": "Runs a command in a PTY",
              "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_aws_credentials(monkeypatch, tmp_path)


async def event_rows(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record]:
    return await eventually(lambda: pool.fetch("SELECT * FROM usage_events ORDER BY occurred_at"),
                            until=lambda rows: len(rows) >= n, what=f"{n} usage events in the ledger")


def assert_metered(row: asyncpg.Record, model: str, served: ServedConverse) -> None:
    assert (row["status"], row["usage_source"], row["model_used"]) == ("ok", "reported", model)
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_5m_tokens"], row["output_tokens"]) == (
        served.input_tokens + served.cache_read_tokens + served.cache_write_tokens, served.cache_read_tokens,
        served.cache_write_tokens, served.output_tokens)
    assert served.cache_read_tokens > 0 and served.cache_write_tokens > 0
    assert row["cost_micros"] == hand_cost(model, served) > 0


def sse_docs(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]


def codex_request(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "instructions": "You are Codex, a coding agent. " + GUIDE, "stream": True,
            "store": False, "tool_choice": "auto", "parallel_tool_calls": False,
            "tools": [CODEX_TOOL, {"type": "namespace", "name": "multi_agent_v1", "tools": [CODEX_TOOL]},
                      {"type": "web_search", "external_web_access": True}],
            "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "codex-session-1",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}],
            **extra}


async def test_codex_responses_stream_to_bedrock_is_metered_exactly(db_url: str, tmp_path: Path, aws: None) -> None:
    """A Codex turn for a Bedrock model: Converse-stream reached with the Bedrock model id and a valid
    SigV4 signature, the answer streamed back as Responses events with a function call, one ledger row
    at the exact cache-aware cost, attributed to the Codex session; nothing went to OpenAI."""
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e, aiohttp.ClientSession() as http:
        e.upstream.fake.bedrock.script.append("tool")
        async with http.post(e.url(), json=codex_request(),
                             headers=e.headers(**{"session-id": "codex-session-1", "originator": "codex_exec"})) as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
            body = await r.read()
        docs = sse_docs(body)
        assert docs[0]["type"] == "response.created" and docs[-1]["type"] == "response.completed"
        final = docs[-1]["response"]
        assert [i["type"] for i in final["output"]] == ["message", "function_call"]
        assert (final["output"][1]["name"], json.loads(final["output"][1]["arguments"])) == (
            "exec_command", {"cmd": "echo spendgate-tool-ran"})
        [served] = e.upstream.fake.bedrock.served
        assert (served.model_id, served.action, served.access_key) == (SONNET_ID, "converse-stream", TEST_ACCESS_KEY_ID)
        assert served.request["system"] == [{"text": "You are Codex, a coding agent. " + GUIDE}]
        assert [t["toolSpec"]["name"] for t in served.request["toolConfig"]["tools"]] == ["exec_command"]
        [row] = await event_rows(e.pool, 1)
        assert_metered(row, "claude-sonnet-4-5", served)
        assert final["usage"]["input_tokens"] == row["input_tokens"]
        assert (row["endpoint"], row["stream"], row["session_id"], row["model_requested"]) == (
            "/v1/responses", True, "codex-session-1", "claude-sonnet-4-5")
        assert row["upstream_request_id"] == r.headers["x-request-id"] and len(row["upstream_request_id"]) == 36
        [received] = [x for x in e.upstream.fake.received if x.raw_path.startswith("/model/")]
        assert received.raw_path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
        assert e.secret not in json.dumps(received.headers) and "session-id" not in received.headers
        assert e.upstream.fake.served == []


async def test_chat_completion_unstreamed_to_bedrock_with_a_tool_round_is_metered_exactly(
        db_url: str, tmp_path: Path, aws: None) -> None:
    """A Chat Completions request carrying an earlier tool call and its result goes to converse (not
    streamed) and comes back as a chat.completion; the ledger has its exact cost."""
    request = {"model": "claude-haiku-4-5", "max_tokens": 200, "messages": [
        {"role": "system", "content": "Answer briefly. " + GUIDE},
        {"role": "user", "content": "What is in the repo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "README.md"}],
        "tools": [{"type": "function", "function": {k: CODEX_TOOL[k] for k in ("name", "parameters")}}]}
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e, aiohttp.ClientSession() as http:
        async with http.post(f"{e.servers[0].base_url}/chat/completions", json=request, headers=e.headers()) as r:
            assert r.status == 200
            answer = await r.json()
        assert answer["object"] == "chat.completion" and answer["model"] == "claude-haiku-4-5"
        assert answer["choices"][0]["message"]["content"].startswith("word0")
        [served] = e.upstream.fake.bedrock.served
        assert (served.model_id, served.action) == (HAIKU_ID, "converse")
        assert [m["role"] for m in served.request["messages"]] == ["user", "assistant", "user"]
        assert served.request["inferenceConfig"] == {"maxTokens": 200}
        [row] = await event_rows(e.pool, 1)
        assert_metered(row, "claude-haiku-4-5", served)
        assert answer["usage"]["prompt_tokens"] == row["input_tokens"]
        assert (row["endpoint"], row["stream"]) == ("/v1/chat/completions", False)


async def test_openai_sdk_reaches_a_bedrock_model_through_the_gateway(db_url: str, tmp_path: Path, aws: None) -> None:
    """The OpenAI SDK, streamed chat without asking for usage (the gateway asks and strips it) and a
    non-streamed Responses call: both answered, both metered exactly."""
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e:
        client = openai.AsyncOpenAI(base_url=e.servers[0].base_url, api_key=e.secret, max_retries=0)
        stream = await client.chat.completions.create(
            model="claude-sonnet-4-5", stream=True, messages=[{"role": "system", "content": GUIDE},
                                                             {"role": "user", "content": "Say hi"}])
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == " ".join(f"word{i}" for i in range(8))
        assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
        response = await client.responses.create(model="claude-sonnet-4-5", input="Say hi", instructions=GUIDE)
        assert response.output_text.startswith("word0") and response.usage is not None
        await client.close()
        chat_served, responses_served = e.upstream.fake.bedrock.served
        assert (chat_served.action, responses_served.action) == ("converse-stream", "converse")
        rows = await event_rows(e.pool, 2)
        by_endpoint = {r["endpoint"]: r for r in rows}
        assert_metered(by_endpoint["/v1/chat/completions"], "claude-sonnet-4-5", chat_served)
        assert_metered(by_endpoint["/v1/responses"], "claude-sonnet-4-5", responses_served)
        assert response.usage.input_tokens == by_endpoint["/v1/responses"]["input_tokens"]


async def test_a_wrong_aws_secret_is_rejected_by_the_fake_and_answered_in_openai_shape(
        db_url: str, tmp_path: Path, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's AWS secret is wrong: the fake recomputes the signature and refuses it with
    Bedrock's 403; the client gets it in OpenAI's error shape, and the ledger records $0."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-the-fake-knows")
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e, aiohttp.ClientSession() as http:
        async with http.post(e.url(), json=codex_request(), headers=e.headers()) as r:
            assert r.status == 403
            doc = await r.json()
        assert doc["error"]["code"] == "InvalidSignatureException"
        assert doc["error"]["message"].startswith("bedrock: InvalidSignatureException: The request signature")
        fake = e.upstream.fake.bedrock
        assert fake.rejected == ["InvalidSignatureException"] and fake.served == []
        [row] = await event_rows(e.pool, 1)
        assert (row["status"], row["http_status"], row["cost_micros"]) == ("upstream_error", 403, 0)


async def test_refusals_and_bedrock_errors_are_in_openai_shape(db_url: str, tmp_path: Path, aws: None) -> None:
    """An image, structured output and a non-model route for a Bedrock model: 400s naming the field, Bedrock
    never reached; Bedrock's throttling is a 429; an exception mid-stream ends in response.failed; a
    stream cut before its end, or with a corrupt frame, gets the proxy's own failure event and an estimate."""
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e, aiohttp.ClientSession() as http:
        image = codex_request(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}])
        cases = [(e.url(), image, "input[0].content[0]"),
                 (e.url(), codex_request(text={"format": {"type": "json_schema", "schema": {}}}), "text.format"),
                 (f"{e.servers[0].base_url}/embeddings", {"model": "claude-sonnet-4-5", "input": "hi"}, None)]
        for url, request, param in cases:
            async with http.post(url, json=request, headers=e.headers()) as r:
                doc = await r.json()
                assert r.status == 400, doc
            assert (doc["error"]["type"], doc["error"]["code"], doc["error"]["param"]) == (
                "invalid_request_error", "unsupported_for_bedrock", param)
        assert e.upstream.fake.bedrock.served == [] and e.upstream.fake.received == []
        e.upstream.fake.bedrock.script.extend(["error:429", "exception", "cut", "corrupt"])
        attempts = iter(range(4))  # a different request each time: the same one four times is a retry loop

        def attempt() -> dict[str, Any]:
            return codex_request(input=[{"role": "user", "content": f"attempt {next(attempts)}"}])

        async with http.post(e.url(), json=attempt(), headers=e.headers()) as r:
            doc = await r.json()
            assert (r.status, doc["error"]["type"], doc["error"]["code"]) == (
                429, "rate_limit_exceeded", "ThrottlingException")
        async with http.post(e.url(), json=attempt(), headers=e.headers()) as r:
            failed = sse_docs(await r.read())
        assert failed[-1]["type"] == "response.failed"
        assert failed[-1]["response"]["error"]["code"] == "throttlingException"
        async with http.post(e.url(), json=attempt(), headers=e.headers()) as r:
            cut = sse_docs(await r.read())
        assert cut[-1]["type"] == "response.failed"
        assert cut[-1]["response"]["error"]["message"].startswith("spendgate: the upstream")
        async with http.post(e.url(), json=attempt(), headers=e.headers()) as r:
            corrupt = sse_docs(await r.read())
        assert corrupt[-1]["type"] == "response.failed" and "broke off" in corrupt[-1]["response"]["error"]["message"]
        assert sum(d["type"] == "response.output_text.delta" for d in corrupt) == 3  # the frames before the bad one
        rows = await event_rows(e.pool, 7)
        statuses = [(r["endpoint"], r["status"], r["http_status"], r["usage_source"]) for r in rows]
        assert statuses[3:] == [("/v1/responses", "upstream_error", 429, "none"),
                                ("/v1/responses", "upstream_error", 200, "none"),
                                ("/v1/responses", "incomplete", 200, "estimated"),
                                ("/v1/responses", "incomplete", 200, "estimated")]
        assert rows[5]["cost_micros"] > 0 and rows[6]["cost_micros"] > 0


async def test_downgrade_and_pause_apply_to_bedrock_models(db_url: str, tmp_path: Path, aws: None) -> None:
    """Near its budget the developer's small Bedrock turn steps down the configured cascade to another
    Bedrock model (and its model id); past it, the pause refuses before Bedrock is reached."""
    cascade = {"cascades": {"claude-sonnet-4-5": ["claude-haiku-4-5"]}}
    async with enforced_proxies(db_url, tmp_path, budgets={"developer:alice": {"usd": 1.0}},
                                settings=lambda fake: bedrock_settings(fake, **cascade)) as e, \
            aiohttp.ClientSession() as http:
        await spend(e, 960_000)
        async with http.post(e.url(), json=codex_request(), headers=e.headers()) as r:
            assert r.status == 200 and r.headers["x-spendgate-stage"] == "downgrade"
            final = sse_docs(await r.read())[-1]["response"]
        assert final["model"] == "claude-haiku-4-5"
        [served] = e.upstream.fake.bedrock.served
        assert served.model_id == HAIKU_ID
        [row] = [r for r in await event_rows(e.pool, 2) if r["session_id"] != "seed"]
        assert (row["model_requested"], row["model_used"], row["route_reason"]) == (
            "claude-sonnet-4-5", "claude-haiku-4-5", "downgrade")
        assert_metered(row, "claude-haiku-4-5", served)
        await spend(e, 1_200_000)
        async with http.post(e.url(), json=codex_request(), headers=e.headers()) as r:
            doc = await r.json()
            assert r.status == 429 and doc["error"]["code"] == "usage_limit_reached"
        assert len(e.upstream.fake.bedrock.served) == 1


async def spend(e: Enforced, total_micros: int) -> None:
    """Bring alice's day spend to ``total_micros`` with one seeded event, and wait until the proxy sees it."""
    key = BalanceKey("developer:alice", PeriodKind.DAY, datetime.now(UTC).date())
    view = e.deciders[0].inner.enforcer.view
    now = int(view.spent_micros(key))
    await publish(e.ledger_runtime.bus, [usage_event(
        key_id=e.key.key_id, developer="alice", team="platform", occurred_at=datetime.now(UTC), session_id="seed",
        cost_micros=total_micros - now)])
    await eventually(lambda: _spent(e, key), until=lambda s: s >= total_micros, what="the view at the new spend")


async def _spent(e: Enforced, key: BalanceKey) -> int:
    return int(e.deciders[0].inner.enforcer.view.spent_micros(key))


@pytest.mark.parametrize(("env", "says"), [
    ({"SPENDGATE_BEDROCK__MODELS": '{"claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0"}'},
     "bedrock.region is required when bedrock.models names a model"),
    ({"SPENDGATE_BEDROCK__REGION": "us-east-1", "SPENDGATE_BEDROCK__MODELS": '{"house-model": "acme.house-v1:0"}'},
     "bedrock.models.house-model: no price for 'house-model'"),
    ({"SPENDGATE_BEDROCK__MODELS": "claude-sonnet-4-5"}, "SPENDGATE_BEDROCK__MODELS: expected JSON"),
])
def test_bad_bedrock_settings_are_one_error_line_from_the_cli(env: dict[str, str], says: str, tmp_path: Path) -> None:
    """A Bedrock model without a region or a price, or models that are not a JSON mapping: the CLI
    prints what to fix on stderr and exits 2, with no traceback."""
    done = CliRunner().invoke(main, ["keys", "list"], env={"SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
                                                           **env}, catch_exceptions=False)
    assert done.exit_code == 2 and done.stderr.startswith("error: ") and says in done.stderr
    assert "Traceback" not in done.output and done.stdout == ""
