"""Exploration through the real enforcing proxy, fake upstream, Postgres bus, ledger and PostgreSQL: with a
signed version that explores half of platform's small turns, each turn's requests all land in the arm the
keyed hash gives its turn id, an explored turn is served by the next cheaper model and recorded with
route_reason explore, a control turn keeps the flagship, and a large request is not in the experiment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.admin.policy import live_policy, to_document
from spendgate.admin.policy_versions import apply_version
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.enforcement.exploration import stored_exploration
from spendgate.store.policies import store as versions
from tests.support.admin_server import TEST_SIGNING_KEY
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.waiting import eventually

BLOCK = {"share_pct": 50, "teams": ["platform"], "max_input_tokens": 8000}
LARGE = "x" * 60_000  # ~13,000 estimated input tokens: over the size limit


async def ask(e: Enforced, http: aiohttp.ClientSession, turn: str, content: str = "fix the build") -> str:
    body = {"model": "gpt-5.1", "stream": True, "input": [{"type": "message", "role": "user", "content": content}]}
    async with http.post(e.url(), json=body, headers=e.headers(**{"session-id": "s-x", "x-spendgate-turn": turn})) \
            as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
    return e.upstream.fake.served[-1].model


async def test_explored_turns_are_served_cheaper_and_recorded_with_their_arm(db_url: str, pool: asyncpg.Pool,
                                                                           tmp_path: Path) -> None:
    """Half of platform's turns explored: each turn's two requests in its hashed arm, explored ones served
    and recorded as gpt-5.1-mini with route_reason explore, a large request outside the experiment."""
    keyed = {"policy": {"signing_key": TEST_SIGNING_KEY}}
    async with enforced_proxies(db_url, tmp_path, settings=keyed) as e, aiohttp.ClientSession() as http:
        settings = e.ledger_runtime.settings
        applied = await apply_version(e.pool, policy_from_document({"exploration": BLOCK}, settings.enforcement),
                                      settings, settings.pricing.table(), now=_now(), approver="test:alice",
                                      reason="learn what gpt-5.1-mini does to platform's turns")
        view: Any = e.deciders[0].inner.enforcer.view

        async def enforced() -> str | None:
            return view.policy.version  # type: ignore[no-any-return]

        await eventually(enforced, until=lambda v: v == applied.version_id, what="the proxy on the new version")
        stored = await versions.get_version(pool, applied.version_id)
        assert stored is not None and stored.document["exploration"] == {**BLOCK, "share_pct": "50"}
        shown = to_document(await live_policy(pool, settings.enforcement, _now()))
        assert shown["exploration"] == stored.document["exploration"]

        exploration = stored_exploration(stored.document)
        assert exploration is not None
        turns = [f"turn-{i}" for i in range(12)]
        expected = {t: exploration.arm(t) for t in turns}
        assert set(expected.values()) == {"explore", "control"}  # both arms among these turn ids
        served = {}
        for t in turns:
            served[t] = [await ask(e, http, t), await ask(e, http, t)]  # two requests of each turn
        await ask(e, http, "turn-large", LARGE)
        rows = await eventually(lambda: pool.fetch(
            """SELECT turn_id, model_used, route_reason, experiment_arm, policy_version FROM usage_events
               ORDER BY occurred_at"""), until=lambda r: len(r) >= 25, what="25 usage events folded")

    for t in turns:
        cheaper = expected[t] == "explore"
        assert served[t] == (["gpt-5.1-mini"] * 2 if cheaper else ["gpt-5.1"] * 2), t
        recorded = [(r["model_used"], r["route_reason"], r["experiment_arm"], r["policy_version"])
                    for r in rows if r["turn_id"] == t]
        want = ("gpt-5.1-mini", "explore", "explore") if cheaper else ("gpt-5.1", "requested", "control")
        assert recorded == [(*want, applied.version_id)] * 2, t
    (large,) = [r for r in rows if r["turn_id"] == "turn-large"]
    assert (large["model_used"], large["route_reason"], large["experiment_arm"]) == ("gpt-5.1", "requested", None)


def _now() -> datetime:
    return datetime.now(UTC)
