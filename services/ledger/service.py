"""The ledger service: the fold loop and the two outboxes (threshold crossings, budget changes)."""

from __future__ import annotations

import asyncio

from spendgate.ledger.consumer import LedgerConsumer
from spendgate.ledger.outbox import OutboxPublisher
from spendgate.runtime import Runtime
from spendgate.store.budgets.store import run_budget_outbox


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    settings = runtime.settings
    source = f"spendgate/ledger/{settings.instance}"
    outbox = OutboxPublisher(runtime.pool, runtime.bus, source=source)
    consumer = LedgerConsumer(runtime.pool, runtime.bus, default_timezone=settings.default_timezone,
                              on_crossings=outbox.wake)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run(stop), name="ledger-consumer")
        tg.create_task(outbox.run(stop), name="ledger-crossings-outbox")
        tg.create_task(run_budget_outbox(runtime.pool, runtime.bus, stop, source=source), name="ledger-budget-outbox")
