"""The official OpenAI and Anthropic Python SDKs through one gateway with one virtual key: each request
relayed intact and metered once, both providers' spend in one developer budget, and past it each SDK
stops at once on its own error type (no retry: ``x-should-retry: false``) with spendgate's message."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anthropic
import asyncpg
import openai
import pytest

from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.proxy.fake_upstream import FakeConfig
from tests.support.enforced_proxy import Enforced, balance_micros, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

BUDGET_MICROS = 1_000_000


def openai_client(e: Enforced) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=e.servers[0].base_url, api_key=e.secret, max_retries=2)


def anthropic_client(e: Enforced) -> anthropic.AsyncAnthropic:
    root = e.servers[0].base_url.removesuffix("/v1")  # the SDK adds /v1/messages itself
    return anthropic.AsyncAnthropic(base_url=root, api_key=e.secret, max_retries=2)


async def rows(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record]:
    return await eventually(lambda: pool.fetch("SELECT * FROM usage_events ORDER BY occurred_at"),
                            until=lambda r: len(r) >= n, what=f"{n} usage events in the ledger")


async def test_both_sdks_spend_one_budget_and_stop_on_its_pause(db_url: str, tmp_path: Path) -> None:
    async with enforced_proxies(db_url, tmp_path, budgets={"developer:alice": {"usd": BUDGET_MICROS / 1e6}},
                                fake_config=FakeConfig()) as e, openai_client(e) as oa, anthropic_client(e) as an:
        stream = await oa.responses.create(model="gpt-5.1", input="hi", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        chat = await oa.chat.completions.create(model="gpt-5.1-mini",
                                                messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content and chat.usage is not None
        message = await an.messages.create(model="claude-haiku-4-5", max_tokens=256,
                                           messages=[{"role": "user", "content": "list the files"}])
        assert message.content[0].type == "text" and message.usage.output_tokens > 0
        async with an.messages.stream(model="claude-haiku-4-5", max_tokens=256,
                                      messages=[{"role": "user", "content": "and now?"}]) as streamed:
            final = await streamed.get_final_message()
        assert final.stop_reason and final.usage.output_tokens > 0
        counted = await an.messages.count_tokens(model="claude-haiku-4-5",
                                                 messages=[{"role": "user", "content": "how many?"}])
        assert counted.input_tokens > 0

        ledger = await rows(e.pool, 5)
        by_endpoint = sorted((r["endpoint"], r["model_used"], r["stream"]) for r in ledger)
        assert by_endpoint == [("/v1/chat/completions", "gpt-5.1-mini", False),
                               ("/v1/messages", "claude-haiku-4-5", False), ("/v1/messages", "claude-haiku-4-5", True),
                               ("/v1/messages/count_tokens", "claude-haiku-4-5", False),
                               ("/v1/responses", "gpt-5.1", True)]
        assert all((r["developer"], r["status"]) == ("alice", "ok") for r in ledger)
        [chat_row] = [r for r in ledger if r["endpoint"] == "/v1/chat/completions"]
        assert chat_row["cost_micros"] == cost_micros(
            SHIPPED_PRICES["gpt-5.1-mini"], input_tokens=chat.usage.prompt_tokens,
            cached_tokens=chat_row["cached_tokens"], output_tokens=chat.usage.completion_tokens) > 0
        [created] = [r for r in ledger if r["endpoint"] == "/v1/messages" and not r["stream"]]
        assert created["output_tokens"] == message.usage.output_tokens and created["cost_micros"] > 0
        assert [r["cost_micros"] for r in ledger if r["endpoint"].endswith("count_tokens")] == [0]
        spent = sum(r["cost_micros"] for r in ledger)
        assert await eventually(lambda: balance_micros(e.pool, "developer:alice"), until=lambda b: b == spent,
                                what="one developer balance with both providers' spend") == spent

        # Past the budget: each SDK gets its provider's 429 with spendgate's message, and does not retry.
        view = e.deciders[0].inner.enforcer.view
        key = BalanceKey("developer:alice", PeriodKind.DAY, datetime.now(UTC).date())
        await publish(e.ledger_runtime.bus, [usage_event(
            key_id=e.key.key_id, developer="alice", team="platform", occurred_at=datetime.now(UTC),
            session_id="seed", cost_micros=BUDGET_MICROS * 12 // 10 - spent)])
        await eventually(lambda: _spent(view, key), until=lambda s: s >= BUDGET_MICROS * 12 // 10,
                         what="the proxy's view past the budget")
        served = len(e.upstream.fake.served)
        with pytest.raises(anthropic.RateLimitError) as refused_a:
            await an.messages.create(model="claude-haiku-4-5", max_tokens=256,
                                     messages=[{"role": "user", "content": "more"}])
        assert "Budget paused by spendgate" in str(refused_a.value)
        with pytest.raises(openai.RateLimitError) as refused_o:
            await oa.responses.create(model="gpt-5.1", input="more")
        assert "Budget paused by spendgate" in str(refused_o.value)
        assert len(e.upstream.fake.served) == served
        refusals = await eventually(
            lambda: e.pool.fetch("SELECT endpoint FROM usage_events WHERE status = 'refused' ORDER BY endpoint"),
            until=lambda r: len(r) >= 2, what="the two refusals on record")
        assert [r["endpoint"] for r in refusals] == ["/v1/messages", "/v1/responses"]  # one each: no retries


async def _spent(view: object, key: BalanceKey) -> int:
    return int(view.spent_micros(key))  # type: ignore[attr-defined]
