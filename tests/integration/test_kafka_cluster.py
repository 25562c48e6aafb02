"""Issue 15, item 2: a three-broker Apache Kafka cluster (KRaft, replication factor 3,
``min.insync.replicas=2``, producer ``acks=all``) loses its partition leader to SIGKILL under a load of
usage events published through the real KafkaBus and folded by the real ledger: no event is lost, none is
folded twice, the balances are exact."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from spendgate.core.bus.kafka import KafkaBus
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.errors import BusError
from spendgate.domain.events import UsageRecorded
from tests.support.kafka import FAST_GROUP, KafkaCluster
from tests.support.ledger import assert_balances_match, folded_count, publish, running_ledger, synthetic
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka

EVENTS = 9_000
CHUNK = 200


class Load:
    """Publishes events chunk by chunk; a chunk the bus refuses is sent again, as the proxy's spool does
    (at least once: a retried chunk may land twice, and the ledger must fold it once)."""

    def __init__(self, bus: KafkaBus, events: Sequence[UsageRecorded]) -> None:
        self.bus, self.events = bus, events
        self.acked = 0
        self.retries = 0

    async def run(self) -> None:
        for i in range(0, len(self.events), CHUNK):
            chunk = self.events[i:i + CHUNK]
            while True:
                try:
                    await publish(self.bus, chunk)
                    break
                except BusError:
                    self.retries += 1
            self.acked += len(chunk)

    async def acked_count(self) -> int:
        return self.acked


async def in_sync(cluster: KafkaCluster) -> list[int]:
    return [len(p["isr"]) for p in await cluster.partitions(TOPIC_USAGE)]


@pytest.mark.timeout(300)
async def test_leader_sigkilled_under_load_loses_nothing_and_folds_nothing_twice(
    pool: asyncpg.Pool, kafka_cluster: KafkaCluster
) -> None:
    """9,000 events published while the leader of partition 0 is SIGKILLed and restarted on its data:
    every event folded exactly once and every balance exact to the micro-dollar."""
    cluster = kafka_cluster
    events = synthetic(EVENTS, seed=23)
    bus = KafkaBus(cluster.bootstrap, replication_factor=3, topics=[TOPIC_USAGE], **FAST_GROUP)
    await bus.start()
    try:
        partitions = await cluster.partitions(TOPIC_USAGE)
        assert [len(p["replicas"]) for p in partitions] == [3] * len(partitions)
        await eventually(lambda: in_sync(cluster), until=lambda isr: min(isr) == 3, timeout_s=30, what="full ISR")
        victim = partitions[0]["leader"]
        load = Load(bus, events)
        async with running_ledger(pool, bus):
            loader = asyncio.create_task(load.run())
            await eventually(load.acked_count, until=lambda n: n >= EVENTS // 3, timeout_s=60, what="a third acked")
            await cluster.nodes[victim].akill()
            killed_at = load.acked
            assert not loader.done(), "the load ended before the leader was killed"

            await eventually(load.acked_count, until=lambda n: n >= 2 * EVENTS // 3 or loader.done(),
                             timeout_s=60, what="the load going on without the old leader")
            moved = await cluster.partitions(TOPIC_USAGE)
            assert moved[0]["leader"] not in (victim, -1)
            assert all(victim not in p["isr"] for p in moved)
            await cluster.nodes[victim].astart()
            await asyncio.wait_for(loader, 120)
            await eventually(lambda: folded_count(pool), until=lambda n: n >= EVENTS, timeout_s=120,
                             what="every event folded")
            await eventually(lambda: in_sync(cluster), until=lambda isr: min(isr) == 3, timeout_s=60,
                             what="the restarted broker back in every ISR")
        print(f"\nleader {victim} killed after {killed_at} of {EVENTS} acked; {load.retries} chunk(s) re-sent")
    finally:
        await bus.stop()
    folded = {str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM usage_events")}
    assert await folded_count(pool) == EVENTS
    assert folded == {e.event_id for e in events}
    await assert_balances_match(pool, events)
