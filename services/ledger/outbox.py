"""Publishes the ledger's outboxes to ``spendgate.budget.v1``: threshold crossings, and budget changes.

A crossing is written in the fold's transaction; :func:`publish_pending` sends unpublished rows in
order and marks them published after the bus acknowledged them. A crash in between republishes:
consumers (the alerter) dedupe on ``crossing_id``. Budget changes are the budget store's audit rows
(``publish_budget_changes``). :class:`OutboxPublisher` is the loop that drains either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat
from spendgate.domain.constants import TOPIC_BUDGET
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
    """Drains one outbox: wakes when told to (or every ``interval_s``) and calls ``publish`` until it
    reports nothing left. Failures raise: the supervisor restarts the loop with backoff."""

    def __init__(self, publish: Callable[[], Awaitable[int]], *, interval_s: float = 5.0) -> None:
        self.publish, self.interval_s = publish, interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        while not stop.is_set():
            self._wake.clear()
            while await self.publish():
                pass
            beat()
            await _wait_either(self._wake, stop, timeout_s=self.interval_s)


async def _wait_either(a: asyncio.Event, b: asyncio.Event, *, timeout_s: float) -> None:
    waiters = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
