"""The three stages through the real enforcing proxy, the fake upstream, the Postgres bus and the real
ledger: alert at 80 %, downgrade of small turns at 95 %, the Codex-aware pause at 110 %, and requests
passing again once the period resets (the enforcement clock is injected)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.events import ThresholdCrossed, decode
from spendgate.domain.periods import PeriodKind
from tests.support.enforced_proxy import Enforced, balance_micros, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

SMALL = "x" * 4_600  # ~1,000 estimated input tokens: a small turn
LARGE = "x" * 60_000  # ~13,000 estimated input tokens: over the 10,000-token downgrade limit


class Clock:
    """The enforcement stack's clock: the wall clock, moved forward by ``offset``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def seed_to(e: Enforced, micros: int) -> None:
    """Spend earlier today on the key (an event on the bus the ledger folds) up to ``micros`` in total,
    then wait until the proxy's view has it and nothing of its own is pending."""
    scope = f"key:{e.key.key_id}"
    view = e.deciders[0].inner.enforcer.view
    key = BalanceKey(scope, PeriodKind.DAY, datetime.now(UTC).date())
    # The proxy's own events are folded (its view saw them in usage_events, read with the balances).
    await eventually(lambda: _pending(view, key), until=lambda p: p == 0, what="the proxy's events folded")
    missing = micros - await balance_micros(e.pool, scope)
    assert missing > 0
    await publish(e.ledger_runtime.bus, [usage_event(
        key_id=e.key.key_id, developer=e.key.developer, team=e.key.team, occurred_at=datetime.now(UTC),
        session_id=f"seed-{micros}", cost_micros=missing)])
    await eventually(lambda: _spent(view, key), until=lambda s: s == micros, what=f"view at {micros} micros")


async def _spent(view: Any, key: BalanceKey) -> int:
    return int(view.spent_micros(key))


async def _pending(view: Any, key: BalanceKey) -> int:
    return int(view.book.pending_micros(key))


async def ask(e: Enforced, http: aiohttp.ClientSession, session: str, content: str) -> tuple[int, Any, bytes]:
    body = {"model": "gpt-5.1", "stream": True, "input": [{"type": "message", "role": "user", "content": content}]}
    async with http.post(e.url(), json=body, headers=e.headers(**{"session-id": session})) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def event_of(pool: asyncpg.Pool, session: str) -> asyncpg.Record:
    return await eventually(lambda: pool.fetchrow("SELECT * FROM usage_events WHERE session_id = $1", session),
                            until=lambda r: r is not None, what=f"usage event of {session}")


async def test_alert_downgrade_pause_and_reset_through_the_proxy(db_url: str, pool: asyncpg.Pool,
                                                                 tmp_path: Path) -> None:
    """80 %: crossing recorded and published; 95 %: small turn to mini, large keeps gpt-5.1; 110 %: exact 429; reset."""
    clock = Clock()
    async with enforced_proxies(db_url, tmp_path, clock=clock, budgets={"key": {"usd": 1.0}}) as e, \
            aiohttp.ClientSession() as http:
        scope = f"key:{e.key.key_id}"
        served = e.upstream.fake.served

        # 80 %: a request that crosses it passes; the ledger records the crossing and publishes it.
        await seed_to(e, 799_500)
        status, _, _ = await ask(e, http, "s-cross", SMALL)
        assert status == 200
        crossing = await eventually(
            lambda: pool.fetchrow("SELECT * FROM threshold_crossings WHERE scope = $1 AND threshold_pct = 80", scope),
            until=lambda r: r is not None and r["published_at"] is not None, what="80 % crossing published")
        assert crossing["stage"] == "alert" and crossing["period"] == "day"
        assert str(crossing["trigger_event_id"]) == str((await event_of(pool, "s-cross"))["event_id"])
        published = [decode(bytes(r["value"])).data for r in await pool.fetch(
            "SELECT value FROM bus_log WHERE topic = $1", TOPIC_BUDGET)]
        assert [(c.scope, c.threshold_pct, c.stage) for c in published if isinstance(c, ThresholdCrossed)] == [
            (scope, 80, "alert")]
        status, _, _ = await ask(e, http, "s-alert", SMALL)
        assert status == 200 and served[-1].model == "gpt-5.1"
        assert (await event_of(pool, "s-alert"))["stage"] == "alert"

        # 95 %: a small turn goes one step down the cascade, a large one keeps the flagship.
        await seed_to(e, 955_000)
        status, headers, body = await ask(e, http, "s-small", SMALL)
        assert status == 200 and b"response.completed" in body
        assert served[-1].model == "gpt-5.1-mini"
        assert headers.get("openai-model") in (None, "gpt-5.1")
        assert headers.get("x-openai-model") in (None, "gpt-5.1")
        small = await event_of(pool, "s-small")
        assert (small["model_requested"], small["model_used"], small["route_reason"], small["stage"]) == (
            "gpt-5.1", "gpt-5.1-mini", "downgrade", "downgrade")
        status, headers, _ = await ask(e, http, "s-large", LARGE)
        assert status == 200 and served[-1].model == "gpt-5.1"
        assert headers.get("openai-model") == "gpt-5.1"
        large = await event_of(pool, "s-large")
        assert (large["model_used"], large["route_reason"], large["stage"]) == ("gpt-5.1", "requested", "downgrade")

        # 110 %: refused with the Codex-aware 429, nothing reaches the upstream.
        await seed_to(e, 1_120_000)
        before = len(served)
        status, headers, body = await ask(e, http, "s-paused", SMALL)
        assert status == 429 and len(served) == before
        today = clock().date()
        resets = datetime.combine(today + timedelta(days=1), time(0), UTC)
        label = f"key {e.key.key_id}"
        assert json.loads(body) == {"error": {
            "message": f"Budget paused by spendgate: {label}'s daily budget is used up ($1.12 of $1.00 spent). "
                       f"Requests pass again when the budget resets at {resets:%Y-%m-%d} 00:00 UTC. "
                       "Alerted: your spendgate admin.",
            "type": "usage_limit_reached", "code": "usage_limit_reached", "param": None, "plan_type": "team",
            "resets_at": int(resets.timestamp()), "scope": scope, "period": "day",
            "period_start": today.isoformat(), "spent_usd": "1.120000", "budget_usd": "1.000000",
            "resets_at_iso": f"{resets:%Y-%m-%d}T00:00:00Z", "timezone": "UTC", "alerted": [],
        }}
        assert headers["x-codex-promo-message"] == (
            f"Key {e.key.key_id}'s daily budget is used up: $1.12 of $1.00 spent (alerted: your spendgate admin)")
        assert headers["x-should-retry"] == "false"
        assert headers["content-type"].startswith("application/json")
        paused = await event_of(pool, "s-paused")
        assert (paused["status"], paused["refusal_reason"], paused["cost_micros"]) == ("refused", "budget_pause", 0)

        # The period resets (clock moved past midnight): requests pass again, on the flagship.
        clock.offset = resets - datetime.now(UTC) + timedelta(seconds=1)
        status, headers, _ = await ask(e, http, "s-next-day", SMALL)
        assert status == 200 and served[-1].model == "gpt-5.1"
        assert (await event_of(pool, "s-next-day"))["stage"] == "ok"
        assert await balance_micros(pool, scope) >= 1_120_000
