"""The ledger folds the new budget shapes on real PostgreSQL: cost-center balances, per-model balances of the
budgeted model only, week balances of weekly budgets, and a budget set mid-period counted from the period's start."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from spendgate.core.bus.postgres import PostgresBus
from spendgate.domain.enforcement import budget_of
from spendgate.domain.events import UsageRecorded
from spendgate.ledger.changes import recount
from spendgate.store.budgets import store as budgets
from tests.support.factories import T0, usage_event
from tests.support.ledger import folded_count, publish, running_ledger
from tests.support.waiting import eventually

USD = 1_000_000
FLAGSHIP = "org|model:gpt-5.1"
MONDAY = T0.date()  # 2026-11-02 is a Monday: the day, the week and (nearly) the month start together


def events() -> list[UsageRecorded]:
    """Three gpt-5.1 and two gpt-5.1-mini requests of cost center cc-eng, one of cc-data, over three days."""
    out = []
    for i, (model, cc) in enumerate([("gpt-5.1", "cc-eng"), ("gpt-5.1-mini", "cc-eng"), ("gpt-5.1", "cc-eng"),
                                     ("gpt-5.1-mini", "cc-eng"), ("gpt-5.1", "cc-data")]):
        out.append(usage_event(occurred_at=T0 + timedelta(hours=20 * i), model_requested=model, model_used=model,
                               cost_center=cc, session_id=f"s{i}"))
    return out


async def rows(pool: asyncpg.Pool, scope: str) -> dict[tuple[str, object], int]:
    found = await pool.fetch("SELECT period, period_start, spent_micros FROM balances WHERE scope = $1", scope)
    return {(r["period"], r["period_start"]): r["spent_micros"] for r in found}


async def fold_all(pool: asyncpg.Pool, db_url: str, evs: list[UsageRecorded], *, expect: int) -> None:
    bus = PostgresBus(pool, db_url)
    await bus.start()
    try:
        await publish(bus, evs)
        async with running_ledger(pool, bus):
            await eventually(lambda: folded_count(pool), until=lambda n: n == expect, what=f"{expect} events folded")
    finally:
        await bus.stop()


async def test_the_ledger_folds_cost_center_per_model_and_week_balances(db_url: str, pool: asyncpg.Pool) -> None:
    """cost_center:cc-eng gets day, week and month balances of its events; org|model:gpt-5.1 the gpt-5.1 spend
    only; no per-model balance is kept for the unbudgeted gpt-5.1-mini, and no week for unweekly scopes."""
    await budgets.set_budget(pool, budget_of("org", model="gpt-5.1", daily_micros=None, monthly_micros=500 * USD),
                             actor="test")
    await budgets.set_budget(pool, budget_of("cost_center:cc-eng", daily_micros=None, monthly_micros=None,
                                             weekly_micros=100 * USD), actor="test")
    evs = events()
    await fold_all(pool, db_url, evs, expect=len(evs))

    eng = [e for e in evs if e.cost_center == "cc-eng"]
    cc = await rows(pool, "cost_center:cc-eng")
    assert cc[("week", MONDAY)] == cc[("month", MONDAY.replace(day=1))] == sum(e.cost_micros for e in eng)
    assert cc[("day", MONDAY)] == sum(e.cost_micros for e in eng if e.occurred_at.date() == MONDAY)
    assert ("week", MONDAY) not in await rows(pool, "cost_center:cc-data")

    flagship = [e for e in evs if e.model_used == "gpt-5.1"]
    per_model = await rows(pool, FLAGSHIP)
    assert per_model[("month", MONDAY.replace(day=1))] == sum(e.cost_micros for e in flagship)
    assert not any(p == "week" for p, _ in per_model)  # the per-model budget is monthly only
    assert await rows(pool, "org|model:gpt-5.1-mini") == {}
    assert (await rows(pool, "org"))[("month", MONDAY.replace(day=1))] == sum(e.cost_micros for e in evs)


async def test_a_budget_set_mid_period_is_counted_from_the_period_start(db_url: str, pool: asyncpg.Pool) -> None:
    """Events folded before a per-model (or weekly) budget existed count in its balances once it is set (the
    week, the month and each day of the month so far): the recount sums them from usage_events, and events
    folded after it add on top, none twice."""
    evs = events()
    await fold_all(pool, db_url, evs[:3], expect=3)
    assert await rows(pool, FLAGSHIP) == {}

    flagship = budget_of("org", model="gpt-5.1", daily_micros=None, monthly_micros=500 * USD, weekly_micros=200 * USD)
    weekly = budget_of("team:platform", daily_micros=None, monthly_micros=None, weekly_micros=100 * USD)
    for b in (flagship, weekly):
        await budgets.set_budget(pool, b, actor="test")
    async with pool.acquire() as conn, conn.transaction():
        await recount(conn, [flagship, weekly], T0 + timedelta(days=2))
    first = [e for e in evs[:3] if e.model_used == "gpt-5.1"]
    recounted = await rows(pool, FLAGSHIP)
    assert (recounted.pop(("week", MONDAY)), recounted.pop(("month", MONDAY.replace(day=1)))) == (
        sum(e.cost_micros for e in first),) * 2
    # every day of the month so far (the forecaster's series), spent or not
    days = {(p, d): v for (p, d), v in recounted.items() if p == "day"}
    assert recounted == days and len(days) == (T0 + timedelta(days=2)).day
    for day in {e.occurred_at.date() for e in first}:
        assert days[("day", day)] == sum(e.cost_micros for e in first if e.occurred_at.date() == day)
    assert (await rows(pool, "team:platform"))[("week", MONDAY)] == sum(e.cost_micros for e in evs[:3])

    await fold_all(pool, db_url, evs, expect=len(evs))  # the first three again (deduplicated) and two new ones
    every = [e for e in evs if e.model_used == "gpt-5.1"]
    assert (await rows(pool, FLAGSHIP))[("week", MONDAY)] == sum(e.cost_micros for e in every)
    assert (await rows(pool, "team:platform"))[("week", MONDAY)] == sum(e.cost_micros for e in evs)
