"""Turn outcomes through the real proxy, ledger and fake upstream: what each request records about its turn's
tools and whether its answer was final, the quality score of a turn, and external evaluations from Kafka
and the admin API overriding it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.admin.turns import turn_list
from spendgate.domain.constants import GROUP_EVALS, TOPIC_EVAL
from tests.support.admin_server import admin_client, auth
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.kafka import KafkaForTest
from tests.support.waiting import eventually

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "make the tests pass"}]}


def call(i: int, cmd: str) -> dict[str, Any]:
    return {"type": "function_call", "name": "shell", "call_id": f"call_{i}", "arguments": json.dumps({"cmd": cmd})}


def output(i: int, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"call_{i}", "output": text}


async def send(http: aiohttp.ClientSession, e: Enforced, turn: str, items: list[dict[str, Any]], scenario: str, *,
               stream: bool = True) -> None:
    headers = e.headers(**{"session-id": "s-outcomes", "x-spendgate-turn": turn, "x-fake-scenario": scenario})
    async with http.post(e.url(), json={"model": "gpt-5.1", "input": items, "stream": stream},
                         headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()


async def folded(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record]:
    return await eventually(lambda: pool.fetch(
        "SELECT turn_id, tool_outputs, tool_failures, final_message, retry FROM usage_events ORDER BY occurred_at"),
        until=lambda rows: len(rows) >= n, what=f"{n} usage events folded")


async def test_a_turn_with_failing_tools_scores_lower_than_a_clean_one(db_url: str, tmp_path: Path) -> None:
    """OpenAI Responses streams: each event carries its turn's tool outputs and failures and whether the
    answer was final; the clean turn scores 1.0, the failing, retrying, unfinished one far less."""
    fail = "Process exited with code 1\nFAILED tests/test_api.py"
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        await send(http, e, "t-clean", [USER], "tool")
        await send(http, e, "t-clean", [USER, call(1, "pytest"), output(1, "Process exited with code 0\nok")], "text")
        await send(http, e, "t-fail", [USER], "tool")
        await send(http, e, "t-fail", [USER, call(2, "pytest"), output(2, fail)], "tool")
        await send(http, e, "t-fail", [USER, call(2, "pytest"), output(2, fail), call(3, "pytest"), output(3, fail)],
                   "tool", stream=False)
        await send(http, e, "t-fail", [USER, call(2, "pytest"), output(2, fail), call(3, "pytest"), output(3, fail),
                                       call(4, "git apply fix.patch"), output(4, "error: patch does not apply")],
                   "tool")
        rows = await folded(e.pool, 6)
        found = await turn_list(e.pool, now=datetime.now(UTC))
    by_turn: dict[str, list[tuple[int, int, bool | None, bool]]] = {}
    for r in rows:
        by_turn.setdefault(r["turn_id"], []).append((r["tool_outputs"], r["tool_failures"], r["final_message"],
                                                     r["retry"]))
    assert by_turn["t-clean"] == [(0, 0, False, False), (1, 0, True, False)]
    assert by_turn["t-fail"] == [(0, 0, False, False), (1, 1, False, False), (2, 2, False, True),
                                 (3, 3, False, False)]
    turns = {t.turn_id: t for t in found.turns}
    clean, failing = turns["t-clean"], turns["t-fail"]
    assert (clean.requests, clean.tool_calls, clean.tool_failures, clean.final_message) == (2, 1, 0, True)
    assert (failing.requests, failing.tool_calls, failing.tool_failures, failing.retry_requests,
            failing.final_message) == (4, 3, 3, 1, False)
    assert clean.score == 1.0 and clean.score_source == "derived"
    assert failing.score < clean.score and failing.score == round(0.15 * (1 - 1 / 4) + 0.15, 3)
    assert clean.cost_micros > 0 and clean.model_used == "gpt-5.1" and not clean.downgraded
    assert clean.duration_ms >= 0 and clean.policy_version is None and clean.session_id == "s-outcomes"


def claude_request(messages: list[dict[str, Any]], *, stream: bool) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream, "messages": messages,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]}


async def test_anthropic_turns_record_final_message_and_is_error_tool_results(db_url: str, tmp_path: Path) -> None:
    """Claude Code through /v1/messages: stop_reason tool_use is not final (streamed), end_turn is (not
    streamed); a tool_result with is_error counts as a failed tool call."""
    first = [{"role": "user", "content": "list the files"}]
    then = [*first, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                                       "input": {"command": "ls /nope"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": "ls: /nope: No such file or directory"}]}]
    async with enforced_proxies(db_url, tmp_path) as e, aiohttp.ClientSession() as http:
        url = f"{e.servers[0].base_url}/messages"
        for messages, stream, scenario in ((first, True, "tool"), (then, False, "text")):
            headers = {"x-api-key": e.secret, "x-claude-code-session-id": "s-claude", "x-spendgate-turn": "t-claude",
                       "anthropic-version": "2023-06-01", "x-fake-scenario": scenario}
            async with http.post(url, json=claude_request(messages, stream=stream), headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
        rows = await folded(e.pool, 2)
        found = await turn_list(e.pool, now=datetime.now(UTC), session_id="s-claude")
    assert [(r["tool_outputs"], r["tool_failures"], r["final_message"]) for r in rows] == [(0, 0, False),
                                                                                         (1, 1, True)]
    (turn,) = found.turns
    assert (turn.turn_id, turn.tool_calls, turn.tool_failures, turn.final_message) == ("t-claude", 1, 1, True)
    assert turn.score == 0.7


async def test_external_scores_from_kafka_and_the_api_override_the_derived_one(
        db_url: str, tmp_path: Path, kafka: KafkaForTest) -> None:
    """spendgate.eval.v1 records reach turn_evals through the ledger's eval consumer (garbage, NaN, out of
    range and unknown turns dead-lettered, the consumer going on); POST /v1/evals overrides as well, and
    the outcome says the score is external and whose."""
    async with enforced_proxies(db_url, tmp_path, bus=kafka.settings()) as e, aiohttp.ClientSession() as http:
        for turn in ("t-1", "t-2"):
            await send(http, e, turn, [USER], "text")
        await folded(e.pool, 2)
        bus = e.ledger_runtime.bus
        for value in (b"not json at all", b'{"turn_id": "t-1", "score": NaN, "evaluator": "evals"}',
                      b'{"turn_id": "t-1", "score": 1.5, "evaluator": "evals"}',
                      b'{"turn_id": "t-unknown", "score": 0.5, "evaluator": "evals"}',
                      b'{"turn_id": "t-1", "score": 0.25, "evaluator": "nightly-evals", '
                      b'"evaluated_at": "2026-11-28T09:00:00Z"}'):
            await bus.publish(TOPIC_EVAL, "t-1", value)
        await eventually(lambda: e.pool.fetchval("SELECT count(*) FROM turn_evals"), until=lambda n: n == 1,
                         what="the valid evaluation stored", timeout_s=30)
        dead = await eventually(lambda: e.pool.fetch("SELECT reason FROM dead_letters WHERE consumer = $1",
                                                     GROUP_EVALS), until=lambda rows: len(rows) == 4,
                                what="four bad records dead-lettered")
        reasons = " | ".join(r["reason"] for r in dead)
        assert "malformed" in reasons.lower() and "<= 1" in reasons and "t-unknown" in reasons
        now = datetime.now(UTC)
        async with admin_client(e.pool, now=now) as client:
            resp = await client.post("/v1/evals", headers=auth(), json={"evaluations": [
                {"turn_id": "t-2", "score": 0.5, "evaluator": "reviewer"}]})
            assert resp.status == 200 and (await resp.json()) == {"recorded": 1}
            since = (now - timedelta(hours=1)).isoformat()
            resp = await client.get("/v1/turns", headers=auth(), params={"since": since})
            assert resp.status == 200
            turns = {t["turn_id"]: t for t in (await resp.json())["turns"]}
    assert (turns["t-1"]["score"], turns["t-1"]["score_source"], turns["t-1"]["evaluator"]) == (
        0.25, "external", "nightly-evals")
    assert (turns["t-2"]["score"], turns["t-2"]["score_source"], turns["t-2"]["derived_score"]) == (
        0.5, "external", 1.0)
