"""The embedded bus: a durable log table in PostgreSQL behind the same port as Kafka.

- Offsets are assigned under the ``bus_partitions`` row lock, so within a partition they become
  visible in offset order (a consumer never skips a record committed late).
- Publishers ``NOTIFY`` in the publishing transaction; consumers ``LISTEN`` and wake at once, with
  a one-second poll as a safety net.
- Group membership and partition ownership are session-level advisory locks held by each consumer's
  dedicated connection: a consumer that dies (even SIGKILL) releases its partitions immediately, and
  each member claims its fair share of the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from spendgate.core.bus.base import OnAssign, Record, TopicPartition, partition_for
from spendgate.core.db import CONNECTION_TROUBLE, DATABASE_TROUBLE
from spendgate.domain.constants import PG_NOTIFY_BUS
from spendgate.domain.errors import BusUnavailableError

REBALANCE_EVERY_S = 0.5


def _lock_key(text: str) -> int:
    # Non-negative int4, so the value reads the same as int4 in pg_advisory_lock and as oid in pg_locks.
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class PostgresBus:
    def __init__(self, pool: asyncpg.Pool, dsn: str, *, partitions: int = 4) -> None:
        self.pool, self.dsn, self.partitions = pool, dsn, partitions
        self._rr = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        await self.publish_many(topic, [(key, value)])

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        if not items:
            return
        by_partition: dict[int, list[tuple[str | None, bytes]]] = defaultdict(list)
        for key, value in items:
            self._rr += 1
            by_partition[partition_for(key, self.partitions, fallback=self._rr)].append((key, value))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for partition in sorted(by_partition):  # one lock order: no deadlocks between publishers
                    batch = by_partition[partition]
                    end = await conn.fetchval(
                        """INSERT INTO bus_partitions (topic, partition, next_offset) VALUES ($1, $2, $3)
                           ON CONFLICT (topic, partition)
                           DO UPDATE SET next_offset = bus_partitions.next_offset + excluded.next_offset
                           RETURNING next_offset""",
                        topic, partition, len(batch),
                    )
                    first = end - len(batch)
                    await conn.execute(
                        """INSERT INTO bus_log (topic, partition, "offset", key, value)
                           SELECT $1, $2, o, k, v FROM unnest($3::bigint[], $4::text[], $5::bytea[]) AS t(o, k, v)""",
                        topic, partition, list(range(first, end)),
                        [k for k, _ in batch], [v for _, v in batch],
                    )
                await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_BUS, topic)
        except CONNECTION_TROUBLE as exc:
            raise BusUnavailableError(f"embedded bus unavailable: {exc}") from exc

    def consumer(self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None) -> PostgresConsumer:
        return PostgresConsumer(self, group, topics, on_assign)


class PostgresConsumer:
    def __init__(self, bus: PostgresBus, group: str, topics: Sequence[str], on_assign: OnAssign | None) -> None:
        self.bus, self.group, self.topics, self.on_assign = bus, group, list(topics), on_assign
        self._conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._member_class = _lock_key(f"members:{group}")
        self._partition_class = _lock_key(f"partitions:{group}")
        self._last_rebalance = 0.0

    async def start(self) -> None:
        conn = await asyncpg.connect(self.bus.dsn)
        self._conn = conn
        await conn.add_listener(PG_NOTIFY_BUS, self._on_notify)
        # Membership: one advisory lock per member, keyed by its backend pid.
        await conn.execute("SELECT pg_advisory_lock($1, pg_backend_pid())", self._member_class)
        await self._rebalance(force=True)

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        self._positions.clear()
        if conn is not None:
            with contextlib.suppress(*DATABASE_TROUBLE):
                await conn.close(timeout=5)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload in self.topics:
            self._wake.set()

    def _all_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.topics for p in range(self.bus.partitions)]

    def _pkey(self, tp: TopicPartition) -> int:
        return _lock_key(f"{tp.topic}/{tp.partition}")

    async def _rebalance(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if not force and loop.time() - self._last_rebalance < REBALANCE_EVERY_S:
            return
        self._last_rebalance = loop.time()
        conn = self._conn
        assert conn is not None, "consumer not started"
        # pg_locks lists every database's locks; advisory locks (and so group members) are per database.
        members = await conn.fetchval(
            """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::oid
               AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            self._member_class,
        )
        everything = self._all_partitions()
        fair_share = -(-len(everything) // max(int(members), 1))
        owned = sorted(self._positions)
        for tp in owned[fair_share:]:  # hand extras back so a new member gets its share
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", self._partition_class, self._pkey(tp))
            del self._positions[tp]
        claimed: list[TopicPartition] = []
        for tp in everything:
            if len(self._positions) + len(claimed) >= fair_share:
                break
            if tp in self._positions:
                continue
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", self._partition_class, self._pkey(tp)):
                claimed.append(tp)
        if not claimed:
            return
        stored = dict(await self.on_assign(claimed)) if self.on_assign else {}
        rows = await conn.fetch(
            """SELECT topic, partition, next_offset FROM bus_group_offsets
               WHERE group_id = $1 AND topic = ANY($2::text[])""",
            self.group, self.topics,
        )
        committed = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for tp in claimed:
            self._positions[tp] = stored.get(tp, committed.get(tp, 0))

    async def _fetch(self, max_records: int) -> list[Record]:
        if not self._positions:
            return []
        tps = sorted(self._positions)
        rows = await self.bus.pool.fetch(
            """SELECT l.topic, l.partition, l."offset", l.key, l.value
               FROM unnest($1::text[], $2::int[], $3::bigint[]) AS p(topic, partition, pos)
               CROSS JOIN LATERAL (
                   SELECT * FROM bus_log b
                   WHERE b.topic = p.topic AND b.partition = p.partition AND b."offset" >= p.pos
                   ORDER BY b."offset" LIMIT $4) l
               ORDER BY l.topic, l.partition, l."offset" """,
            [tp.topic for tp in tps], [tp.partition for tp in tps], [self._positions[tp] for tp in tps],
            max_records,
        )
        records = [Record(r["topic"], r["partition"], r["offset"], r["key"], bytes(r["value"])) for r in rows]
        records = records[:max_records]
        for rec in records:
            if rec.tp in self._positions:
                self._positions[rec.tp] = rec.offset + 1
        return records

    async def poll(self, *, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        try:
            await self._rebalance()
            self._wake.clear()
            records = await self._fetch(max_records)
            if records:
                return records
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(timeout_s, 1.0))
            return await self._fetch(max_records)
        except CONNECTION_TROUBLE as exc:
            raise BusUnavailableError(f"embedded bus unavailable: {exc}") from exc

    async def lag(self) -> dict[TopicPartition, int]:
        if not self._positions:
            return {}
        tps = sorted(self._positions)
        try:
            rows = await self.bus.pool.fetch(
                """SELECT p.topic, p.partition,
                          (SELECT max(b."offset") FROM bus_log b
                           WHERE b.topic = p.topic AND b.partition = p.partition) AS last
                   FROM unnest($1::text[], $2::int[]) AS p(topic, partition)""",
                [tp.topic for tp in tps], [tp.partition for tp in tps])
        except CONNECTION_TROUBLE as exc:
            raise BusUnavailableError(f"embedded bus unavailable: {exc}") from exc
        ends = {TopicPartition(r["topic"], r["partition"]): (r["last"] + 1 if r["last"] is not None else 0)
                for r in rows}
        return {tp: max(ends.get(tp, 0) - pos, 0) for tp, pos in self._positions.items()}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        items = sorted(offsets.items())
        await self.bus.pool.execute(
            """INSERT INTO bus_group_offsets (group_id, topic, partition, next_offset)
               SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
               ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset""",
            self.group, [tp.topic for tp, _ in items], [tp.partition for tp, _ in items], [o for _, o in items],
        )
