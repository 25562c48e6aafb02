"""The ledger service: the fold loop and the crossings outbox publisher, supervised together."""

from __future__ import annotations

import asyncio

from spendgate.core.runtime import Runtime

from .consumer import LedgerConsumer
from .outbox import OutboxPublisher


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    settings = runtime.settings
    outbox = OutboxPublisher(runtime.pool, runtime.bus, source=f"spendgate/ledger/{settings.instance}")
    consumer = LedgerConsumer(runtime.pool, runtime.bus, default_timezone=settings.default_timezone,
                              on_crossings=outbox.wake)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run(stop), name="ledger-consumer")
        tg.create_task(outbox.run(stop), name="ledger-outbox")
