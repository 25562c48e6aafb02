"""The ledger service as `spendgate up` runs it: folding, and both outboxes reaching the budget topic."""

from __future__ import annotations

import asyncio
from functools import partial

import asyncpg

from spendgate.core.bus import Record
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.enforcement.policy import Budget, budget_of
from spendgate.domain.events import BudgetChanged, ThresholdCrossed, decode
from spendgate.ledger.outbox import OutboxPublisher
from spendgate.ledger.service import serve
from spendgate.runtime import Runtime
from spendgate.store.budgets import store
from spendgate.store.budgets.store import set_budget
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually


async def test_service_folds_and_publishes_crossings_and_budget_changes(db_url: str, pool: asyncpg.Pool) -> None:
    """A budget set by an operator and the crossings usage causes both arrive on spendgate.budget.v1."""
    bus = PostgresBus(pool, db_url)
    runtime = Runtime(Settings(database_url=db_url), db_url, pool, bus)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(runtime, stop))
    reader = bus.consumer("reader", [TOPIC_BUDGET])
    await reader.start()
    try:
        await set_budget(pool, Budget("developer:alice", daily_micros=10_000), actor="test")
        await publish(bus, [usage_event(cost_micros=9_000)])
        seen: list[Record] = []

        async def kinds() -> set[str]:
            seen.extend(await reader.poll(timeout_s=0.2))
            return {type(decode(r.value).data).__name__ for r in seen}

        await eventually(kinds, until=lambda k: {"BudgetChanged", "ThresholdCrossed"} <= k, timeout_s=20,
                         what="a budget change and a crossing on the budget topic")
        events = [decode(r.value).data for r in seen]
        change = next(e for e in events if isinstance(e, BudgetChanged))
        assert change.scope == "developer:alice" and change.daily_micros == 10_000
        crossing = next(e for e in events if isinstance(e, ThresholdCrossed))
        assert crossing.scope == "developer:alice" and crossing.threshold_pct == 80
    finally:
        stop.set()
        await reader.stop()
        await asyncio.wait_for(task, 30)


async def test_budget_outbox_runner_publishes_until_stopped(pool: asyncpg.Pool, db_url: str) -> None:
    """The budget-change outbox loop publishes a change made while it runs and returns once stop is set."""
    bus = PostgresBus(pool, db_url)
    stop = asyncio.Event()
    outbox = OutboxPublisher(partial(store.publish_budget_changes, pool, bus, source="test"), interval_s=0.05)
    runner = asyncio.create_task(outbox.run(stop))
    consumer = bus.consumer("outbox-test", [TOPIC_BUDGET])
    await consumer.start()
    try:
        await store.set_budget(pool, budget_of("org", daily_micros=1_000_000, monthly_micros=None), actor="ops")
        await eventually(lambda: consumer.poll(timeout_s=0.5), what="the change on the budget topic")
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(runner, timeout=5)
    assert await pool.fetchval("SELECT count(*) FROM budget_audit WHERE published_at IS NULL") == 0
