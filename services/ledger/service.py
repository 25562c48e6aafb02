"""The ledger service: the fold loop, the two outboxes (threshold crossings, budget changes) and the
eval consumer (external turn scores, :mod:`spendgate.ledger.evals`), each run under the supervisor.
Publishing a budget change first records the crossings it leaves the scope's balances past
(:mod:`spendgate.ledger.changes`), in the same transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from spendgate.core.db import Conn
from spendgate.domain.events import BudgetChanged
from spendgate.ledger.changes import record_change_crossings
from spendgate.ledger.consumer import FoldMetrics, LedgerConsumer
from spendgate.ledger.evals import EvalConsumer
from spendgate.ledger.outbox import OutboxPublisher, publish_pending
from spendgate.runtime import Runtime
from spendgate.store.budgets.store import publish_budget_changes

BUDGET_OUTBOX_INTERVAL_S = 1.0


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    settings, pool, bus = runtime.settings, runtime.pool, runtime.bus
    source = f"spendgate/ledger/{settings.instance}"
    crossings = OutboxPublisher(partial(publish_pending, pool, bus, source=source))

    async def publish_changes() -> int:
        """Publish budget changes, recording their crossings first; wake the crossings outbox once committed."""
        found = 0

        async def judge(conn: Conn, changes: Sequence[BudgetChanged]) -> None:
            nonlocal found
            found += await record_change_crossings(conn, changes)

        sent = await publish_budget_changes(pool, bus, source=source, on_changes=judge)
        if found:
            fold_metrics.crossings.inc(found)
            crossings.wake()
        return sent

    fold_metrics = FoldMetrics(runtime.metrics)
    budget_changes = OutboxPublisher(publish_changes, interval_s=BUDGET_OUTBOX_INTERVAL_S)
    consumer = LedgerConsumer(pool, bus, default_timezone=settings.default_timezone, on_crossings=crossings.wake,
                              metrics=fold_metrics, tracer=runtime.tracer)
    loops = {"ledger.consumer": consumer.run, "ledger.crossings-outbox": crossings.run,
             "ledger.budget-outbox": budget_changes.run, "ledger.evals": EvalConsumer(pool, bus).run}
    async with asyncio.TaskGroup() as tg:
        for name, loop in loops.items():
            tg.create_task(runtime.supervisor.run(name, loop, stop), name=name)
