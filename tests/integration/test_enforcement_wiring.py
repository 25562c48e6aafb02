"""The enforcement stack as the proxy starts it, against real PostgreSQL: start-up pricing check,
stages through admit, and requests passing again after the period resets (clock injected)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import ValidationError

from spendgate.core.config import Settings
from spendgate.domain.enforcement import BalanceKey, Principal, SessionEstimator
from spendgate.domain.enforcement.policy import budget_of
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind
from spendgate.proxy.wiring import enforcement
from spendgate.store.budgets import store
from tests.integration.test_enforcement_view import ledger_add
from tests.support.waiting import eventually

USD = 1_000_000
ALICE = Principal("k1", "alice", "platform")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def small_turn() -> bytes:
    return json.dumps({"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": "hi"}]}).encode()


async def test_unpriced_cascade_model_fails_at_start_up(pool: asyncpg.Pool, db_url: str) -> None:
    """A cascade naming a model without a price is refused with the settings; settings built around that check
    still stop the proxy's enforcement from starting."""
    cascades = EnforcementSettings(cascades={"gpt-5.1": ["gpt-7-mini"]})
    with pytest.raises(ValidationError, match=re.escape("enforcement.cascades.gpt-5.1: no price for 'gpt-7-mini'")):
        Settings(database_url=db_url, enforcement=cascades)
    settings = Settings(database_url=db_url).model_copy(update={"enforcement": cascades})
    with pytest.raises(ConfigError, match="gpt-7-mini"):
        async with enforcement(settings, pool, db_url):
            pass


async def test_stages_and_reset_through_the_started_stack(pool: asyncpg.Pool, db_url: str) -> None:
    """80 % passes, 95 % downgrades a small turn, 110 % refuses with the Codex body; the next day passes."""
    clock = Clock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    day = BalanceKey("key:k1", PeriodKind.DAY, clock.now.date())
    await store.set_budget(pool, budget_of("key:k1", daily_micros=USD, monthly_micros=None), actor="t")
    raw = small_turn()
    est = SessionEstimator(output_cap_tokens=8192).estimate(None, len(raw))  # the proxy's estimate of it
    async with enforcement(Settings(database_url=db_url), pool, db_url, clock=clock) as enf:
        async def admitted_at(spent: int) -> tuple[str, str]:
            async def probe() -> int:
                return enf.view.spent_micros(day)

            await eventually(probe, until=lambda v: v == spent, what=f"balance {spent}")
            adm = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=est)
            enf.abandon(adm)
            return adm.decision.action, adm.model

        await ledger_add(pool, day, 800_000)
        assert await admitted_at(800_000) == ("pass", "gpt-5.1")
        await ledger_add(pool, day, 150_000)
        assert await admitted_at(950_000) == ("downgrade", "gpt-5.1-mini")
        await ledger_add(pool, day, 150_000)
        assert await admitted_at(1_100_000) == ("refuse", "gpt-5.1")
        refused = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=est)
        assert refused.refusal is not None
        err = refused.refusal.json()["error"]
        assert (err["type"], err["code"], err["scope"], err["spent_usd"]) == (
            "usage_limit_reached", "usage_limit_reached", "key:k1", "1.100000")
        assert err["resets_at"] == int((datetime.combine(day.period_start, datetime.min.time(), UTC)
                                        + timedelta(days=1)).timestamp())
        clock.now += timedelta(days=1)
        after = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=est)
        assert after.refusal is None and after.decision.action == "pass"
        enf.abandon(after)
