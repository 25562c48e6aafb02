"""One contract, three adapters: MemoryBus, PostgresBus (embedded) and KafkaBus on a real Apache Kafka
broker, with the idempotent producer on as production runs it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import pytest

from spendgate.core.bus import Bus, Consumer, MemoryBus, Record, TopicPartition, next_offsets
from spendgate.core.bus.postgres import PostgresBus
from tests.support.kafka import KafkaForTest
from tests.support.postgres import PostgresForTests
from tests.support.waiting import eventually


@dataclass
class Harness:
    bus: Bus
    topic: str
    make_bus: Callable[[], Awaitable[Bus]]


@pytest.fixture(params=["memory", "postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
async def harness(request: pytest.FixtureRequest, postgres_server: PostgresForTests) -> AsyncIterator[Harness]:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    cleanup: list[Callable[[], Awaitable[None]]] = []

    if request.param == "memory":
        shared = MemoryBus(partitions=3)

        async def make() -> Bus:
            return shared
    elif request.param == "postgres":
        db_url = await postgres_server.new_database()
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
        assert pool is not None
        cleanup.append(pool.close)

        async def make() -> Bus:
            return PostgresBus(pool, db_url, partitions=3)
    else:
        kafka: KafkaForTest = request.getfixturevalue("kafka")  # the broker starts only if a Kafka case runs

        async def make() -> Bus:
            bus = kafka.bus(partitions=3, topics=[topic])
            await bus.start()
            cleanup.append(bus.stop)
            return bus

    bus = await make()
    yield Harness(bus, topic, make)
    for fn in reversed(cleanup):
        await fn()


async def drain(consumer: Consumer, n: int, *, timeout_s: float = 20.0) -> list[Record]:
    """Poll until ``n`` records arrived (or fail at the deadline)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {len(got)} of {n} records before the deadline")
        got.extend(await consumer.poll(max_records=500, timeout_s=0.5))
    return got


async def started(h: Harness, group: str, **kw: object) -> Consumer:
    c = h.bus.consumer(group, [h.topic], **kw)  # type: ignore[arg-type]
    await c.start()
    return c


async def test_per_key_order(harness: Harness) -> None:
    """Records with one key arrive in publish order, all in one partition."""
    items = [(f"k{i % 5}", f"{i % 5}:{i}".encode()) for i in range(60)]
    await harness.bus.publish_many(harness.topic, items[:30])
    for key, value in items[30:]:
        await harness.bus.publish(harness.topic, key, value)
    consumer = await started(harness, "g-order")
    records = await drain(consumer, 60)
    await consumer.stop()
    by_key: dict[str, list[int]] = {}
    partitions: dict[str, set[int]] = {}
    for r in records:
        assert r.key is not None
        by_key.setdefault(r.key, []).append(int(r.value.decode().split(":")[1]))
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(seq == sorted(seq) and len(seq) == 12 for seq in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())


async def test_redelivery_after_consumer_dies_before_commit(harness: Harness) -> None:
    """Records a consumer read but never committed go to the group's next consumer."""
    await harness.bus.publish_many(harness.topic, [(f"k{i}", str(i).encode()) for i in range(20)])
    first = await started(harness, "g-redeliver")
    seen = await drain(first, 20)
    await first.stop()  # dies without committing anything
    second = await started(harness, "g-redeliver")
    again = await drain(second, 20)
    await second.stop()
    assert sorted(r.value for r in again) == sorted(r.value for r in seen)


async def test_independent_groups(harness: Harness) -> None:
    """Each group sees every record, whatever the other groups commit."""
    await harness.bus.publish_many(harness.topic, [(f"k{i}", str(i).encode()) for i in range(15)])
    a = await started(harness, "g-a")
    got_a = await drain(a, 15)
    await a.commit(next_offsets(got_a))
    await a.stop()
    b = await started(harness, "g-b")
    got_b = await drain(b, 15)
    await b.stop()
    assert sorted(r.value for r in got_a) == sorted(r.value for r in got_b)


async def test_resume_from_committed_offset(harness: Harness) -> None:
    """A new consumer of a group starts after the group's committed offsets."""
    await harness.bus.publish_many(harness.topic, [("same", str(i).encode()) for i in range(10)])
    c1 = await started(harness, "g-resume")
    got = await drain(c1, 10)
    ordered = sorted(got, key=lambda r: r.offset)
    await c1.commit(next_offsets(ordered[:6]))
    await c1.stop()
    c2 = await started(harness, "g-resume")
    rest = await drain(c2, 4)
    await c2.stop()
    assert [r.value for r in rest] == [b"6", b"7", b"8", b"9"]


async def test_publish_while_consumer_down(harness: Harness) -> None:
    """Records published while no consumer runs are delivered when one comes back."""
    c1 = await started(harness, "g-down")
    await harness.bus.publish_many(harness.topic, [("k", b"before")])
    got = await drain(c1, 1)
    await c1.commit(next_offsets(got))
    await c1.stop()
    await harness.bus.publish_many(harness.topic, [("k", b"during-1"), ("j", b"during-2")])
    c2 = await started(harness, "g-down")
    later = await drain(c2, 2)
    await c2.stop()
    assert sorted(r.value for r in later) == [b"during-1", b"during-2"]


async def test_on_assign_seeks_to_stored_positions(harness: Harness) -> None:
    """Positions kept outside the bus (atomically with results) override the group's offsets."""
    await harness.bus.publish_many(harness.topic, [("one-key", str(i).encode()) for i in range(8)])
    probe = await started(harness, "g-probe")
    got = await drain(probe, 8)
    await probe.stop()
    tp = got[0].tp

    async def stored(assigned: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: 5} if tp in assigned else {}

    c = await started(harness, "g-seek", on_assign=stored)
    rest = await drain(c, 3)
    await c.stop()
    assert [r.value for r in rest] == [b"5", b"6", b"7"]


async def test_lag_counts_the_records_after_the_position(harness: Harness) -> None:
    """``lag()``: per partition the member holds, the records on the log after its position."""
    await harness.bus.publish_many(harness.topic, [("one-key", str(i).encode()) for i in range(10)])
    probe = await started(harness, "g-lag-probe")
    tp = (await drain(probe, 10))[0].tp
    await probe.stop()

    async def stored(assigned: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: 4} if tp in assigned else {}

    c = await started(harness, "g-lag", on_assign=stored)
    rest = await drain(c, 6)
    after = await c.lag()
    await harness.bus.publish_many(harness.topic, [("one-key", b"late-1"), ("one-key", b"late-2")])
    later = await eventually(c.lag, until=lambda lags: lags.get(tp) == 2, what="two records of lag")
    await c.stop()
    assert [r.value for r in rest] == [str(i).encode() for i in range(4, 10)]
    assert after[tp] == 0 and set(after) == {TopicPartition(harness.topic, p) for p in range(3)}
    assert later[tp] == 2 and sum(later.values()) == 2
