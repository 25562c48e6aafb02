"""Dead letters: records a consumer could not use (poison events), kept once per record and consumer.

A redelivered poison record finds its row by (consumer, topic, partition, offset) and adds nothing, so
a consumer can dead-letter inside the transaction that also stores its position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from spendgate.core.bus.base import Record
from spendgate.core.db import Queryable


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    reason: str
    payload: bytes
    created_at: datetime


async def add_dead_letter(db: Queryable, consumer: str, record: Record, reason: str) -> bool:
    """Keep ``record`` as one ``consumer`` could not use; False when it was kept before (a redelivery)."""
    return bool(await db.fetchval(
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", reason, payload)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1""",
        consumer, record.topic, record.partition, record.offset, reason, record.value,
    ))


async def dead_letters(db: Queryable, *, consumer: str | None = None) -> list[DeadLetter]:
    """Every dead letter (or one consumer's), oldest first."""
    rows = await db.fetch(
        """SELECT dead_letter_id, consumer, topic, partition, "offset", reason, payload, created_at
           FROM dead_letters WHERE $1::text IS NULL OR consumer = $1 ORDER BY dead_letter_id""",
        consumer,
    )
    return [DeadLetter(r["dead_letter_id"], r["consumer"], r["topic"], r["partition"], r["offset"], r["reason"],
                       bytes(r["payload"]), r["created_at"]) for r in rows]
