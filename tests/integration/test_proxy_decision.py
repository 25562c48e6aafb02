"""The decision seam: a Decider can rewrite the model or refuse, and sees the request facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.proxy.decision import Decision, Pass, Refuse, RequestFacts, RewriteModel
from spendgate.proxy.errors import error_body
from tests.support.proxy_harness import published_usage, running_proxy
from tests.support.waiting import eventually


@dataclass
class ScriptedDecider:
    decisions: list[Decision]
    seen: list[RequestFacts] = field(default_factory=list)
    settled_events: list[UsageRecorded] = field(default_factory=list)

    async def decide(self, facts: RequestFacts) -> Decision:
        self.seen.append(facts)
        return self.decisions.pop(0) if self.decisions else Pass()

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        self.settled_events.append(event)


async def test_rewrite_model_forwards_cheaper_model_and_hides_model_headers(db_url: str, tmp_path: Path) -> None:
    """A downgrade forwards the cheaper model, drops openai-model headers, is priced at it, keeps the retry flag."""
    decider = ScriptedDecider([RewriteModel("gpt-5.1-mini", retry=True)])
    async with running_proxy(db_url, tmp_path, decider=decider) as h, aiohttp.ClientSession() as http:
        body = {"model": "gpt-5.1", "input": "x", "stream": True}
        async with http.post(f"{h.base_url}/responses", json=body, headers=h.headers()) as resp:
            assert resp.status == 200 and "openai-model" not in resp.headers
            await resp.read()
        [served] = h.fake.served
        assert served.model == "gpt-5.1-mini"
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="usage event")
        assert (event.model_requested, event.model_used, event.route_reason, event.stage, event.retry) == (
            "gpt-5.1", "gpt-5.1-mini", "downgrade", "downgrade", True)
        assert event.cost_micros == cost_micros(SHIPPED_PRICES["gpt-5.1-mini"], input_tokens=served.input_tokens,
                                                cached_tokens=served.cached_tokens,
                                                output_tokens=served.output_tokens)
        assert decider.settled_events == [event]


async def test_refuse_answers_directly_and_meters_refusal(db_url: str, tmp_path: Path) -> None:
    """A refusal is answered as the decider said, never forwarded, and metered as refused at zero cost."""
    body_bytes = error_body("budget paused", type_="usage_limit_reached", code="budget_paused")
    decider = ScriptedDecider([Refuse(429, body_bytes, headers=(("x-codex-promo-message", "ask your lead"),))])
    async with running_proxy(db_url, tmp_path, decider=decider) as h, aiohttp.ClientSession() as http:
        async with http.post(f"{h.base_url}/responses", json={"model": "gpt-5.1", "input": "x"},
                             headers=h.headers(**{"session-id": "s-9"})) as resp:
            assert resp.status == 429 and resp.headers["x-codex-promo-message"] == "ask your lead"
            assert (await resp.json())["error"]["code"] == "budget_paused"
        assert h.fake.served == []
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="usage event")
        assert (event.status, event.http_status, event.cost_micros, event.stage, event.refusal_reason) == (
            "refused", 429, 0, "pause", "budget_pause")


async def test_decider_sees_estimate_corrected_by_session(db_url: str, tmp_path: Path) -> None:
    """The second request of a session is estimated with the bytes-per-token its first request reported."""
    decider = ScriptedDecider([])
    async with running_proxy(db_url, tmp_path, decider=decider) as h, aiohttp.ClientSession() as http:
        for text in ("a" * 4000, "b" * 8000):
            async with http.post(f"{h.base_url}/responses", json={"model": "gpt-5.1", "input": text},
                                 headers=h.headers(**{"session-id": "s-est"})) as resp:
                await resp.read()
        first, second = decider.seen
        assert first.estimate.session is None and second.estimate.session is not None
        reported = h.fake.served[0].input_tokens
        assert second.estimate.session.last_input_tokens == reported
        assert abs(second.estimate.input_tokens - h.fake.served[1].input_tokens) <= 2
        assert second.attribution.session_id == "s-est" and second.model == "gpt-5.1"
