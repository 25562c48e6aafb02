"""The ledger service: the fold loop and the two outboxes (threshold crossings, budget changes), each
run under the supervisor."""

from __future__ import annotations

import asyncio
from functools import partial

from spendgate.ledger.consumer import LedgerConsumer
from spendgate.ledger.outbox import OutboxPublisher, publish_pending
from spendgate.runtime import Runtime
from spendgate.store.budgets.store import publish_budget_changes

BUDGET_OUTBOX_INTERVAL_S = 1.0


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    settings, pool, bus = runtime.settings, runtime.pool, runtime.bus
    source = f"spendgate/ledger/{settings.instance}"
    crossings = OutboxPublisher(partial(publish_pending, pool, bus, source=source))
    budget_changes = OutboxPublisher(partial(publish_budget_changes, pool, bus, source=source),
                                     interval_s=BUDGET_OUTBOX_INTERVAL_S)
    consumer = LedgerConsumer(pool, bus, default_timezone=settings.default_timezone, on_crossings=crossings.wake)
    loops = {"ledger.consumer": consumer.run, "ledger.crossings-outbox": crossings.run,
             "ledger.budget-outbox": budget_changes.run}
    async with asyncio.TaskGroup() as tg:
        for name, loop in loops.items():
            tg.create_task(runtime.supervisor.run(name, loop, stop), name=name)
