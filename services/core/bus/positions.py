"""Consumer positions kept in PostgreSQL, written in the consumer's own transaction with its results.

This is what exactly-once folding rests on (the bus's committed offsets are bookkeeping): a consumer
saves the next offset per partition atomically with what it made of the records, and seeks to the
saved offsets when partitions are assigned. A position never goes backwards: a late or replayed save
of a lower offset keeps the higher one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spendgate.core.bus.base import TopicPartition
from spendgate.core.db import Queryable


async def load_positions(
    db: Queryable, consumer: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The saved next offset of each of ``partitions`` that ``consumer`` has one for."""
    rows = await db.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE consumer = $1",
        consumer,
    )
    wanted = set(partitions)
    found = {TopicPartition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}
    return {tp: o for tp, o in found.items() if tp in wanted}


async def save_positions(db: Queryable, consumer: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Record ``consumer``'s next offsets (call in the transaction that stores what it consumed)."""
    items = sorted(offsets.items())
    await db.execute(
        """INSERT INTO consumer_positions (consumer, topic, partition, next_offset)
           SELECT $1, t, p, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS x(t, p, o)
           ON CONFLICT (consumer, topic, partition) DO UPDATE
             SET next_offset = GREATEST(consumer_positions.next_offset, excluded.next_offset)""",
        consumer, [tp.topic for tp, _ in items], [tp.partition for tp, _ in items], [o for _, o in items],
    )
