"""The ledger consumer: poll a batch, fold it into PostgreSQL in one transaction, then commit.

Exactly-once effect on balances from an at-least-once bus: events are inserted idempotently on
``event_id`` and only the newly inserted ones are folded; the consumed position is stored in the
same transaction and the consumer seeks to it when partitions are assigned. The bus commit that
follows is bookkeeping for operators, not what correctness rests on.

One record never stops the ledger: a record that does not decode or is refused by
:mod:`spendgate.ledger.admission` is dead-lettered; one the database refuses (a value PostgreSQL cannot
store, a constraint) is found by bisecting the batch inside savepoints and dead-lettered alone, the
rest of the batch folds and the position moves past it. Errors of the connection itself are not the
record's fault: they end the batch (nothing committed) and the supervisor retries it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from spendgate.core.bus import Bus, Consumer, Record, TopicPartition, next_offsets, positions
from spendgate.core.db import Conn
from spendgate.core.logs import get_logger
from spendgate.core.metrics import Metrics
from spendgate.core.supervisor import Beat, no_beat
from spendgate.core.tracing import Tracer
from spendgate.domain.constants import GROUP_LEDGER, TOPIC_USAGE, TYPE_USAGE_RECORDED
from spendgate.domain.errors import BusError, PoisonEventError
from spendgate.domain.events import UsageRecorded, decode_expecting
from spendgate.ledger.admission import admit, clean_text
from spendgate.ledger.fold import batch_crossings, batch_scopes, fold_under
from spendgate.store.balances import store as balances
from spendgate.store.budgets import store as budget_store
from spendgate.store.deadletters.store import add_dead_letter
from spendgate.store.usage import store as usage
from spendgate.store.usage.store import TurnKey

log = get_logger(__name__)


@dataclass
class BatchOutcome:
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    crossings: int = 0
    oldest_at: datetime | None = None
    """When the batch's oldest admitted event happened (its fold lag is measured from there)."""
    turns: list[TurnKey] = field(default_factory=list)
    """The turns of the events folded: recorded in session_turns once the batch commits."""


class StoredTurns:
    """The turns this ledger has recorded in committed batches, newest ``capacity`` of them.

    A turn's requests usually come in several batches; each batch used to send every turn of its events
    to session_turns again (``ON CONFLICT DO NOTHING``). Those known to be stored are left out: a turn
    in session_turns stays there (``ledger rebuild`` empties the table but records again the turns of
    every stored event, and an event is stored in the batch that recorded its turn).
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._turns: OrderedDict[TurnKey, None] = OrderedDict()

    def __contains__(self, turn: object) -> bool:
        return turn in self._turns

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, turns: Iterable[TurnKey]) -> None:
        """Remember ``turns`` (call after the transaction that recorded them committed)."""
        known = self._turns
        for turn in turns:
            known[turn] = None
            known.move_to_end(turn)
        while len(known) > self.capacity:
            known.popitem(last=False)


RECORD_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,  # class 22: NUL in text, a number out of range, bad input syntax
    asyncpg.IntegrityConstraintViolationError,  # class 23
    asyncpg.ProgramLimitExceededError,  # class 54: a value too large for an index row
    ValueError, ArithmeticError,  # a value the driver or the fold cannot take (OverflowError too)
)
"""What one record can cause: the batch is bisected to find it, and it alone is dead-lettered. Anything
else (the connection, the server) fails the whole batch, which is retried."""


def _decode(record: Record) -> UsageRecorded:
    event = decode_expecting(record.value, TYPE_USAGE_RECORDED)
    if not isinstance(event.data, UsageRecorded):
        raise PoisonEventError(f"{event.type} does not belong on the usage topic")
    return admit(event.data)


async def _dead_letter(conn: Conn, consumer: str, record: Record, reason: str, outcome: BatchOutcome) -> None:
    reason = clean_text(reason)  # an error message may quote the very value PostgreSQL refused
    outcome.dead_lettered += 1
    await add_dead_letter(conn, consumer, record, reason)
    log.warning("event dead-lettered", topic=record.topic, partition=record.partition,
                offset=record.offset, reason=reason)


@dataclass
class Decoded:
    """A polled batch, decoded and admitted (pure work, done while the previous batch is being written)."""

    records: Sequence[Record]
    admitted: list[tuple[Record, UsageRecorded]]
    poisoned: list[tuple[Record, str]]


def decode_batch(records: Sequence[Record]) -> Decoded:
    admitted: list[tuple[Record, UsageRecorded]] = []
    poisoned: list[tuple[Record, str]] = []
    for rec in records:
        try:
            admitted.append((rec, _decode(rec)))
        except PoisonEventError as exc:
            poisoned.append((rec, exc.message))
    return Decoded(records, admitted, poisoned)


async def fold_batch(
    conn: Conn, records: Sequence[Record], *, consumer: str, default_timezone: str
) -> BatchOutcome:
    """Fold one batch of records inside the caller's transaction, dead-lettering what cannot be folded."""
    return await fold_decoded(conn, decode_batch(records), consumer=consumer, default_timezone=default_timezone)


async def fold_decoded(conn: Conn, batch: Decoded, *, consumer: str, default_timezone: str,
                       stored_turns: Container[TurnKey] = ()) -> BatchOutcome:
    """:func:`fold_batch` for a batch decoded beforehand; ``stored_turns``: turns known to be recorded."""
    outcome = BatchOutcome(received=len(batch.records))
    for rec, reason in batch.poisoned:
        await _dead_letter(conn, consumer, rec, reason, outcome)
    outcome.oldest_at = min((e.occurred_at for _, e in batch.admitted), default=None)
    await _store_isolating(conn, batch.admitted, consumer=consumer, default_timezone=default_timezone,
                           outcome=outcome, stored_turns=stored_turns)
    await positions.save_positions(conn, consumer, next_offsets(batch.records))
    return outcome


async def _store_isolating(conn: Conn, items: Sequence[tuple[Record, UsageRecorded]], *, consumer: str,
                           default_timezone: str, outcome: BatchOutcome,
                           stored_turns: Container[TurnKey] = ()) -> None:
    """Insert and fold ``items`` in a savepoint; when the database refuses them, bisect until the record
    it refuses is alone and dead-letter it (log2(batch) extra rounds per bad record, none when all is well)."""
    if not items:
        return
    events = [e for _, e in items]
    try:
        async with conn.transaction():  # a savepoint inside the batch's transaction
            new = await usage.insert_events(conn, events)
            crossings = await fold_events(conn, new, default_timezone=default_timezone,
                                          stored_turns=stored_turns) if new else 0
    except RECORD_ERRORS as exc:
        if len(items) == 1:
            reason = f"the database refused it: {type(exc).__name__}: {exc}"
            await _dead_letter(conn, consumer, items[0][0], reason, outcome)
            return
        middle = len(items) // 2
        for part in (items[:middle], items[middle:]):
            await _store_isolating(conn, part, consumer=consumer, default_timezone=default_timezone,
                                   outcome=outcome, stored_turns=stored_turns)
        return
    outcome.inserted += len(new)
    outcome.duplicates += len(events) - len(new)
    outcome.crossings += crossings
    outcome.turns += [(e.developer, e.session_id, e.turn_id) for e in new if e.session_id and e.turn_id]


async def fold_events(conn: Conn, events: Sequence[UsageRecorded], *, default_timezone: str,
                      record_crossings: bool = True, stored_turns: Container[TurnKey] = ()) -> int:
    """Apply already-inserted events to balances and sessions; write crossings (unless ``record_crossings``
    is off: ``ledger rebuild``); returns crossings written. ``stored_turns``: turns known to be recorded."""
    # Time order, not bus order: a team's or the org's events arrive from several partitions, and the
    # event that crossed a threshold must be the one that really did.
    events = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    await balances.hold_fold_lock(conn, exclusive=False)  # before the budgets: see ledger/changes.py's recount
    scopes = batch_scopes(events)
    budgets = {b.scope: b for b in await budget_store.budgets_of(conn, scopes)}
    # Base amounts and every raise still running at the batch's first event: batch_crossings measures
    # each event against the budget at its own time (a raise that ends inside the batch counts only
    # before its end), as the proxy decided it.
    raises = await budget_store.active_raises(conn, events[0].occurred_at, scopes)
    result = fold_under(events, budgets, default_timezone)
    before = await balances.apply_balances(conn, result.balances)
    await usage.apply_sessions(conn, result.sessions, stored_turns=stored_turns)
    if not record_crossings:
        return 0
    return await balances.insert_crossings(conn, batch_crossings(result, before, budgets, raises=raises))


LAG_EVERY_S = 5.0
"""How often the consumer lag per partition is measured (a request to the bus)."""


class FoldMetrics:
    """The ledger's instruments in the process's registry."""

    def __init__(self, metrics: Metrics) -> None:
        self.folded = metrics.counter("spendgate_ledger_events_folded", "Usage events folded (duplicates apart)")
        self.duplicates = metrics.counter("spendgate_ledger_duplicates",
                                          "Usage events received again and skipped (already folded)")
        self.dead_letters = metrics.counter("spendgate_ledger_dead_letters", "Records dead-lettered by the fold")
        self.crossings = metrics.counter("spendgate_ledger_crossings",
                                         "Threshold crossings written (by the fold or by a budget change)")
        self.batch_s = metrics.histogram("spendgate_ledger_fold_batch_seconds",
                                         "Time to fold one batch, poll to database commit")
        self.fold_lag_s = metrics.gauge("spendgate_ledger_fold_lag_seconds",
                                        "Age of the oldest event of the last folded batch at its commit "
                                        "(0 when the last poll found nothing)")
        self.consumer_lag = metrics.gauge("spendgate_ledger_consumer_lag",
                                          "Records on the usage topic not yet read, per partition this ledger holds",
                                          ["partition"])

    def batch(self, outcome: BatchOutcome, elapsed_s: float) -> None:
        self.folded.inc(outcome.inserted)
        self.duplicates.inc(outcome.duplicates)
        self.dead_letters.inc(outcome.dead_lettered)
        self.crossings.inc(outcome.crossings)
        self.batch_s.observe(elapsed_s)
        if outcome.oldest_at is not None:
            self.fold_lag_s.set(max((datetime.now(UTC) - outcome.oldest_at).total_seconds(), 0.0))

    def lag(self, lags: Mapping[TopicPartition, int]) -> None:
        self.consumer_lag.clear()  # partitions this member lost in a rebalance are no longer its to report
        for tp, n in lags.items():
            self.consumer_lag.labels(str(tp.partition)).set(n)


class LedgerConsumer:
    """Runs the fold loop until ``stop`` is set; ``on_folded`` is told when crossings were written."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, *, default_timezone: str = "UTC", group: str = GROUP_LEDGER,
        batch_size: int = 1000, on_crossings: Callable[[], None] | None = None,
        metrics: FoldMetrics | None = None, tracer: Tracer | None = None,
    ) -> None:
        self.pool, self.bus, self.group = pool, bus, group
        self.default_timezone = default_timezone
        self.batch_size = batch_size
        self.on_crossings = on_crossings
        self.folded = 0
        self.metrics = metrics
        self.tracer = tracer
        self.stored_turns = StoredTurns()

    async def _positions(self, assigned: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return await positions.load_positions(self.pool, self.group, assigned)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """Fold until ``stop`` is set; a failure raises (the supervisor restarts it from the stored positions).

        Two batches overlap: while one is written to PostgreSQL, the next is polled and decoded (the CPU
        work of this process runs while it waits on the database's). The writes themselves stay one
        batch at a time, in order: a batch's transaction starts after the previous one committed.
        """
        # What exists by now (modules, settings, pools) lives as long as the process: out of the garbage
        # collector's sight, its full collections stop walking it again and again under the fold's
        # allocations (about a fifth of the fold's CPU in benchmarks/ledger_fold.py).
        gc.freeze()
        consumer = self.bus.consumer(self.group, [TOPIC_USAGE], on_assign=self._positions)
        await consumer.start()
        log.info("ledger consuming", group=self.group, topic=TOPIC_USAGE)
        next_lag = 0.0
        writing: asyncio.Task[Sequence[Record]] | None = None
        try:
            while not stop.is_set():
                if self.metrics is not None and time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + LAG_EVERY_S
                    await self._measure_lag(consumer, self.metrics)
                records = await consumer.poll(max_records=self.batch_size,
                                              timeout_s=0.5 if writing is None else 0.0)
                decoded = decode_batch(records) if records else None
                if writing is not None:
                    await self._commit(consumer, await writing)
                    writing = None
                if stop.is_set():
                    break  # a batch polled ahead is not written: its records come again at the next start
                if decoded is None:
                    if self.metrics is not None:
                        self.metrics.fold_lag_s.set(0)
                    beat()
                    continue
                # A task of its own: a cancellation of this loop must not leave a batch half-applied
                # between the database commit and the bus commit; the transaction is atomic either way.
                writing = asyncio.create_task(self._write(decoded))
                beat()
        finally:
            if writing is not None:
                await asyncio.wait([writing])  # finish the batch under way; its positions are in PostgreSQL
            await consumer.stop()

    async def _write(self, batch: Decoded) -> Sequence[Record]:
        started = time.perf_counter()
        outcome = await self._apply(batch)
        if self.metrics is not None:
            self.metrics.batch(outcome, time.perf_counter() - started)
        self.folded += outcome.inserted
        if outcome.crossings and self.on_crossings is not None:
            self.on_crossings()
        return batch.records

    @staticmethod
    async def _commit(consumer: Consumer, records: Sequence[Record]) -> None:
        try:
            await consumer.commit(next_offsets(records))
        except BusError as exc:  # bookkeeping only: the positions that count are in PostgreSQL
            log.warning("bus offset commit failed; positions are stored in PostgreSQL", error=str(exc))

    async def _measure_lag(self, consumer: Consumer, metrics: FoldMetrics) -> None:
        try:
            metrics.lag(await consumer.lag())
        except BusError as exc:  # a figure for operators: the fold goes on without it
            log.info("consumer lag not measured", error=str(exc))

    async def _apply(self, batch: Decoded) -> BatchOutcome:
        if self.tracer is None:
            return await self._fold(batch)
        with self.tracer.span("spendgate.ledger.fold", {"messaging.batch.message_count": len(batch.records),
                                                        "messaging.consumer.group.name": self.group}) as span:
            outcome = await self._fold(batch)
            for name in ("inserted", "duplicates", "dead_lettered", "crossings"):
                span.set_attribute(f"spendgate.fold.{name}", getattr(outcome, name))
            return outcome

    async def _fold(self, batch: Decoded) -> BatchOutcome:
        async with self.pool.acquire() as conn, conn.transaction():
            outcome = await fold_decoded(conn, batch, consumer=self.group, default_timezone=self.default_timezone,
                                         stored_turns=self.stored_turns)
        self.stored_turns.add(outcome.turns)  # committed
        log.debug("batch folded", received=outcome.received, inserted=outcome.inserted,
                  duplicates=outcome.duplicates, dead=outcome.dead_lettered, crossings=outcome.crossings)
        return outcome
