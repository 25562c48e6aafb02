"""Issue 11, item 1 (the proxy's side): what the proxy records is normalised. Control characters (NUL
included) sent in ids, workspace keys, client names or model names never reach an event; every string
is capped; an upstream usage block with an impossible token count is metered as an estimate and the
cost always fits PostgreSQL's bigint, so the ledger folds every such event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spendgate.domain.events import UsageRecorded
from spendgate.proxy.normalise import INT64_MAX, MAX_TOKENS_PER_REQUEST
from tests.support.enforced_proxy import enforced_proxies
from tests.support.proxy_harness import published_usage, running_proxy
from tests.support.rawhttp import raw_request
from tests.support.waiting import eventually

CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


def _strings(event: UsageRecorded) -> list[str]:
    return [v for v in (event.session_id, event.turn_id, event.repo, event.client, event.endpoint,
                        event.model_requested, event.model_used) if v is not None]


async def test_control_characters_never_reach_an_event_and_the_ledger_folds_it(db_url: str, tmp_path: Path) -> None:
    """NUL and other control characters in the metadata's turn id and workspace key, the session id, the
    originator and the model are stripped; long values are capped; the ledger stores both events."""
    async with enforced_proxies(db_url, tmp_path) as e:
        meta = json.dumps({"turn_id": "turn\u0000-1\u001b", "workspaces": {"/src/\u0000api\u0085": {}}})
        headers = {"Authorization": f"Bearer {e.secret}", "Content-Type": "application/json",
                   "session-id": "sess\t-" + "s" * 5_000, "originator": "codex\t_exec",
                   "x-codex-turn-metadata": meta}
        ok = await raw_request(e.servers[0].port, "POST", "/v1/responses", headers=headers,
                               body=b'{"model": "gpt-5.1", "input": "hi"}')
        assert ok.status == 200
        refused = await raw_request(e.servers[0].port, "POST", "/v1/responses", headers=headers,
                                    body=b'{"model": "gpt-5.1\\u0000\\u0007", "input": "hi"}')
        assert refused.status == 400
        assert "\\u0000" not in refused.body.decode()
        events = await eventually(lambda: published_usage(e.ledger_runtime.pool), until=lambda ev: len(ev) >= 2,
                                  what="both requests evented")
        for event in events:
            assert not [s for s in _strings(event) if any(c in s for c in CONTROL)], event
            assert event.session_id is not None and len(event.session_id) <= 200
        assert (events[0].turn_id, events[0].repo, events[0].client) == ("turn-1", "/src/api", "codex_exec")
        assert events[1].model_requested == "gpt-5.1"
        rows = await eventually(lambda: e.pool.fetch("SELECT turn_id, repo, model_requested FROM usage_events"),
                                until=lambda r: len(r) == 2, what="the ledger folded both")
        assert {r["repo"] for r in rows} == {"/src/api"}


@pytest.mark.parametrize("stream", [False, True])
async def test_absurd_upstream_token_counts_are_estimated_not_overflowed(db_url: str, tmp_path: Path,
                                                                         stream: bool) -> None:
    """``"output_tokens": 99999999999999999999999`` from the upstream is an anomaly: the event carries the
    proxy's estimate (usage_source ``estimated``), every count is plausible and the cost fits int64."""
    async with running_proxy(db_url, tmp_path) as h:
        body = json.dumps({"model": "gpt-5.1", "input": "x" * 4_000, "stream": stream}).encode()
        resp = await raw_request(h.server.port, "POST", "/v1/responses", body=body, headers={
            "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json",
            "x-fake-scenario": "absurd_usage"})
        assert resp.status == 200
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the request evented")
        assert event.usage_source == "estimated"
        assert max(event.input_tokens, event.output_tokens, event.cached_tokens) <= MAX_TOKENS_PER_REQUEST
        assert 0 < event.cost_micros < 1_000_000 <= INT64_MAX


@pytest.mark.parametrize(("scenario", "api"), [("negative_usage", "/v1/responses"), ("string_usage", "/v1/responses"),
                                               ("negative_usage", "/v1/chat/completions")])
@pytest.mark.parametrize("stream", [False, True])
async def test_negative_or_string_token_counts_are_estimated_not_free(db_url: str, tmp_path: Path, scenario: str,
                                                                      api: str, stream: bool) -> None:
    """An upstream usage block with ``"output_tokens": -1000`` or ``"1000"`` (a string) is an anomaly too: the
    event is estimated from the request, not metered with 0 output tokens as if the count were absent."""
    async with running_proxy(db_url, tmp_path) as h:
        doc = {"model": "gpt-5.1", "stream": stream, **({"input": "x" * 4_000} if api == "/v1/responses" else
                                                         {"messages": [{"role": "user", "content": "x" * 4_000}]})}
        resp = await raw_request(h.server.port, "POST", api, body=json.dumps(doc).encode(), headers={
            "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json", "x-fake-scenario": scenario})
        assert resp.status == 200
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the request evented")
        assert event.usage_source == "estimated" and event.input_tokens > 500
        assert event.cost_micros > 0
