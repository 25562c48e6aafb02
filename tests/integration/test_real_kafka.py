"""KafkaBus on a real Apache Kafka broker: what survives a SIGKILL of the broker (its data is on disk)."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from spendgate.core.bus import Record, next_offsets
from spendgate.core.bus.kafka import KafkaConsumer
from tests.support.kafka import KafkaForTest

pytestmark = pytest.mark.kafka


async def drain(consumer: KafkaConsumer, n: int, *, timeout_s: float = 30.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {len(got)} of {n} records before the deadline")
        got.extend(await consumer.poll(max_records=1000, timeout_s=0.5))
    return got


async def test_records_survive_a_broker_sigkill(fresh_kafka: KafkaForTest) -> None:
    """Records acked to an idempotent producer are all back once, in key order, after a broker SIGKILL."""
    broker, topic, n = fresh_kafka.broker, f"usage-{uuid.uuid4().hex[:8]}", 3000
    bus = fresh_kafka.bus(partitions=4, topics=[topic])
    await bus.start()
    items = [(f"key-{i % 13}", f"{i % 13}:{i}".encode()) for i in range(n)]
    for start in range(0, n, 500):
        await bus.publish_many(topic, items[start:start + 500])
    await bus.stop()

    assert broker.proc is not None
    old_pid = broker.proc.pid
    await broker.akill()
    await broker.astart()
    assert broker.proc is not None and broker.proc.pid != old_pid  # a new JVM on the same data directory

    bus = fresh_kafka.bus(partitions=4)
    await bus.start()
    await bus.publish_many(topic, [("key-after", b"after:0")])
    consumer = bus.consumer(f"g-{uuid.uuid4().hex[:6]}", [topic])
    await consumer.start()
    try:
        got = await drain(consumer, n + 1)
    finally:
        await consumer.stop()
        await bus.stop()

    values = Counter(r.value for r in got)
    assert len(got) == n + 1 and all(c == 1 for c in values.values())
    assert set(values) == {v for _, v in items} | {b"after:0"}
    by_key: dict[str, list[int]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        if r.key != "key-after":
            by_key.setdefault(r.key or "", []).append(int(r.value.split(b":")[1]))
    assert all(seq == sorted(seq) for seq in by_key.values())
    assert len({r.partition for r in got}) > 1  # really spread over the topic's partitions


async def test_committed_offsets_survive_a_broker_sigkill(fresh_kafka: KafkaForTest) -> None:
    """A group resumes after its committed offsets when the broker was SIGKILLed and restarted."""
    broker, topic = fresh_kafka.broker, f"usage-{uuid.uuid4().hex[:8]}"
    bus = fresh_kafka.bus(partitions=1, topics=[topic])
    await bus.start()
    await bus.publish_many(topic, [("k", str(i).encode()) for i in range(10)])
    first = bus.consumer("g-resume", [topic])
    await first.start()
    got = sorted(await drain(first, 10), key=lambda r: r.offset)
    await first.commit(next_offsets(got[:6]))
    await first.stop()
    await bus.stop()

    await broker.arestart(hard=True)

    bus = fresh_kafka.bus(partitions=1)
    await bus.start()
    second = bus.consumer("g-resume", [topic])
    await second.start()
    try:
        rest = await drain(second, 4)
    finally:
        await second.stop()
        await bus.stop()
    assert [r.value for r in rest] == [b"6", b"7", b"8", b"9"]
