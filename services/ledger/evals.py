"""The eval consumer: external evaluation scores per turn from ``spendgate.eval.v1`` into ``turn_evals``.

An org's own eval system publishes one JSON record per evaluated turn (``schemas/io.spendgate.eval.v1
.schema.json``). Each batch is stored in one transaction with the consumed positions (as the ledger's
fold does), so a restart neither loses nor doubles a record. A record that is not a valid evaluation (not
JSON, a score outside [0, 1], unknown fields) or names a turn without usage is dead-lettered with the
reason; one record never stops the consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from spendgate.core.bus import Bus, Consumer, Record, TopicPartition, next_offsets, positions
from spendgate.core.db import Conn
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat
from spendgate.domain.constants import GROUP_EVALS, TOPIC_EVAL
from spendgate.domain.errors import BusError
from spendgate.domain.outcomes import EvalError, TurnEvaluation, decode_evaluation
from spendgate.ledger.admission import clean_text
from spendgate.store.deadletters.store import add_dead_letter
from spendgate.store.outcomes import store as outcomes

log = get_logger(__name__)

UNKNOWN_TURN = "no usage recorded for turn {turn_id!r} (publish an evaluation after the turn went through spendgate)"


async def store_batch(conn: Conn, records: Sequence[Record], *, consumer: str, now: datetime) -> tuple[int, int]:
    """Store one batch inside the caller's transaction; returns (stored, dead-lettered)."""
    good: list[tuple[Record, TurnEvaluation]] = []
    dead = 0
    for record in records:
        try:
            good.append((record, decode_evaluation(record.value)))
        except EvalError as exc:
            dead += await _dead_letter(conn, consumer, record, str(exc))
    known = await outcomes.known_turns(conn, [e.turn_id for _, e in good])
    for record, evaluation in good:
        if evaluation.turn_id not in known:
            dead += await _dead_letter(conn, consumer, record, UNKNOWN_TURN.format(turn_id=evaluation.turn_id))
    stored = await outcomes.record_evals(conn, [e for _, e in good if e.turn_id in known], received_at=now)
    await positions.save_positions(conn, consumer, next_offsets(records))
    return stored, dead


async def _dead_letter(conn: Conn, consumer: str, record: Record, reason: str) -> int:
    reason = clean_text(reason)
    await add_dead_letter(conn, consumer, record, reason)
    log.warning("evaluation dead-lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                reason=reason)
    return 1


class EvalConsumer:
    """Consumes ``spendgate.eval.v1`` until ``stop`` is set (run under the supervisor)."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, group: str = GROUP_EVALS, batch_size: int = 500) -> None:
        self.pool, self.bus, self.group, self.batch_size = pool, bus, group, batch_size
        self.stored = 0
        self.dead_lettered = 0

    async def _positions(self, assigned: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return await positions.load_positions(self.pool, self.group, assigned)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        consumer = self.bus.consumer(self.group, [TOPIC_EVAL], on_assign=self._positions)
        await consumer.start()
        log.info("eval consumer consuming", group=self.group, topic=TOPIC_EVAL)
        try:
            while not stop.is_set():
                records = await consumer.poll(max_records=self.batch_size, timeout_s=0.5)
                if records:
                    await self._write(consumer, records)
                beat()
        finally:
            await consumer.stop()

    async def _write(self, consumer: Consumer, records: Sequence[Record]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            stored, dead = await store_batch(conn, records, consumer=self.group, now=datetime.now(UTC))
        self.stored += stored
        self.dead_lettered += dead
        try:
            await consumer.commit(next_offsets(records))
        except BusError as exc:  # bookkeeping only: the positions that count are in PostgreSQL
            log.warning("bus offset commit failed; positions are stored in PostgreSQL", error=str(exc))
