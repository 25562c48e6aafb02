"""Enforced traffic through the real proxy (enforcement's Enforcer at its Decider seam, fake upstream), the
embedded bus and the ledger consumer: the dry-run of the live policy reproduces every decision the proxy
made, its alerts are the ledger's crossings, and a stricter proposal shows the pauses it would add."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from spendgate.admin.dryrun import dry_run
from spendgate.admin.policy import apply, live_policy
from spendgate.admin.replay import Usage, actual_outcome
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.events import UsageRecorded
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.proxy.decision import Decision, RequestFacts
from spendgate.proxy.enforcing import EnforcingDecider
from spendgate.proxy.wiring import enforcement
from spendgate.store.keys import store as vkeys
from tests.support.admin_traffic import PRICES
from tests.support.proxy_harness import published_usage, running_proxy
from tests.support.waiting import eventually


class StartedLater:
    """The proxy's production :class:`EnforcingDecider`, plugged in once the enforcement stack is started."""

    def __init__(self) -> None:
        self.inner: EnforcingDecider | None = None

    async def decide(self, facts: RequestFacts) -> Decision:
        assert self.inner is not None
        return await self.inner.decide(facts)

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        assert self.inner is not None
        self.inner.settled(facts, event)


LIVE = {"budgets": [
    {"scope": "developer:alice", "daily": "0.010"},
    {"scope": "team:payments", "daily": "0.008", "at_pause": "cheapest"},
    {"scope": "org", "monthly": "0.50", "thresholds": [5, 95, 110]},
]}
STRICT = {"budgets": [*LIVE["budgets"], {"scope": "developer:bob", "daily": "0.005", "thresholds": [50, 100, 100]}]}


async def test_the_live_policy_replays_to_what_the_proxy_did(db_url: str, tmp_path: Path) -> None:
    """Same downgrades, forced-cheapest requests and pauses as the proxy decided; alerts equal the ledger's
    crossings."""
    decider = StartedLater()
    async with running_proxy(db_url, tmp_path, decider=decider) as h:
        pool, settings = h.runtime.pool, h.runtime.settings
        await apply(pool, policy_from_document(LIVE, settings.enforcement), settings.enforcement,
                    now=datetime.now(UTC), actor="test")
        secrets = {"alice": h.secret}
        for dev, team in (("bob", "platform"), ("carol", "payments")):
            secrets[dev] = (await vkeys.create_key(pool, developer=dev, team=team)).secret

        async def cached_keys() -> int:
            return len(h.server.keys)

        await eventually(cached_keys, until=lambda n: n == 3, what="the proxy to see the new keys")
        stop = asyncio.Event()
        ledger = asyncio.create_task(LedgerConsumer(pool, h.runtime.bus).run(stop))
        sent = 0
        try:
            async with enforcement(settings, pool, h.runtime.db_url) as enforcer, aiohttp.ClientSession() as http:
                decider.inner = EnforcingDecider(enforcer)
                for n in range(4):
                    for dev in secrets:
                        session = f"{dev}-s{n}"
                        for step in range(5):
                            meta = json.dumps({"turn_id": f"{session}-t{step // 3}", "workspaces": {"/src/api": {}}})
                            async with http.post(
                                f"{h.base_url}/responses",
                                json={"model": "gpt-5.1", "input": f"{session} step {step} " + "w " * 4_000},
                                headers={"Authorization": f"Bearer {secrets[dev]}", "session-id": session,
                                         "x-codex-turn-metadata": meta, "originator": "codex_exec"}) as resp:
                                await resp.read()
                                sent += 1
                                if resp.status == 429:  # Codex stops the session at a pause
                                    break
                                assert resp.status == 200
                await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events"),
                                 until=lambda c: c == sent, what="every request folded by the ledger")
        finally:
            stop.set()
            await ledger

        events = await published_usage(pool)
        outcomes = [actual_outcome(Usage(e.event_id, e.occurred_at, e.key_id, e.developer, e.team, e.session_id,
                                         e.turn_id, e.model_requested, e.model_used, e.route_reason, e.stage,
                                         e.status, e.input_tokens, e.cached_tokens, e.output_tokens, e.cost_micros,
                                         e.retry)) for e in events]
        assert {"pass", "downgrade", "pause_cheapest", "refuse"} == set(outcomes)

        now = datetime.now(UTC) + timedelta(seconds=1)
        live, replay = await dry_run(pool, await live_policy(pool, settings.enforcement, now), PRICES, days=1,
                                     now=now, trace=True)
        assert replay.trace == {e.event_id: o for e, o in zip(events, outcomes, strict=True)}
        assert live.differences == 0 and live.spend_micros == live.actual_micros == sum(e.cost_micros for e in events)
        replayed = {(s.scope, a.period, a.period_start, a.threshold_pct, a.at, a.spent_micros)
                    for s in live.scopes for a in s.alerts}
        crossed = {tuple(r) for r in await pool.fetch(
            "SELECT scope, period, period_start, threshold_pct, crossed_at, spent_micros FROM threshold_crossings")}
        # One key's events reach the ledger in time order (one partition), so those crossings match to the
        # event; the org's come from every partition, folded batch by batch, so only which thresholds match.
        assert {a for a in replayed if a[0] != "org"} == {c for c in crossed if c[0] != "org"}
        assert {a[:4] for a in replayed if a[0] == "org"} == {c[:4] for c in crossed if c[0] == "org"} != set()

        strict, _ = await dry_run(pool, policy_from_document(STRICT, settings.enforcement), PRICES, days=1, now=now)
        bob = next(s for s in strict.scopes if s.scope == "developer:bob")
        assert bob.paused_sessions and strict.paused_sessions == live.paused_sessions + len(bob.paused_sessions)
        assert bob.spend_micros < bob.actual_micros
