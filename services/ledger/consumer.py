"""The ledger consumer: poll a batch, fold it into PostgreSQL in one transaction, then commit.

Exactly-once effect on balances from an at-least-once bus: events are inserted idempotently on
``event_id`` and only the newly inserted ones are folded; the consumed position is stored in the
same transaction and the consumer seeks to it when partitions are assigned. The bus commit that
follows is bookkeeping for operators, not what correctness rests on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from spendgate.core.bus import Bus, Record, TopicPartition, next_offsets, positions
from spendgate.core.db import Conn
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat
from spendgate.domain.constants import GROUP_LEDGER, TOPIC_USAGE
from spendgate.domain.errors import PoisonEventError
from spendgate.domain.events import UsageRecorded, decode
from spendgate.ledger.fold import batch_crossings, fold, scopes_of
from spendgate.store.balances import store as balances
from spendgate.store.budgets import store as budget_store
from spendgate.store.deadletters.store import add_dead_letter
from spendgate.store.usage import store as usage

log = get_logger(__name__)


@dataclass
class BatchOutcome:
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    crossings: int = 0


def _decode(record: Record) -> UsageRecorded:
    event = decode(record.value)
    if not isinstance(event.data, UsageRecorded):
        raise PoisonEventError(f"{event.type} does not belong on the usage topic")
    return event.data


async def fold_batch(
    conn: Conn, records: Sequence[Record], *, consumer: str, default_timezone: str
) -> BatchOutcome:
    """Fold one batch of records inside the caller's transaction."""
    outcome = BatchOutcome(received=len(records))
    events: list[UsageRecorded] = []
    for rec in records:
        try:
            events.append(_decode(rec))
        except PoisonEventError as exc:
            outcome.dead_lettered += 1
            await add_dead_letter(conn, consumer, rec, exc.message)
            log.warning("event dead-lettered", topic=rec.topic, partition=rec.partition,
                        offset=rec.offset, reason=exc.message)
    new = await usage.insert_events(conn, events)
    outcome.inserted, outcome.duplicates = len(new), len(events) - len(new)
    if new:
        outcome.crossings = await fold_events(conn, new, default_timezone=default_timezone)
    await positions.save_positions(conn, consumer, next_offsets(records))
    return outcome


async def fold_events(conn: Conn, events: Sequence[UsageRecorded], *, default_timezone: str,
                      record_crossings: bool = True) -> int:
    """Apply already-inserted events to balances and sessions; write crossings (unless ``record_crossings``
    is off: ``ledger rebuild``); returns crossings written."""
    # Time order, not bus order: a team's or the org's events arrive from several partitions, and the
    # event that crossed a threshold must be the one that really did.
    events = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    scopes = {s for e in events for s in scopes_of(e)}
    budgets = {b.scope: b for b in await budget_store.budgets_of(conn, scopes)}
    # Base amounts and every raise still running at the batch's first event: batch_crossings measures
    # each event against the budget at its own time (a raise that ends inside the batch counts only
    # before its end), as the proxy decided it.
    raises = await budget_store.active_raises(conn, events[0].occurred_at, scopes)
    result = fold(events, lambda scope: budgets[scope].timezone if scope in budgets else default_timezone)
    before = await balances.apply_balances(conn, result.balances)
    await usage.apply_sessions(conn, result.sessions)
    if not record_crossings:
        return 0
    return await balances.insert_crossings(conn, batch_crossings(result, before, budgets, raises=raises))


class LedgerConsumer:
    """Runs the fold loop until ``stop`` is set; ``on_folded`` is told when crossings were written."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, *, default_timezone: str = "UTC", group: str = GROUP_LEDGER,
        batch_size: int = 1000, on_crossings: Callable[[], None] | None = None,
    ) -> None:
        self.pool, self.bus, self.group = pool, bus, group
        self.default_timezone = default_timezone
        self.batch_size = batch_size
        self.on_crossings = on_crossings
        self.folded = 0

    async def _positions(self, assigned: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return await positions.load_positions(self.pool, self.group, assigned)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """Fold until ``stop`` is set; a failure raises (the supervisor restarts it from the stored positions)."""
        consumer = self.bus.consumer(self.group, [TOPIC_USAGE], on_assign=self._positions)
        await consumer.start()
        log.info("ledger consuming", group=self.group, topic=TOPIC_USAGE)
        try:
            while not stop.is_set():
                records = await consumer.poll(max_records=self.batch_size, timeout_s=0.5)
                if not records:
                    beat()
                    continue
                # Shielded: a cancellation between the database commit and the bus commit must not
                # leave a batch half-applied; the transaction itself is atomic either way.
                outcome = await asyncio.shield(self._apply(records))
                await consumer.commit(next_offsets(records))
                self.folded += outcome.inserted
                if outcome.crossings and self.on_crossings is not None:
                    self.on_crossings()
                beat()
        finally:
            await consumer.stop()

    async def _apply(self, records: Sequence[Record]) -> BatchOutcome:
        async with self.pool.acquire() as conn, conn.transaction():
            outcome = await fold_batch(conn, records, consumer=self.group,
                                       default_timezone=self.default_timezone)
        log.debug("batch folded", received=outcome.received, inserted=outcome.inserted,
                  duplicates=outcome.duplicates, dead=outcome.dead_lettered, crossings=outcome.crossings)
        return outcome
