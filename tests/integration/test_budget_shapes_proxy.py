"""More budget shapes through the real enforcing proxy, the fake upstream, the Postgres bus and the real
ledger: a per-model cap on the flagship downgrades gpt-5.1 while gpt-5.1-mini passes (and the ledger keeps
the per-model balance of gpt-5.1's spend only), and ``at_pause: step_down`` sends a large turn one step down."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.periods import PeriodKind
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

SMALL = "x" * 4_600  # ~1,000 estimated input tokens: a small turn
LARGE = "x" * 60_000  # ~13,000 estimated input tokens: over the 10,000-token downgrade limit
FLAGSHIP = "org|model:gpt-5.1"


async def ask(e: Enforced, http: aiohttp.ClientSession, session: str, model: str,
              content: str = SMALL) -> tuple[int, bytes]:
    body = {"model": model, "stream": True, "input": [{"type": "message", "role": "user", "content": content}]}
    async with http.post(e.url(), json=body, headers=e.headers(**{"session-id": session})) as resp:
        return resp.status, await resp.read()


async def event_of(pool: asyncpg.Pool, session: str) -> asyncpg.Record:
    return await eventually(lambda: pool.fetchrow("SELECT * FROM usage_events WHERE session_id = $1", session),
                            until=lambda r: r is not None, what=f"usage event of {session}")


async def spend(e: Enforced, model: str, cost_micros: int, session: str) -> None:
    """An earlier request of the key (an event on the bus the ledger folds), served by ``model``."""
    await publish(e.ledger_runtime.bus, [usage_event(
        key_id=e.key.key_id, developer=e.key.developer, team=e.key.team, cost_center=e.key.cost_center,
        occurred_at=datetime.now(UTC), session_id=session, model_requested=model, model_used=model,
        cost_micros=cost_micros)])


async def view_sees(e: Enforced, key: BalanceKey, micros: int) -> None:
    view: Any = e.deciders[0].inner.enforcer.view

    async def spent() -> int:
        return int(view.spent_micros(key))

    await eventually(spent, until=lambda s: s == micros, what=f"{key.scope} at {micros} micros in the view")


async def balance(pool: asyncpg.Pool, scope: str, period: str, start: date) -> int | None:
    return await pool.fetchval(
        "SELECT spent_micros FROM balances WHERE scope = $1 AND period = $2 AND period_start = $3",
        scope, period, start)


async def test_a_flagship_cap_downgrades_gpt_5_1_while_the_mini_passes(db_url: str, pool: asyncpg.Pool,
                                                                      tmp_path: Path) -> None:
    """With the org's gpt-5.1 spend at 96 % of its cap, gpt-5.1 is served by gpt-5.1-mini and gpt-5.1-mini passes
    as asked; the ledger's per-model balance holds gpt-5.1's spend only, the org's every model's."""
    async with enforced_proxies(db_url, tmp_path, budgets={FLAGSHIP: {"usd": 1.0}}) as e, \
            aiohttp.ClientSession() as http:
        today = datetime.now(UTC).date()
        key = BalanceKey(FLAGSHIP, PeriodKind.DAY, today)
        await spend(e, "gpt-5.1-mini", 5_000_000, "seed-mini")  # five times the cap, on another model
        await spend(e, "gpt-5.1", 960_000, "seed-flagship")
        await view_sees(e, key, 960_000)
        assert await balance(pool, "org", "day", today) == 5_960_000

        served = e.upstream.fake.served
        status, _ = await ask(e, http, "s-flagship", "gpt-5.1")
        assert status == 200 and served[-1].model == "gpt-5.1-mini"
        flagship = await event_of(pool, "s-flagship")
        assert (flagship["model_requested"], flagship["model_used"], flagship["route_reason"], flagship["stage"]) == (
            "gpt-5.1", "gpt-5.1-mini", "downgrade", "downgrade")

        status, _ = await ask(e, http, "s-mini", "gpt-5.1-mini")
        assert status == 200 and served[-1].model == "gpt-5.1-mini"
        mini = await event_of(pool, "s-mini")
        assert (mini["model_used"], mini["route_reason"], mini["stage"]) == ("gpt-5.1-mini", "requested", "ok")

        # The downgraded and the mini requests folded: neither moved the flagship's balance.
        total = 5_960_000 + flagship["cost_micros"] + mini["cost_micros"]
        await eventually(lambda: balance(pool, "org", "day", today), until=lambda b: b == total,
                         what="both requests folded into the org's balance")
        assert await balance(pool, FLAGSHIP, "day", today) == 960_000


async def test_step_down_sends_a_large_turn_one_step_down_until_the_bottom(db_url: str, pool: asyncpg.Pool,
                                                                          tmp_path: Path) -> None:
    """Paused with ``at_pause: step_down``: a large gpt-5.1-codex-max turn goes to gpt-5.1-codex (one step, where a
    downgrade keeps large turns on the flagship), recorded as ``pause_step_down``; the cascade's last model is
    refused with the pause message."""
    async with enforced_proxies(db_url, tmp_path, budgets={"key": {"usd": 1.0, "at_pause": "step_down"}}) as e, \
            aiohttp.ClientSession() as http:
        scope = f"key:{e.key.key_id}"
        await spend(e, "gpt-5.1", 1_150_000, "seed")
        await view_sees(e, BalanceKey(scope, PeriodKind.DAY, datetime.now(UTC).date()), 1_150_000)

        served = e.upstream.fake.served
        status, _ = await ask(e, http, "s-large", "gpt-5.1-codex-max", LARGE)
        assert status == 200 and served[-1].model == "gpt-5.1-codex"
        large = await event_of(pool, "s-large")
        assert (large["model_requested"], large["model_used"], large["route_reason"], large["stage"]) == (
            "gpt-5.1-codex-max", "gpt-5.1-codex", "pause_step_down", "pause")

        status, _ = await ask(e, http, "s-small", "gpt-5.1", SMALL)
        assert status == 200 and served[-1].model == "gpt-5.1-mini"

        before = len(served)
        status, body = await ask(e, http, "s-bottom", "gpt-4.1-mini")
        assert status == 429 and len(served) == before
        assert json.loads(body)["error"]["code"] == "usage_limit_reached"
