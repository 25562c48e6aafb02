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
from spendgate.domain.events import ThresholdCrossed, encode

log = get_logger(__name__)


def _event(r: asyncpg.Record) -> ThresholdCrossed:
    return ThresholdCrossed(
        crossing_id=str(r["crossing_id"]), scope=r["scope"], period=r["period"], period_start=r["period_start"],
        resets_at=r["resets_at"], threshold_pct=r["threshold_pct"], stage=r["stage"],
        spent_micros=r["spent_micros"], budget_micros=r["budget_micros"], crossed_at=r["crossed_at"],
        developer=r["developer"], team=r["team"], cost_center=r["cost_center"],
        trigger_event_id=str(r["trigger_event_id"]),
    )


async def publish_pending(pool: asyncpg.Pool, bus: Bus, *, source: str, limit: int = 500) -> int:
    """Publish up to ``limit`` unpublished crossings; returns how many were sent."""
    rows = await pool.fetch(
        """SELECT * FROM threshold_crossings WHERE published_at IS NULL
           ORDER BY crossed_at, crossing_id LIMIT $1""",
        limit,
    )
    if not rows:
        return 0
    await bus.publish_many(
        TOPIC_BUDGET, [(r["scope"], encode(_event(r), source=source, subject=r["scope"])) for r in rows]
    )
    await pool.execute(
        "UPDATE threshold_crossings SET published_at = now() WHERE crossing_id = ANY($1::uuid[])",
        [r["crossing_id"] for r in rows],
    )
    return len(rows)


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
