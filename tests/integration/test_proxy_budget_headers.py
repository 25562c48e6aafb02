"""Headers that tell any client its budget (issue 12, item 8), through the real enforcing proxy, the fake
upstream and the real ledger: ``x-spendgate-stage`` and ``x-spendgate-budget-remaining-usd`` on every
response of a budgeted key, and a downgraded answer that never names a model Codex did not ask for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.money import usd_str
from spendgate.domain.periods import PeriodKind
from spendgate.store.keys import store as vkeys
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

TEAM_BUDGET = 600_000  # $0.60 a day for team platform, tighter than the key's $1.00
SMALL = "x" * 4_600


async def spend_to(e: Enforced, micros: int) -> None:
    """Earlier spend on the key (a usage event the ledger folds) up to ``micros`` today; the view has it."""
    view = e.deciders[0].inner.enforcer.view
    key = BalanceKey(f"key:{e.key.key_id}", PeriodKind.DAY, datetime.now(UTC).date())

    async def pending() -> int:
        return int(view.book.pending_micros(key))

    async def spent() -> int:
        return int(view.spent_micros(key))

    await eventually(pending, until=lambda p: p == 0, what="the proxy's own events folded")
    await publish(e.ledger_runtime.bus, [usage_event(
        key_id=e.key.key_id, developer=e.key.developer, team=e.key.team, occurred_at=datetime.now(UTC),
        session_id=f"seed-{micros}", cost_micros=micros - await spent())])
    await eventually(spent, until=lambda s: s == micros, what=f"the view at {micros} micros")


async def ask(http: aiohttp.ClientSession, e: Enforced, *, stream: bool = True, secret: str | None = None,
              session: str = "s") -> tuple[int, Any]:
    body = {"model": "gpt-5.1", "stream": stream, "input": [{"type": "message", "role": "user", "content": SMALL}]}
    headers = {"Authorization": f"Bearer {secret or e.secret}", "session-id": session}
    async with http.post(e.url(), json=body, headers=headers) as resp:
        await resp.read()
        return resp.status, resp.headers.copy()


async def cost_of(pool: asyncpg.Pool, session: str) -> int:
    value = await eventually(lambda: pool.fetchval("SELECT cost_micros FROM usage_events WHERE session_id = $1",
                                                   session), until=lambda v: v is not None, what=f"{session}'s event")
    return int(value)


async def test_every_response_of_a_budgeted_key_names_its_stage_and_tightest_budget_left(
    db_url: str, tmp_path: Path
) -> None:
    """Streamed, plain, pass-through, downgraded and refused answers carry stage and team budget − spend in USD."""
    budgets = {"key": {"usd": 1.0}, "team:platform": {"usd": TEAM_BUDGET / 1_000_000}}
    async with enforced_proxies(db_url, tmp_path, budgets=budgets) as e, aiohttp.ClientSession() as http:
        status, headers = await ask(http, e, session="first")
        assert status == 200
        assert (headers["x-spendgate-stage"], headers["x-spendgate-budget-remaining-usd"]) == ("ok", "0.600000")

        first = await cost_of(e.pool, "first")  # settled or still unsettled in the view: spent either way
        status, headers = await ask(http, e, stream=False, session="plain")
        assert status == 200 and headers["x-spendgate-budget-remaining-usd"] == usd_str(TEAM_BUDGET - first)

        spent = first + await cost_of(e.pool, "plain")
        async with http.get(f"{e.servers[0].base_url}/models", headers=e.headers()) as resp:
            assert resp.status == 200  # passed through, spends nothing
            assert resp.headers["x-spendgate-stage"] == "ok"
            assert resp.headers["x-spendgate-budget-remaining-usd"] == usd_str(TEAM_BUDGET - spent)

        await spend_to(e, 575_000)  # 95.8 % of the team's budget: a small turn is downgraded
        status, headers = await ask(http, e, session="small")
        assert status == 200 and e.upstream.fake.served[-1].model == "gpt-5.1-mini"
        assert headers["x-spendgate-stage"] == "downgrade"
        assert headers["x-spendgate-budget-remaining-usd"] == "0.025000"
        assert "openai-model" not in headers and "x-openai-model" not in headers  # never names the mini model

        await spend_to(e, 700_000)  # 116.7 %: paused
        status, headers = await ask(http, e, session="paused")
        assert status == 429
        assert (headers["x-spendgate-stage"], headers["x-spendgate-budget-remaining-usd"]) == ("pause", "-0.100000")

        other = await vkeys.create_key(e.pool, developer="bob", team="search")
        await eventually(lambda: _known(e, other.secret), what="the new key in the proxy's cache")
        status, headers = await ask(http, e, secret=other.secret, session="unbudgeted")
        assert status == 200 and headers["x-spendgate-stage"] == "ok"
        assert "x-spendgate-budget-remaining-usd" not in headers  # no budget applies: no figure to give


async def _known(e: Enforced, secret: str) -> bool:
    return e.servers[0].keys.lookup(secret) is not None
