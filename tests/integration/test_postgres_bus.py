"""The embedded Postgres bus beyond the shared contract: group membership across connections,
failover when a member dies, and wake-up by NOTIFY rather than by polling."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from spendgate.core.bus import TopicPartition
from spendgate.core.bus.postgres import PostgresBus, PostgresConsumer
from tests.support.postgres import PostgresForTests
from tests.support.waiting import eventually


async def owned(c: PostgresConsumer) -> set[TopicPartition]:
    await c.poll(timeout_s=0.05)
    return set(c._positions)


async def test_group_members_split_partitions_and_take_over_on_death(db_url: str, pool: asyncpg.Pool) -> None:
    """Two members share the partitions disjointly; when one dies the other owns them all."""
    bus = PostgresBus(pool, db_url, partitions=4)
    a, b = bus.consumer("g", ["t"]), bus.consumer("g", ["t"])
    await a.start()
    await b.start()
    everything = {TopicPartition("t", p) for p in range(4)}
    try:
        await eventually(lambda: owned(a), until=lambda s: len(s) == 2, what="a to hand back half")
        await eventually(lambda: owned(b), until=lambda s: len(s) == 2, what="b to claim its half")
        assert a._positions.keys().isdisjoint(b._positions.keys())
        assert set(a._positions) | set(b._positions) == everything
        assert b._conn is not None
        b._conn.terminate()  # the member's process dies: its advisory locks go with the connection
        b._conn = None
        await eventually(lambda: owned(a), until=lambda s: s == everything, what="a to take over")
    finally:
        await a.stop()
        await b.stop()


async def test_waiting_consumer_is_woken_by_notify(db_url: str, pool: asyncpg.Pool) -> None:
    """A consumer blocked in poll gets a new record long before its one-second poll fallback."""
    bus = PostgresBus(pool, db_url, partitions=1)
    c = bus.consumer("g", ["t"])
    await c.start()
    try:
        assert await c.poll(timeout_s=0.1) == []
        async def publish_soon() -> float:
            await asyncio.sleep(0.2)  # scenario, not synchronisation: publish while the consumer waits
            sent = time.perf_counter()
            await bus.publish("t", "k", b"x")
            return sent

        task = asyncio.create_task(publish_soon())
        got = await c.poll(timeout_s=5)
        received = time.perf_counter()
        sent = await task
        assert [r.value for r in got] == [b"x"]
        assert received - sent < 0.5, "woken by the poll fallback, not by NOTIFY"
    finally:
        await c.stop()


async def test_members_in_another_database_do_not_shrink_the_share(
    db_url: str, pool: asyncpg.Pool, postgres_server: PostgresForTests
) -> None:
    """A consumer of the same group name on another database of the server is not a member of this group."""
    other_url = await postgres_server.new_database()
    other_pool = await asyncpg.create_pool(other_url, min_size=1, max_size=2)
    assert other_pool is not None
    elsewhere = PostgresBus(other_pool, other_url, partitions=4).consumer("g", ["t"])
    here = PostgresBus(pool, db_url, partitions=4).consumer("g", ["t"])
    await elsewhere.start()
    await here.start()
    try:
        await eventually(lambda: owned(here), until=lambda s: len(s) == 4, what="all four partitions here")
        await eventually(lambda: owned(elsewhere), until=lambda s: len(s) == 4, what="all four there")
    finally:
        await here.stop()
        await elsewhere.stop()
        await other_pool.close()
