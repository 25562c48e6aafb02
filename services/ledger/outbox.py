"""Publishes threshold crossings from the ledger's outbox table to ``spendgate.budget.v1``.

A crossing is written in the fold's transaction; this publisher sends unpublished rows in order and
marks them published after the bus acknowledged them. A crash in between republishes: consumers
(the alerter) dedupe on ``crossing_id``.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.logs import get_logger
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.errors import BusError
from spendgate.domain.events import encode
from spendgate.store.balances import store as balances

log = get_logger(__name__)


async def publish_pending(pool: asyncpg.Pool, bus: Bus, *, source: str, limit: int = 500) -> int:
    """Publish up to ``limit`` unpublished crossings; returns how many were sent."""
    found = await balances.unpublished_crossings(pool, limit)
    if not found:
        return 0
    await bus.publish_many(TOPIC_BUDGET, [(c.scope, encode(c, source=source, subject=c.scope)) for c in found])
    await balances.mark_crossings_published(pool, [c.crossing_id for c in found])
    return len(found)


class OutboxPublisher:
    """Wakes when the consumer wrote crossings (or every ``interval_s``) and drains the outbox."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, source: str, interval_s: float = 5.0) -> None:
        self.pool, self.bus, self.source, self.interval_s = pool, bus, source, interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                while await publish_pending(self.pool, self.bus, source=self.source):
                    pass
            except BusError as exc:
                log.warning("crossing publish failed; will retry", error=exc.message, retriable=exc.retriable)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
